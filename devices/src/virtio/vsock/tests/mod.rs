//! Device-level tests: the test driver (`crate::testing`) on one side, real Unix sockets
//! in a temporary directory on the other, the real worker thread between.

mod device;
mod flow_control;
mod guest_initiated;
mod host_initiated;
mod malformed;
mod snapshot;

use std::io::{Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::packet::{Header, HDR_SIZE, HOST_CID, OP_REQUEST, OP_RESPONSE, TYPE_STREAM};
use super::unix::port_path;
use super::Vsock;
use crate::testing::{DeviceHarness, DriverQueue};
use crate::virtio::VirtioDevice;

pub const GUEST_CID: u64 = 3;
/// What the mock guest advertises as its receive buffer unless a test says otherwise.
pub const GUEST_BUF_ALLOC: u32 = 64 * 1024;
/// Payload room of each rx buffer, like Linux's 4 KiB rx buffers.
pub const RX_PAYLOAD: u32 = 4096;
pub const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing more arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(200);

const QSIZE: u16 = 16;
const MEM_SIZE: usize = 4 << 20;
const RX_BUFS: u64 = 0x1_0000;
const TX_BUFS: u64 = 0x4_0000;
/// Each tx slot holds a header page and a 64 KiB payload.
const TX_SLOT: u64 = 0x1_2000;
/// Rx buffers the harness keeps posted.
const RX_POSTED: u16 = 8;
pub const OUTSIDE_RAM: u64 = 0x1_0000_0000;

/// A directory under the system temp dir, removed with its contents on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("vsock-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Queue indices (virtio 1.x §5.10.2).
const RX: usize = 0;
const TX: usize = 1;

/// The active device (`mem`, `dev`, `interrupt` … through `Deref`), and where the mock
/// guest is in its rx and tx rings.
pub struct Harness {
    h: DeviceHarness<Vsock>,
    _dir: TempDir,
    rx_next: u16,
    rx_seen: u16,
    tx_seen: u16,
}

/// A guest packet header to the host with the mock guest's default credit.
pub fn guest_hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: GUEST_BUF_ALLOC,
        ..Header::default()
    }
}

pub fn desc(addr: u64, len: u32, flags: u32) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags as u16, 0))
}

impl Harness {
    pub fn new() -> Self {
        Self::with_rx_buffers(RX_POSTED)
    }

    pub fn with_rx_buffers(rx_buffers: u16) -> Self {
        Self::build(rx_buffers, |_| {})
    }

    /// A harness whose device runs `before_activate` between creation and activation.
    pub fn build(rx_buffers: u16, before_activate: impl FnOnce(&Vsock)) -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let queues = [0x0, 0x1000, 0x2000]
            .map(|base| DriverQueue::new(&mem, base, QSIZE).unwrap())
            .into();
        let dir = TempDir::new();
        let dev = Vsock::new(GUEST_CID, &dir.path().join("v.sock")).unwrap();
        before_activate(&dev);
        let mut h = Harness {
            h: DeviceHarness::activate(dev, &mem, queues).unwrap(),
            _dir: dir,
            rx_next: 0,
            rx_seen: 0,
            tx_seen: 0,
        };
        for _ in 0..rx_buffers {
            h.post_rx();
        }
        h
    }

    pub fn uds_path(&self) -> PathBuf {
        self.dev.uds_path().to_path_buf()
    }

    fn rx_buf(id: u16) -> u64 {
        RX_BUFS + u64::from(id) * 0x2000
    }

    /// Posts one rx buffer (header + `RX_PAYLOAD`) and notifies.
    pub fn post_rx(&mut self) {
        let id = self.rx_next;
        self.post_rx_desc(desc(
            Self::rx_buf(id),
            HDR_SIZE as u32 + RX_PAYLOAD,
            VRING_DESC_F_WRITE,
        ));
    }

    /// Posts a one-descriptor rx chain as given (for malformed buffers) and notifies.
    pub fn post_rx_desc(&mut self, d: RawDescriptor) {
        let id = self.rx_next;
        self.rx_next = (id + 1) % QSIZE;
        self.queues[RX].add_desc_chains(&[d], id).unwrap();
        self.kick(RX).unwrap();
    }

    /// The buffer of the next tx chain: slot k uses descriptors 2k and 2k+1.
    fn tx_slot(&self) -> u64 {
        TX_BUFS + u64::from(self.tx_seen % (QSIZE / 2)) * TX_SLOT
    }

    /// The guest sends a packet (header and payload in one descriptor); returns once the
    /// device has consumed it.
    pub fn send(&mut self, mut hdr: Header, payload: &[u8]) {
        hdr.len = payload.len() as u32;
        let base = self.tx_slot();
        let mut bytes = hdr.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        self.mem.write_slice(&bytes, GuestAddress(base)).unwrap();
        self.send_descs(&[desc(base, bytes.len() as u32, 0)]);
    }

    /// The guest sends header and payload in two descriptors, as Linux does.
    pub fn send_split(&mut self, mut hdr: Header, payload: &[u8]) {
        hdr.len = payload.len() as u32;
        let base = self.tx_slot();
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(base))
            .unwrap();
        self.mem
            .write_slice(payload, GuestAddress(base + 0x1000))
            .unwrap();
        self.send_descs(&[
            desc(base, HDR_SIZE as u32, VRING_DESC_F_NEXT),
            desc(base + 0x1000, payload.len() as u32, 0),
        ]);
    }

    /// Writes a raw header (its `len` untouched) to a tx slot; returns its address.
    pub fn stage_header(&self, hdr: &Header) -> u64 {
        let base = self.tx_slot();
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(base))
            .unwrap();
        base
    }

    /// Publishes a tx chain (NEXT flags must be set by the caller), waits until consumed.
    pub fn send_descs(&mut self, descs: &[RawDescriptor]) {
        self.publish_tx(descs);
        let want = self.tx_seen;
        wait_until("the device to consume a tx chain", || {
            self.queues[TX].used_idx().unwrap() == want
        });
    }

    /// Publishes a tx chain and notifies, without waiting for the device.
    pub fn publish_tx(&mut self, descs: &[RawDescriptor]) {
        let first = (self.tx_seen % (QSIZE / 2)) * 2;
        let mut chained: Vec<RawDescriptor> = descs.to_vec();
        for (i, d) in chained.iter_mut().enumerate() {
            let sd = SplitDescriptor::from(*d);
            let next = if sd.flags() & VRING_DESC_F_NEXT as u16 != 0 {
                first + i as u16 + 1
            } else {
                0
            };
            *d = RawDescriptor::from(SplitDescriptor::new(
                sd.addr().0,
                sd.len(),
                sd.flags(),
                next,
            ));
        }
        self.queues[TX].add_desc_chains(&chained, first).unwrap();
        self.kick(TX).unwrap();
        self.tx_seen = self.tx_seen.wrapping_add(1);
    }

    /// The next packet the device put in an rx buffer, if one comes within `timeout`;
    /// a fresh buffer replaces it.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<(Header, Vec<u8>)> {
        let mut bytes = self.try_recv_raw(timeout)?;
        assert!(
            bytes.len() >= HDR_SIZE,
            "rx packet of {} bytes",
            bytes.len()
        );
        let hdr = Header::from_bytes(bytes[..HDR_SIZE].try_into().unwrap());
        let payload = bytes.split_off(HDR_SIZE);
        assert_eq!(
            hdr.len as usize,
            payload.len(),
            "header len matches payload"
        );
        Some((hdr, payload))
    }

    /// The bytes of the next used rx buffer (as long as the used length says).
    pub fn try_recv_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while self.queues[RX].used_idx().unwrap() == self.rx_seen {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let (id, len) = self.queues[RX].used_elem(self.rx_seen).unwrap();
        self.rx_seen = self.rx_seen.wrapping_add(1);
        let mut bytes = vec![0u8; len as usize];
        if !bytes.is_empty() {
            let addr = GuestAddress(Self::rx_buf(id as u16));
            self.mem.read_slice(&mut bytes, addr).unwrap();
        }
        self.post_rx();
        Some(bytes)
    }

    pub fn recv(&mut self) -> (Header, Vec<u8>) {
        self.try_recv(WAIT).expect("no packet for the guest")
    }

    /// Asserts that the device sends the guest nothing more for a while.
    pub fn expect_quiet(&mut self) {
        if let Some((hdr, _)) = self.try_recv(QUIET) {
            panic!("unexpected packet for the guest: {hdr:?}");
        }
    }

    /// A host process connects and asks for `guest_port`.
    pub fn host_connect(&self, guest_port: u32) -> UnixStream {
        let mut s = UnixStream::connect(self.uds_path()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        writeln!(s, "CONNECT {guest_port}").unwrap();
        s
    }

    /// Host-initiated stream up to "OK": returns the host stream and the host port.
    pub fn establish_host_initiated(&mut self, guest_port: u32) -> (UnixStream, u32) {
        let mut s = self.host_connect(guest_port);
        let (req, _) = self.recv();
        assert_eq!((req.op, req.dst_port), (OP_REQUEST, guest_port));
        self.send(guest_hdr(OP_RESPONSE, guest_port, req.src_port), &[]);
        assert_eq!(read_line(&mut s), format!("OK {}", req.src_port));
        (s, req.src_port)
    }

    /// Guest-initiated stream to `host_port`: returns the listener and accepted stream.
    pub fn establish_guest_initiated(
        &mut self,
        guest_port: u32,
        host_port: u32,
    ) -> (UnixListener, UnixStream) {
        let listener = UnixListener::bind(port_path(&self.uds_path(), host_port)).unwrap();
        self.send(guest_hdr(OP_REQUEST, guest_port, host_port), &[]);
        let (resp, _) = self.recv();
        assert_eq!(resp.op, OP_RESPONSE);
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        (listener, s)
    }
}

impl Deref for Harness {
    type Target = DeviceHarness<Vsock>;

    fn deref(&self) -> &Self::Target {
        &self.h
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.h
    }
}

pub fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        s.read_exact(&mut b).unwrap();
        if b[0] == b'\n' {
            return String::from_utf8(line).unwrap();
        }
        line.push(b[0]);
    }
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads until EOF (with the stream's timeout); panics on a timeout.
pub fn read_to_eof(s: &mut UnixStream) -> Vec<u8> {
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    all
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
