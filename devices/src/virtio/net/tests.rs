//! virtio-net against virtio-queue's mock driver, with a datagram socketpair as the tap.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::*;
use crate::virtio::{ActivateContext, Interrupt, VirtioDevice};

const MEM_SIZE: usize = 0x20_0000;
const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x8000;
const BUF: u64 = 0x10_0000;
const MAC: [u8; 6] = [0x06, 0, 0xac, 0x10, 0, 2];

struct Harness {
    mem: &'static GuestMemoryMmap,
    rxq: MockSplitQueue<'static, GuestMemoryMmap>,
    txq: MockSplitQueue<'static, GuestMemoryMmap>,
    rx_evt: EventFd,
    tx_evt: EventFd,
    interrupt: Arc<Interrupt>,
    net: Net,
    /// The host end of the "tap".
    peer: UnixDatagram,
}

impl Harness {
    fn start() -> Harness {
        Self::start_with(|_| {})
    }

    /// Like `start`, with `setup` applied to the device's end of the socketpair.
    fn start_with(setup: impl FnOnce(&UnixDatagram)) -> Harness {
        // Leaked so the mock queues can borrow it for the whole test.
        let mem: &'static GuestMemoryMmap = Box::leak(Box::new(
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap(),
        ));
        let rxq = MockSplitQueue::create(mem, GuestAddress(RX_RING), 16);
        let txq = MockSplitQueue::create(mem, GuestAddress(TX_RING), 16);
        let (ours, peer) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        setup(&ours);
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut net = Net::with_backend(Arc::new(ours), Some(MAC));
        let rx_evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let tx_evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        net.activate(ActivateContext {
            mem: mem.clone(),
            queues: vec![
                rxq.create_queue::<Queue>().unwrap(),
                txq.create_queue().unwrap(),
            ],
            queue_evts: vec![rx_evt.try_clone().unwrap(), tx_evt.try_clone().unwrap()],
            interrupt: interrupt.clone(),
            acked_features: net.avail_features(),
        })
        .unwrap();
        Harness {
            mem,
            rxq,
            txq,
            rx_evt,
            tx_evt,
            interrupt,
            net,
            peer,
        }
    }

    /// Offers one rx buffer of `len` bytes at `addr` and notifies.
    fn add_rx_buffer(&self, index: u16, addr: u64, len: u32, flags: u32) {
        let desc = Descriptor::new(addr, len, flags as u16, 0);
        self.rxq
            .add_desc_chains(&[RawDescriptor::from(desc)], index)
            .unwrap();
        self.rx_evt.write(1).unwrap();
    }

    /// Queues a tx chain of `descs` (NEXT flags set here) at table index `index`.
    fn send_tx(&self, index: u16, descs: &[(u64, u32)]) {
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len))| {
                let last = i + 1 == descs.len();
                let flags = if last { 0 } else { VRING_DESC_F_NEXT as u16 };
                let next = index + i as u16 + 1;
                RawDescriptor::from(Descriptor::new(addr, len, flags, next))
            })
            .collect();
        self.txq.add_desc_chains(&raw, index).unwrap();
        self.tx_evt.write(1).unwrap();
    }

    fn used(q: &MockSplitQueue<'static, GuestMemoryMmap>, i: u16) -> (u32, u32) {
        let elem = q.used().ring().ref_at(i as usize).unwrap().load();
        (elem.id(), elem.len())
    }
}

fn wait_used(q: &MockSplitQueue<'static, GuestMemoryMmap>, n: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while q.used().idx().load() < n {
        assert!(Instant::now() < deadline, "device did not use {n} chains");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

#[test]
fn net_tx_frame_reaches_backend_with_zeroed_header() {
    let h = Harness::start();
    // A guest header asking for checksum offload it never negotiated.
    h.mem.write_slice(&[1u8; 12], GuestAddress(BUF)).unwrap();
    let payload = frame(60, 1);
    h.mem
        .write_slice(&payload, GuestAddress(BUF + 0x100))
        .unwrap();
    h.send_tx(0, &[(BUF, 12), (BUF + 0x100, 60)]);

    let mut got = [0u8; 256];
    let n = h.peer.recv(&mut got).unwrap();
    assert_eq!(n, 72);
    assert_eq!(&got[..12], &[0u8; 12]);
    assert_eq!(&got[12..72], &payload[..]);
    wait_used(&h.txq, 1);
    assert_eq!(Harness::used(&h.txq, 0), (0, 0));
    assert_ne!(h.interrupt.status() & 1, 0, "used-buffer interrupt raised");
}

#[test]
fn net_tx_to_a_full_backend_waits_for_it_instead_of_dropping() {
    // The smallest send buffer the kernel allows holds only a few 1 KiB frames.
    let h = Harness::start_with(|ours| {
        let size: libc::c_int = 1;
        // SAFETY: SO_SNDBUF reads one c_int from the valid pointer.
        let ret = unsafe {
            libc::setsockopt(
                ours.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(ret, 0);
    });
    for i in 0..16u16 {
        h.send_tx(i, &[(BUF, 1012)]);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(h.txq.used().idx().load() < 16, "backend never filled up");

    let mut got = [0u8; 2048];
    for _ in 0..16 {
        assert_eq!(h.peer.recv(&mut got).unwrap(), 1012);
    }
    wait_used(&h.txq, 16);
    let counters = h.net.counters();
    assert_eq!(counters.tx_frames.load(Ordering::Relaxed), 16);
    assert_eq!(counters.tx_dropped.load(Ordering::Relaxed), 0);
}

#[test]
fn net_rx_frame_reaches_guest_buffer_with_header() {
    let h = Harness::start();
    h.add_rx_buffer(0, BUF, 2048, VRING_DESC_F_WRITE);
    let mut packet = vec![0xffu8; 12];
    packet.extend(frame(1514, 2));
    h.peer.send(&packet).unwrap();

    wait_used(&h.rxq, 1);
    assert_eq!(Harness::used(&h.rxq, 0), (0, 1526));
    let mut got = vec![0u8; 1526];
    h.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    // flags/gso cleared, num_buffers = 1, frame intact.
    assert_eq!(&got[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(&got[12..], &packet[12..]);
    assert_eq!(h.net.counters().rx_frames.load(Ordering::Relaxed), 1);
}

#[test]
fn net_rx_without_buffers_waits_then_delivers_when_buffers_are_added() {
    let h = Harness::start();
    let mut packet = vec![0u8; 12];
    packet.extend(frame(100, 3));
    h.peer.send(&packet).unwrap();
    h.peer.send(&packet).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.rxq.used().idx().load(), 0);

    h.add_rx_buffer(0, BUF, 2048, VRING_DESC_F_WRITE);
    h.add_rx_buffer(1, BUF + 0x1000, 2048, VRING_DESC_F_WRITE);
    wait_used(&h.rxq, 2);
    assert_eq!(Harness::used(&h.rxq, 0), (0, 112));
    assert_eq!(Harness::used(&h.rxq, 1), (1, 112));
}

#[test]
fn net_rx_frame_bigger_than_buffer_is_dropped_and_buffer_reused() {
    let h = Harness::start();
    h.add_rx_buffer(0, BUF, 64, VRING_DESC_F_WRITE);
    let mut big = vec![0u8; 12];
    big.extend(frame(200, 4));
    h.peer.send(&big).unwrap();
    let mut small = vec![0u8; 12];
    small.extend(frame(40, 5));
    h.peer.send(&small).unwrap();

    wait_used(&h.rxq, 1);
    assert_eq!(Harness::used(&h.rxq, 0), (0, 52));
    assert_eq!(h.net.counters().rx_dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn net_rx_read_only_chain_is_returned_with_len_0_and_frame_kept() {
    let h = Harness::start();
    h.add_rx_buffer(0, BUF, 2048, 0);
    let mut packet = vec![0u8; 12];
    packet.extend(frame(60, 6));
    h.peer.send(&packet).unwrap();
    wait_used(&h.rxq, 1);
    assert_eq!(Harness::used(&h.rxq, 0), (0, 0));

    h.add_rx_buffer(1, BUF + 0x1000, 2048, VRING_DESC_F_WRITE);
    wait_used(&h.rxq, 2);
    assert_eq!(Harness::used(&h.rxq, 1), (1, 72));
    assert!(!h.interrupt.needs_reset());
}

#[test]
fn net_tx_descriptor_outside_ram_is_used_with_len_0_and_device_keeps_working() {
    let h = Harness::start();
    h.send_tx(0, &[(BUF, 12), (MEM_SIZE as u64 + 0x1000, 0x1000)]);
    wait_used(&h.txq, 1);
    assert_eq!(Harness::used(&h.txq, 0), (0, 0));
    assert_eq!(h.net.counters().malformed_chains.load(Ordering::Relaxed), 1);

    h.send_tx(2, &[(BUF, 12), (BUF + 0x100, 60)]);
    let mut got = [0u8; 256];
    assert_eq!(h.peer.recv(&mut got).unwrap(), 72);
    wait_used(&h.txq, 2);
}

#[test]
fn net_tx_descriptor_loop_and_4gib_length_do_not_hang() {
    let h = Harness::start();
    // Descriptor 0 points at itself: the chain ends after queue-size descriptors.
    let looped = Descriptor::new(BUF, 64, VRING_DESC_F_NEXT as u16, 0);
    h.txq
        .add_desc_chains(&[RawDescriptor::from(looped)], 0)
        .unwrap();
    // A 4 GiB - 1 descriptor inside a 2 MiB guest.
    h.send_tx(1, &[(BUF, u32::MAX)]);
    wait_used(&h.txq, 2);
    assert_eq!(Harness::used(&h.txq, 1), (1, 0));
    assert!(!h.interrupt.needs_reset());
}

#[test]
fn net_avail_index_past_queue_size_asks_for_reset() {
    let h = Harness::start();
    h.txq.avail().idx().store(100);
    h.tx_evt.write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.interrupt.needs_reset() {
        assert!(Instant::now() < deadline, "needs_reset not set");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn net_reset_stops_the_worker() {
    let mut h = Harness::start();
    h.net.reset();
    h.send_tx(0, &[(BUF, 12), (BUF + 0x100, 60)]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.txq.used().idx().load(), 0);
}

#[test]
fn net_mac_is_in_config_space_and_offered() {
    let h = Harness::start();
    let mut config = [0u8; 8];
    h.net.read_config(0, &mut config);
    assert_eq!(&config[..6], &MAC);
    assert_eq!(u16::from_le_bytes([config[6], config[7]]), 1, "link up");
    assert_ne!(h.net.avail_features() & (1 << VIRTIO_NET_F_MAC), 0);

    let mut past_end = [0xaau8; 4];
    h.net.read_config(6, &mut past_end);
    assert_eq!(past_end, [1, 0, 0, 0]);
}

#[test]
fn net_without_mac_does_not_offer_the_mac_feature() {
    let (ours, _peer) = UnixDatagram::pair().unwrap();
    let net = Net::with_backend(Arc::new(ours), None);
    assert_eq!(net.avail_features() & (1 << VIRTIO_NET_F_MAC), 0);
}
