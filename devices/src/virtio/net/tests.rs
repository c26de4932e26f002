//! virtio-net against the test driver (`crate::testing`), with a datagram socketpair as
//! the tap.

use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::virtio_net::VIRTIO_NET_F_MAC;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::testing::{indirect_table, wait_until, DeviceHarness, DriverQueue, Waited, WAIT};
use crate::virtio::VirtioDevice;

const MEM_SIZE: usize = 0x20_0000;
const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x8000;
const BUF: u64 = 0x10_0000;
const MAC: [u8; 6] = [0x06, 0, 0xac, 0x10, 0, 2];
const RX: usize = 0;
const TX: usize = 1;

/// An active device, the driver's side of it, and the host end of its "tap".
struct Harness {
    h: DeviceHarness<Net>,
    peer: UnixDatagram,
}

impl Deref for Harness {
    type Target = DeviceHarness<Net>;

    fn deref(&self) -> &Self::Target {
        &self.h
    }
}

impl Harness {
    fn start() -> Harness {
        Self::start_with(|_| {})
    }

    /// Like `start`, with `setup` applied to the device's end of the socketpair.
    fn start_with(setup: impl FnOnce(&UnixDatagram)) -> Harness {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let rxq = DriverQueue::new(&mem, RX_RING, 16).unwrap();
        let txq = DriverQueue::new(&mem, TX_RING, 16).unwrap();
        let (ours, peer) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        setup(&ours);
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let net = Net::with_backend(Arc::new(ours), Some(MAC));
        let h = DeviceHarness::activate(net, &mem, vec![rxq, txq]).unwrap();
        Harness { h, peer }
    }

    fn rxq(&self) -> &DriverQueue {
        &self.queues[RX]
    }

    fn txq(&self) -> &DriverQueue {
        &self.queues[TX]
    }

    /// Offers one rx buffer of `len` bytes at `addr` and notifies.
    fn add_rx_buffer(&self, index: u16, addr: u64, len: u32, flags: u32) {
        let desc = Descriptor::new(addr, len, flags as u16, 0);
        self.rxq()
            .add_desc_chains(&[RawDescriptor::from(desc)], index)
            .unwrap();
        self.kick(RX).unwrap();
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
        self.txq().add_desc_chains(&raw, index).unwrap();
        self.kick(TX).unwrap();
    }

    fn used(q: &DriverQueue, i: u16) -> (u32, u32) {
        q.used_elem(i).unwrap()
    }

    fn wait_used(&self, q: usize, n: u16) {
        let waited = self.h.wait_used(q, n, Some(WAIT)).unwrap();
        assert_eq!(waited, Waited::Used, "device did not use {n} chains");
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
    h.wait_used(TX, 1);
    assert_eq!(Harness::used(h.txq(), 0), (0, 0));
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
    assert!(h.txq().used_idx().unwrap() < 16, "backend never filled up");

    let mut got = [0u8; 2048];
    for _ in 0..16 {
        assert_eq!(h.peer.recv(&mut got).unwrap(), 1012);
    }
    h.wait_used(TX, 16);
    let counters = h.dev.counters();
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

    h.wait_used(RX, 1);
    assert_eq!(Harness::used(h.rxq(), 0), (0, 1526));
    let mut got = vec![0u8; 1526];
    h.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    // flags/gso cleared, num_buffers = 1, frame intact.
    assert_eq!(&got[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(&got[12..], &packet[12..]);
    assert_eq!(h.dev.counters().rx_frames.load(Ordering::Relaxed), 1);
}

#[test]
fn net_rx_without_buffers_waits_then_delivers_when_buffers_are_added() {
    let h = Harness::start();
    let mut packet = vec![0u8; 12];
    packet.extend(frame(100, 3));
    h.peer.send(&packet).unwrap();
    h.peer.send(&packet).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.rxq().used_idx().unwrap(), 0);

    h.add_rx_buffer(0, BUF, 2048, VRING_DESC_F_WRITE);
    h.add_rx_buffer(1, BUF + 0x1000, 2048, VRING_DESC_F_WRITE);
    h.wait_used(RX, 2);
    assert_eq!(Harness::used(h.rxq(), 0), (0, 112));
    assert_eq!(Harness::used(h.rxq(), 1), (1, 112));
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

    h.wait_used(RX, 1);
    assert_eq!(Harness::used(h.rxq(), 0), (0, 52));
    assert_eq!(h.dev.counters().rx_dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn net_rx_read_only_chain_is_returned_with_len_0_and_frame_kept() {
    let h = Harness::start();
    h.add_rx_buffer(0, BUF, 2048, 0);
    let mut packet = vec![0u8; 12];
    packet.extend(frame(60, 6));
    h.peer.send(&packet).unwrap();
    h.wait_used(RX, 1);
    assert_eq!(Harness::used(h.rxq(), 0), (0, 0));

    h.add_rx_buffer(1, BUF + 0x1000, 2048, VRING_DESC_F_WRITE);
    h.wait_used(RX, 2);
    assert_eq!(Harness::used(h.rxq(), 1), (1, 72));
    assert!(!h.interrupt.needs_reset());
}

#[test]
fn net_tx_descriptor_outside_ram_is_used_with_len_0_and_device_keeps_working() {
    let h = Harness::start();
    h.send_tx(0, &[(BUF, 12), (MEM_SIZE as u64 + 0x1000, 0x1000)]);
    h.wait_used(TX, 1);
    assert_eq!(Harness::used(h.txq(), 0), (0, 0));
    assert_eq!(h.dev.counters().malformed_chains.load(Ordering::Relaxed), 1);
    assert_eq!(h.errors.snapshot().chains_rejected, 1);

    h.send_tx(2, &[(BUF, 12), (BUF + 0x100, 60)]);
    let mut got = [0u8; 256];
    assert_eq!(h.peer.recv(&mut got).unwrap(), 72);
    h.wait_used(TX, 2);
}

#[test]
fn net_tx_descriptor_loop_and_4gib_length_do_not_hang() {
    let h = Harness::start();
    // Descriptor 0 points at itself: a chain without end, refused as malformed.
    let looped = Descriptor::new(BUF, 64, VRING_DESC_F_NEXT as u16, 0);
    h.txq()
        .add_desc_chains(&[RawDescriptor::from(looped)], 0)
        .unwrap();
    // A 4 GiB - 1 descriptor inside a 2 MiB guest.
    h.send_tx(1, &[(BUF, u32::MAX)]);
    h.wait_used(TX, 2);
    assert_eq!(Harness::used(h.txq(), 1), (1, 0));
    assert!(!h.interrupt.needs_reset());
}

/// Asserts that the backend got no frame.
fn assert_nothing_sent(h: &Harness) {
    h.peer.set_nonblocking(true).unwrap();
    let mut got = [0u8; 256];
    let sent = h.peer.recv(&mut got);
    assert!(sent.is_err(), "a frame was sent: {sent:?}");
}

#[test]
fn net_tx_indirect_chain_is_dropped_unsent_and_counted() {
    let h = Harness::start();
    h.mem.write_slice(&frame(72, 8), GuestAddress(BUF)).unwrap();
    let in_table = RawDescriptor::from(Descriptor::new(BUF, 72, 0, 0));
    let indirect = indirect_table(&h.mem, BUF + 0x1000, &[in_table]).unwrap();
    h.txq().add_desc_chains(&[indirect], 0).unwrap();
    h.kick(TX).unwrap();
    h.wait_used(TX, 1);
    assert_eq!(Harness::used(h.txq(), 0), (0, 0));
    assert_eq!(h.dev.counters().malformed_chains.load(Ordering::Relaxed), 1);
    assert_eq!(h.errors.snapshot().chains_rejected, 1);
    assert_nothing_sent(&h);
}

#[test]
fn net_tx_chain_longer_than_the_queue_is_dropped_unsent_and_counted() {
    let h = Harness::start();
    let next = VRING_DESC_F_NEXT as u16;
    let descs = [
        RawDescriptor::from(Descriptor::new(BUF, 64, next, 1)),
        RawDescriptor::from(Descriptor::new(BUF + 0x100, 64, next, 0)),
    ];
    h.txq().add_desc_chains(&descs, 0).unwrap();
    h.kick(TX).unwrap();
    h.wait_used(TX, 1);
    assert_eq!(Harness::used(h.txq(), 0), (0, 0));
    assert_eq!(h.errors.snapshot().chains_rejected, 1);
    assert_nothing_sent(&h);
}

#[test]
fn net_rx_indirect_chain_is_returned_with_len_0_and_frame_kept() {
    let h = Harness::start();
    let in_table = Descriptor::new(BUF, 2048, VRING_DESC_F_WRITE as u16, 0);
    let indirect = indirect_table(&h.mem, BUF + 0x1000, &[RawDescriptor::from(in_table)]).unwrap();
    h.rxq().add_desc_chains(&[indirect], 0).unwrap();
    h.kick(RX).unwrap();
    let mut packet = vec![0u8; 12];
    packet.extend(frame(60, 9));
    h.peer.send(&packet).unwrap();
    h.wait_used(RX, 1);
    assert_eq!(Harness::used(h.rxq(), 0), (0, 0));
    assert_eq!(h.errors.snapshot().chains_rejected, 1);

    h.add_rx_buffer(1, BUF + 0x2000, 2048, VRING_DESC_F_WRITE);
    h.wait_used(RX, 2);
    assert_eq!(Harness::used(h.rxq(), 1), (1, 72));
}

#[test]
fn net_avail_index_past_queue_size_asks_for_reset() {
    let h = Harness::start();
    h.txq().publish(100).unwrap();
    h.kick(TX).unwrap();
    assert!(
        wait_until(WAIT, || h.interrupt.needs_reset()),
        "needs_reset not set"
    );
}

#[test]
fn net_reset_stops_the_worker() {
    let mut h = Harness::start();
    h.h.dev.reset();
    h.send_tx(0, &[(BUF, 12), (BUF + 0x100, 60)]);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.txq().used_idx().unwrap(), 0);
}

#[test]
fn net_mac_is_in_config_space_and_offered() {
    let h = Harness::start();
    let mut config = [0u8; 8];
    h.dev.read_config(0, &mut config);
    assert_eq!(&config[..6], &MAC);
    assert_eq!(u16::from_le_bytes([config[6], config[7]]), 1, "link up");
    assert_ne!(h.dev.avail_features() & (1 << VIRTIO_NET_F_MAC), 0);

    let mut past_end = [0xaau8; 4];
    h.dev.read_config(6, &mut past_end);
    assert_eq!(past_end, [1, 0, 0, 0]);
}

#[test]
fn net_without_mac_does_not_offer_the_mac_feature() {
    let (ours, _peer) = UnixDatagram::pair().unwrap();
    let net = Net::with_backend(Arc::new(ours), None);
    assert_eq!(net.avail_features() & (1 << VIRTIO_NET_F_MAC), 0);
}
