//! virtio-net with rate limiters, against the test driver with a datagram socketpair as the
//! tap: frames beyond a limit wait (tx chains in the ring, rx frames in the backend) until
//! the limiter's timer fires, and rx and tx are limited apart.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;
use crate::testing::{DeviceHarness, DriverQueue, Waited, WAIT};
use crate::virtio::{RateLimiterConfig, TokenBucketConfig};

const MEM_SIZE: usize = 0x20_0000;
const RX_RING: u64 = 0x1000;
const TX_RING: u64 = 0x8000;
const BUF: u64 = 0x10_0000;
const RX: usize = 0;
const TX: usize = 1;
/// A vnet header and a minimal Ethernet frame.
const FRAME_LEN: usize = 12 + 60;

/// `n` frames per `refill_time_ms`, `n` in the bucket.
fn ops(n: u64, refill_time_ms: u64) -> QueueLimiter {
    let config = RateLimiterConfig {
        bandwidth: None,
        ops: Some(TokenBucketConfig {
            size: n,
            one_time_burst: 0,
            refill_time_ms,
        }),
    };
    QueueLimiter::from_config(Some(config)).unwrap()
}

/// An active device limited by `rx` and `tx`, and the host end of its "tap".
fn start(rx: QueueLimiter, tx: QueueLimiter) -> (DeviceHarness<Net>, UnixDatagram) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let rxq = DriverQueue::new(&mem, RX_RING, 16).unwrap();
    let txq = DriverQueue::new(&mem, TX_RING, 16).unwrap();
    let (ours, peer) = UnixDatagram::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let net = Net::with_backend(Arc::new(ours), None).with_rate_limiters(rx, tx);
    let h = DeviceHarness::activate(net, &mem, vec![rxq, txq]).unwrap();
    (h, peer)
}

/// Queues `n` one-descriptor tx frames of FRAME_LEN bytes and notifies once.
fn send_frames(h: &DeviceHarness<Net>, n: u16) {
    let descs: Vec<RawDescriptor> = (0..n)
        .map(|_| RawDescriptor::from(Descriptor::new(BUF, FRAME_LEN as u32, 0, 0)))
        .collect();
    h.queues[TX].add_desc_chains(&descs, 0).unwrap();
    h.kick(TX).unwrap();
}

/// Offers `n` rx buffers of 2 KiB and notifies once.
fn offer_rx_buffers(h: &DeviceHarness<Net>, n: u16) {
    let descs: Vec<RawDescriptor> = (0..n)
        .map(|i| {
            let addr = BUF + 0x1000 * u64::from(i);
            RawDescriptor::from(Descriptor::new(addr, 2048, VRING_DESC_F_WRITE as u16, 0))
        })
        .collect();
    h.queues[RX].add_desc_chains(&descs, 0).unwrap();
    h.kick(RX).unwrap();
}

#[test]
fn net_tx_frames_beyond_the_limit_wait_in_the_ring_for_the_timer() {
    let (h, peer) = start(QueueLimiter::default(), ops(1, 100));
    let t0 = Instant::now();
    send_frames(&h, 3);
    let mut got = [0u8; 256];
    assert_eq!(peer.recv(&mut got).unwrap(), FRAME_LEN);

    // The second waits for a token, 100 ms after the first (checked only if this runs
    // before then, so a slow host cannot fail it).
    peer.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let early = peer.recv(&mut got).ok();
    if t0.elapsed() < Duration::from_millis(100) {
        assert_eq!(early, None, "a throttled frame was sent");
    }
    peer.set_nonblocking(false).unwrap();

    let left = if early.is_some() { 1 } else { 2 };
    for _ in 0..left {
        assert_eq!(peer.recv(&mut got).unwrap(), FRAME_LEN);
    }
    assert_eq!(h.wait_used(TX, 3, Some(WAIT)).unwrap(), Waited::Used);
    assert!(t0.elapsed() >= Duration::from_millis(190));
    let counters = h.dev.counters();
    assert_eq!(counters.tx_frames.load(Ordering::Relaxed), 3);
    assert_eq!(counters.tx_dropped.load(Ordering::Relaxed), 0);
    assert!(h.errors.throttled_count() >= 1);
}

#[test]
fn net_rx_frames_beyond_the_limit_wait_in_the_backend_for_the_timer() {
    let (h, peer) = start(ops(1, 100), QueueLimiter::default());
    offer_rx_buffers(&h, 3);
    let t0 = Instant::now();
    let packet = [0u8; FRAME_LEN];
    for _ in 0..3 {
        peer.send(&packet).unwrap();
    }
    assert_eq!(h.wait_used(RX, 1, Some(WAIT)).unwrap(), Waited::Used);
    // Checked only before the next token can be back, so a slow host cannot fail it.
    std::thread::sleep(Duration::from_millis(30));
    let used = h.queues[RX].used_idx().unwrap();
    if t0.elapsed() < Duration::from_millis(100) {
        assert_eq!(used, 1, "a throttled frame arrived");
    }

    assert_eq!(h.wait_used(RX, 3, Some(WAIT)).unwrap(), Waited::Used);
    assert!(t0.elapsed() >= Duration::from_millis(190));
    let counters = h.dev.counters();
    assert_eq!(counters.rx_frames.load(Ordering::Relaxed), 3);
    assert_eq!(counters.rx_dropped.load(Ordering::Relaxed), 0);
    assert!(h.errors.throttled_count() >= 1);
}

#[test]
fn net_rx_held_back_does_not_hold_back_tx() {
    // rx: one frame, then none for 10 s; tx: no limit.
    let (h, peer) = start(ops(1, 10_000), QueueLimiter::default());
    offer_rx_buffers(&h, 2);
    let packet = [0u8; FRAME_LEN];
    peer.send(&packet).unwrap();
    peer.send(&packet).unwrap();
    assert_eq!(h.wait_used(RX, 1, Some(WAIT)).unwrap(), Waited::Used);

    send_frames(&h, 4);
    let mut got = [0u8; 256];
    for _ in 0..4 {
        assert_eq!(peer.recv(&mut got).unwrap(), FRAME_LEN);
    }
    assert_eq!(h.wait_used(TX, 4, Some(WAIT)).unwrap(), Waited::Used);
    assert_eq!(h.queues[RX].used_idx().unwrap(), 1, "rx is still held back");
}
