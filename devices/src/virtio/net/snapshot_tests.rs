//! A net device saved and restored into a new transport and device over the same guest
//! memory and backend (a datagram socketpair standing in for the tap, as in `tests`):
//! frames go both ways before and after, and the frame the device held for a missing rx
//! buffer at the save reaches the guest after the restore.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::test_util::through_json;
use crate::testing::{wait_until, DriverError, DriverQueue, MmioDriver, Waited, WAIT};
use crate::virtio::state::{DeviceState, StateError};
use crate::virtio::TransportState;

const MEM_SIZE: usize = 0x20_0000;
const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x8000;
const RX_BUFS: u64 = 0x10_0000;
const TX_BUFS: u64 = 0x18_0000;
const MAC: [u8; 6] = [0x06, 0, 0xac, 0x10, 0, 2];

/// The guest's side: the transport and both rings; the host's: the socket peer.
struct Guest {
    d: MmioDriver,
    rxq: DriverQueue,
    txq: DriverQueue,
    /// The device's end of the socketpair, which a restored device is given again.
    backend: Arc<UnixDatagram>,
    peer: UnixDatagram,
}

fn start() -> Guest {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let rxq = DriverQueue::new(&mem, RX_RING, 16).unwrap();
    let txq = DriverQueue::new(&mem, TX_RING, 16).unwrap();
    let (ours, peer) = UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let backend = Arc::new(ours);
    let net = Net::with_backend(backend.clone(), Some(MAC));
    let mut d = MmioDriver::new(&mem, Box::new(net)).unwrap();
    d.bring_up(&[&rxq, &txq]).unwrap();
    Guest {
        d,
        rxq,
        txq,
        backend,
        peer,
    }
}

/// A frame as the tap hands it over: a vnet header, then `len` bytes from `seed`.
fn packet(len: usize, seed: u8) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p.extend((0..len).map(|i| (i as u8).wrapping_mul(13) ^ seed));
    p
}

impl Guest {
    /// Posts rx buffer `slot` (2 KiB) and notifies.
    fn post_rx(&mut self, slot: u16) {
        let addr = RX_BUFS + 0x1000 * u64::from(slot);
        let desc = Descriptor::new(addr, 2048, VRING_DESC_F_WRITE as u16, 0);
        self.rxq
            .add_desc_chains(&[RawDescriptor::from(desc)], slot)
            .unwrap();
        self.d.notify(0);
    }

    /// Waits for rx buffer number `n` (free-running) and returns the frame in it, past
    /// the header.
    fn received(&self, n: u16) -> Vec<u8> {
        let waited = self.d.wait_used(&self.rxq, n + 1, Some(WAIT)).unwrap();
        assert_eq!(waited, Waited::Used);
        let (slot, len) = self.rxq.used_elem(n).unwrap();
        let mut got = vec![0u8; len as usize];
        let addr = RX_BUFS + 0x1000 * u64::from(slot);
        self.d.mem.read_slice(&mut got, GuestAddress(addr)).unwrap();
        got.split_off(12)
    }

    /// Sends `payload` from tx slot `slot` and returns what the host got (past the
    /// header).
    fn send(&mut self, slot: u16, payload: &[u8]) -> Vec<u8> {
        let addr = TX_BUFS + 0x1000 * u64::from(slot);
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(payload);
        self.d.mem.write_slice(&buf, GuestAddress(addr)).unwrap();
        let desc = Descriptor::new(addr, buf.len() as u32, 0, 0);
        self.txq
            .add_desc_chains(&[RawDescriptor::from(desc)], slot)
            .unwrap();
        self.d.notify(1);
        let mut got = vec![0u8; 4096];
        let n = self.peer.recv(&mut got).unwrap();
        got.truncate(n);
        got.split_off(12)
    }

    /// Restores `state` into a new device on the same backend, as a VMM reopening the tap.
    fn restore(self, mac: Option<[u8; 6]>, state: TransportState) -> Result<Guest, DriverError> {
        let mem = self.d.mem.clone();
        drop(self.d);
        let net = Net::with_backend(self.backend.clone(), mac);
        let d = MmioDriver::restore(&mem, Box::new(net), through_json(&state))?;
        Ok(Guest { d, ..self })
    }
}

/// Whether the backend has no frame waiting (the device took it).
fn drained(sock: &UnixDatagram) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: `b` is valid for writes of 1 byte; the fd is open (owned by `sock`).
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

#[test]
fn net_frames_flow_both_ways_across_save_and_restore_and_the_held_frame_arrives() {
    let mut g = start();
    g.post_rx(0);
    let a = packet(60, 1);
    g.peer.send(&a).unwrap();
    assert_eq!(g.received(0), a[12..]);
    assert_eq!(g.send(0, b"before the save"), b"before the save");

    // A frame comes in while the guest has no rx buffer: the device holds it.
    let held = packet(1000, 2);
    g.peer.send(&held).unwrap();
    assert!(wait_until(WAIT, || drained(&g.backend)));
    let state = g.d.transport.save().unwrap();
    let DeviceState::Net(net) = &state.device else {
        panic!("not a net state: {:?}", state.device);
    };
    assert_eq!(net.held_rx_frame.as_deref(), Some(&held[..]));
    assert_eq!(net.mac, Some(MAC));

    let mut g = g.restore(Some(MAC), state).unwrap();
    g.d.transport.resume().unwrap();
    g.post_rx(1);
    assert_eq!(g.received(1), held[12..]);
    g.post_rx(2);
    let b = packet(1400, 3);
    g.peer.send(&b).unwrap();
    assert_eq!(g.received(2), b[12..]);
    assert_eq!(g.send(1, b"after the restore"), b"after the restore");
    // Nothing arrived twice.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(g.rxq.used_idx().unwrap(), 3);
}

#[test]
fn net_tx_queued_before_the_save_is_sent_once_after_restore() {
    let mut g = start();
    // One frame first, so the worker is past its start and waits for notifications: it
    // interrupts once it has no more tx chains.
    assert_eq!(g.send(0, b"first"), b"first");
    assert!(wait_until(WAIT, || g.d.irq_raised()));
    // The guest made a frame available and was paused before it notified.
    let addr = TX_BUFS + 0x1000;
    let mut buf = vec![0u8; 12];
    buf.extend_from_slice(b"queued");
    g.d.mem.write_slice(&buf, GuestAddress(addr)).unwrap();
    let desc = Descriptor::new(addr, buf.len() as u32, 0, 0);
    g.txq
        .add_desc_chains(&[RawDescriptor::from(desc)], 1)
        .unwrap();
    let state = g.d.transport.save().unwrap();
    assert_eq!(state.queues[1].next_avail, 1);
    let mut g = g.restore(Some(MAC), state).unwrap();
    g.d.transport.resume().unwrap();
    let mut got = [0u8; 64];
    let n = g.peer.recv(&mut got).unwrap();
    assert_eq!(&got[12..n], b"queued");
    let waited = g.d.wait_used(&g.txq, 2, Some(WAIT)).unwrap();
    assert_eq!(waited, Waited::Used);
    // Sent once: nothing more is waiting.
    g.peer.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(g.peer.recv(&mut got).is_err());
}

#[test]
fn net_restore_refuses_another_mac() {
    let mut g = start();
    let state = g.d.transport.save().unwrap();
    let other = [0x06, 0, 0, 0, 0, 9];
    let err = match g.restore(Some(other), state) {
        Err(DriverError::State(e)) => e,
        _ => panic!("the restore took another MAC"),
    };
    assert!(
        matches!(
            err,
            StateError::Mismatch {
                what: "MAC address",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("06:00:ac:10:00:02"), "{err}");
}
