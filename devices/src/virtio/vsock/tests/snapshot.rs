//! A vsock device saved and restored into a new transport and device over the same guest
//! memory, behind the real transport (the other tests activate the device directly): a
//! stream open at the save is reset (TRANSPORT_RESET on the event queue, a RST on rx, EOF
//! on the host end), and a new stream works after the restore, once the driver has acted
//! on the reset (it posts an event buffer again).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::test_util::through_json;
use crate::testing::{DriverError, MmioDriver};
use crate::virtio::state::{DeviceState, StateError};
use crate::virtio::vsock::packet::OP_RST;
use crate::virtio::{TransportState, VsockConnection};

const EV: usize = 2;
const EV_BUFS: u64 = 0x3000;
const RX_BUF_SIZE: u32 = HDR_SIZE as u32 + RX_PAYLOAD;
/// `struct virtio_vsock_event`'s TRANSPORT_RESET id.
const TRANSPORT_RESET: u32 = 0;

/// The mock guest behind the real transport: its rings and where it is in them.
struct Guest {
    d: MmioDriver,
    queues: Vec<DriverQueue>,
    _dir: TempDir,
    path: PathBuf,
    rx_posted: u16,
    rx_seen: u16,
    tx_sent: u16,
}

impl Guest {
    /// A device brought up by the driver, with `rx` rx buffers and `events` event
    /// buffers posted.
    fn start(rx: u16, events: u16) -> Guest {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let dir = TempDir::new();
        let path = dir.path().join("v.sock");
        let vsock = Vsock::new(GUEST_CID, &path).unwrap();
        let mut d = MmioDriver::new(&mem, Box::new(vsock)).unwrap();
        let queues: Vec<DriverQueue> = [0x0, 0x1000, 0x2000]
            .map(|base| DriverQueue::new(&mem, base, QSIZE).unwrap())
            .into();
        d.bring_up(&queues.iter().collect::<Vec<_>>()).unwrap();
        let mut g = Guest {
            d,
            queues,
            _dir: dir,
            path,
            rx_posted: 0,
            rx_seen: 0,
            tx_sent: 0,
        };
        for _ in 0..rx {
            g.post_rx();
        }
        for i in 0..events {
            g.post_event(i);
        }
        g
    }

    fn post_rx(&mut self) {
        let slot = self.rx_posted % QSIZE;
        let addr = RX_BUFS + u64::from(slot) * 0x2000;
        self.queues[RX]
            .add_desc_chains(&[desc(addr, RX_BUF_SIZE, VRING_DESC_F_WRITE)], slot)
            .unwrap();
        self.rx_posted += 1;
        self.d.notify(RX as u32);
    }

    /// Event buffer `slot`, 4 bytes, as Linux posts them.
    fn post_event(&mut self, slot: u16) {
        let addr = EV_BUFS + 0x10 * u64::from(slot);
        self.d
            .mem
            .write_obj(0xffff_ffffu32, GuestAddress(addr))
            .unwrap();
        self.queues[EV]
            .add_desc_chains(&[desc(addr, 4, VRING_DESC_F_WRITE)], slot)
            .unwrap();
        self.d.notify(EV as u32);
    }

    /// Checks that the device puts nothing on rx for `time`.
    fn expect_rx_held(&self, time: Duration) {
        let seen = self.queues[RX].used_idx().unwrap();
        std::thread::sleep(time);
        assert_eq!(self.queues[RX].used_idx().unwrap(), seen, "rx went on");
    }

    /// The events the device used, by id.
    fn events(&self) -> Vec<u32> {
        let used = self.queues[EV].used_idx().unwrap();
        (0..used)
            .map(|n| {
                let (slot, len) = self.queues[EV].used_elem(n).unwrap();
                assert_eq!(len, 4);
                let addr = EV_BUFS + 0x10 * u64::from(slot);
                self.d.mem.read_obj(GuestAddress(addr)).unwrap()
            })
            .collect()
    }

    /// The next packet in an rx buffer; a new buffer replaces it.
    fn recv(&mut self) -> Header {
        let n = self.rx_seen;
        wait_until("a packet for the guest", || {
            self.queues[RX].used_idx().unwrap() != n
        });
        let (slot, len) = self.queues[RX].used_elem(n).unwrap();
        assert!(len as usize >= HDR_SIZE);
        let mut bytes = [0u8; HDR_SIZE];
        let addr = RX_BUFS + u64::from(slot) * 0x2000;
        self.d
            .mem
            .read_slice(&mut bytes, GuestAddress(addr))
            .unwrap();
        self.rx_seen += 1;
        self.post_rx();
        Header::from_bytes(&bytes)
    }

    /// The guest sends a header-only packet; returns once the device consumed it.
    fn send(&mut self, hdr: Header) {
        let slot = self.tx_sent % QSIZE;
        let addr = TX_BUFS + u64::from(slot) * 0x100;
        self.d
            .mem
            .write_slice(&hdr.to_bytes(), GuestAddress(addr))
            .unwrap();
        self.queues[TX]
            .add_desc_chains(&[desc(addr, HDR_SIZE as u32, 0)], slot)
            .unwrap();
        self.tx_sent += 1;
        self.d.notify(TX as u32);
        let want = self.tx_sent;
        wait_until("the device to take a tx packet", || {
            self.queues[TX].used_idx().unwrap() == want
        });
    }

    /// A host-initiated stream up to "OK"; returns the host end and the host port.
    fn connect(&mut self, guest_port: u32) -> (UnixStream, u32) {
        let mut s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        writeln!(s, "CONNECT {guest_port}").unwrap();
        let req = self.recv();
        assert_eq!((req.op, req.dst_port), (OP_REQUEST, guest_port));
        self.send(guest_hdr(OP_RESPONSE, guest_port, req.src_port));
        assert_eq!(read_line(&mut s), format!("OK {}", req.src_port));
        (s, req.src_port)
    }

    /// Restores `state` into a new device with guest CID `cid` on the same socket path
    /// (the saved device, dropped first, unbound it) and resumes it.
    fn restore(self, cid: u64, state: TransportState) -> Result<Guest, DriverError> {
        let mem = self.d.mem.clone();
        drop(self.d);
        let vsock = Vsock::new(cid, &self.path).unwrap();
        let mut d = MmioDriver::restore(&mem, Box::new(vsock), through_json(&state))?;
        d.transport.resume()?;
        Ok(Guest { d, ..self })
    }
}

fn vsock_state(state: &TransportState) -> &crate::virtio::VsockState {
    match &state.device {
        DeviceState::Vsock(v) => v,
        other => panic!("not a vsock state: {other:?}"),
    }
}

#[test]
fn vsock_stream_open_at_save_is_reset_and_a_new_one_works_after_restore() {
    let mut g = Guest::start(4, 2);
    let (mut host, host_port) = g.connect(52);

    let state = g.d.transport.save().unwrap();
    // The guest is told at once, in the state saved: the event is in its event queue.
    assert_eq!(g.events(), [TRANSPORT_RESET]);
    let vsock = vsock_state(&state);
    assert_eq!(
        vsock.connections,
        [VsockConnection {
            host_port,
            guest_port: 52
        }]
    );
    assert!(!vsock.transport_reset_owed);
    // The host end is closed.
    let mut rest = Vec::new();
    assert_eq!(host.read_to_end(&mut rest).unwrap(), 0);

    let mut g = g.restore(GUEST_CID, state).unwrap();
    // Rx waits until the driver has acted on the reset, as Linux's says by posting its
    // event buffer again.
    g.expect_rx_held(Duration::from_millis(100));
    g.post_event(2);
    // The restored device resets the stream once more, on rx.
    let rst = g.recv();
    assert_eq!(rst.op, OP_RST);
    assert_eq!((rst.src_port, rst.dst_port), (host_port, 52));
    assert_eq!((rst.src_cid, rst.dst_cid), (HOST_CID, GUEST_CID));
    assert_eq!(g.events(), [TRANSPORT_RESET], "the reset was sent twice");

    // A new stream, from the next host port: the reset one's is not reused.
    let (_host, new_port) = g.connect(53);
    assert_eq!(new_port, host_port + 1);
}

#[test]
fn vsock_reset_without_an_event_buffer_is_owed_and_sent_once_one_is_posted() {
    let mut g = Guest::start(4, 0);
    let (_host, host_port) = g.connect(52);
    let state = g.d.transport.save().unwrap();
    assert!(vsock_state(&state).transport_reset_owed);
    let mut g = g.restore(GUEST_CID, state).unwrap();
    // The stream is reset on rx whatever happens to the event.
    let rst = g.recv();
    assert_eq!((rst.op, rst.src_port), (OP_RST, host_port));
    assert!(g.events().is_empty());
    g.post_event(0);
    wait_until("the owed TRANSPORT_RESET", || {
        g.queues[EV].used_idx().unwrap() == 1
    });
    assert_eq!(g.events(), [TRANSPORT_RESET]);
}

#[test]
fn vsock_goes_on_after_save_and_resume_with_its_streams_reset() {
    let mut g = Guest::start(4, 2);
    let (mut host, host_port) = g.connect(52);
    g.d.transport.save().unwrap();
    g.d.transport.resume().unwrap();
    g.post_event(2);
    let rst = g.recv();
    assert_eq!((rst.op, rst.src_port), (OP_RST, host_port));
    let mut rest = Vec::new();
    assert_eq!(host.read_to_end(&mut rest).unwrap(), 0);
    let (_host, new_port) = g.connect(53);
    assert_eq!(new_port, host_port + 1);
}

#[test]
fn vsock_restore_refuses_another_guest_cid() {
    let mut g = Guest::start(4, 2);
    let state = g.d.transport.save().unwrap();
    let err = match g.restore(GUEST_CID + 1, state) {
        Err(DriverError::State(e)) => e,
        _ => panic!("the restore took another CID"),
    };
    assert!(
        matches!(
            err,
            StateError::Mismatch {
                what: "guest CID",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn vsock_restore_refuses_a_connection_table_past_the_limit() {
    let mut g = Guest::start(4, 2);
    let mut state = g.d.transport.save().unwrap();
    let DeviceState::Vsock(v) = &mut state.device else {
        unreachable!()
    };
    v.connections = vec![
        VsockConnection {
            host_port: 1 << 30,
            guest_port: 1
        };
        crate::virtio::vsock::MAX_CONNECTIONS + 1
    ];
    let err = match g.restore(GUEST_CID, state) {
        Err(DriverError::State(e)) => e,
        _ => panic!("the restore took the table"),
    };
    assert!(matches!(err, StateError::Invalid { .. }), "{err:?}");
}

#[test]
fn a_host_stream_right_after_a_restore_waits_until_the_driver_has_acted_on_the_reset() {
    let mut g = Guest::start(4, 2);
    let state = g.d.transport.save().unwrap();
    let mut g = g.restore(GUEST_CID, state).unwrap();
    // Connected before the guest ran its reset work: had the REQUEST gone out now, that
    // work would have reset the new stream too.
    let mut host = UnixStream::connect(&g.path).unwrap();
    host.set_read_timeout(Some(WAIT)).unwrap();
    writeln!(host, "CONNECT 52").unwrap();
    g.expect_rx_held(Duration::from_millis(150));
    g.post_event(2);
    let req = g.recv();
    assert_eq!((req.op, req.dst_port), (OP_REQUEST, 52));
    g.send(guest_hdr(OP_RESPONSE, 52, req.src_port));
    assert_eq!(read_line(&mut host), format!("OK {}", req.src_port));
}

#[test]
fn rx_goes_on_after_a_restore_when_the_driver_never_acts_on_the_reset() {
    let mut g = Guest::start(4, 2);
    let state = g.d.transport.save().unwrap();
    let mut g = g.restore(GUEST_CID, state).unwrap();
    let waited = Instant::now();
    let mut host = UnixStream::connect(&g.path).unwrap();
    writeln!(host, "CONNECT 52").unwrap();
    let req = g.recv();
    assert_eq!(req.op, OP_REQUEST);
    let took = waited.elapsed();
    assert!(
        took >= crate::virtio::vsock::reset_ack::ACK_TIMEOUT - Duration::from_millis(50),
        "{took:?}"
    );
}
