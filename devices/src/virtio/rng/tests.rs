//! virtio-rng against the test driver (`crate::testing`).

use std::time::Duration;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::testing::{indirect_table, DeviceHarness, DriverQueue, Waited, WAIT};

const MEM_SIZE: usize = 0x40_0000;
const BUF: u64 = 0x10_0000;

/// An active rng; its request queue's rings are at 0.
fn start() -> DeviceHarness<Rng> {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let vq = DriverQueue::new(&mem, 0, 16).unwrap();
    DeviceHarness::activate(Rng::new(), &mem, vec![vq]).unwrap()
}

fn wait_used(h: &DeviceHarness<Rng>, n: u16) {
    let waited = h.wait_used(0, n, Some(WAIT)).unwrap();
    assert_eq!(waited, Waited::Used, "device did not use {n} chains");
}

fn used_len(h: &DeviceHarness<Rng>, i: u16) -> u32 {
    h.queues[0].used_elem(i).unwrap().1
}

#[test]
fn rng_fills_a_two_descriptor_buffer_with_random_bytes() {
    let h = start();
    let (mem, vq) = (&h.mem, &h.queues[0]);
    let flags = (VRING_DESC_F_WRITE | VRING_DESC_F_NEXT) as u16;
    let descs = [
        RawDescriptor::from(Descriptor::new(BUF, 100, flags, 1)),
        RawDescriptor::from(Descriptor::new(
            BUF + 0x1000,
            156,
            VRING_DESC_F_WRITE as u16,
            0,
        )),
    ];
    vq.add_desc_chains(&descs, 0).unwrap();
    h.kick(0).unwrap();

    wait_used(&h, 1);
    assert_eq!(used_len(&h, 0), 256);
    let mut a = [0u8; 100];
    mem.read_slice(&mut a, GuestAddress(BUF)).unwrap();
    let distinct: std::collections::HashSet<u8> = a.iter().copied().collect();
    assert!(distinct.len() > 10, "bytes look constant: {a:?}");
}

#[test]
fn rng_caps_a_request_at_64_kib() {
    let h = start();
    let desc = Descriptor::new(BUF, 0x20_0000, VRING_DESC_F_WRITE as u16, 0);
    h.queues[0]
        .add_desc_chains(&[RawDescriptor::from(desc)], 0)
        .unwrap();
    h.kick(0).unwrap();
    wait_used(&h, 1);
    assert_eq!(used_len(&h, 0), MAX_REQUEST_LEN as u32);
}

#[test]
fn rng_read_only_or_out_of_ram_buffers_get_len_0_and_later_ones_are_served() {
    let h = start();
    let descs = [
        RawDescriptor::from(Descriptor::new(BUF, 64, 0, 0)),
        RawDescriptor::from(Descriptor::new(
            MEM_SIZE as u64 + 0x1000,
            64,
            VRING_DESC_F_WRITE as u16,
            0,
        )),
        RawDescriptor::from(Descriptor::new(BUF, 32, VRING_DESC_F_WRITE as u16, 0)),
    ];
    h.queues[0].add_desc_chains(&descs, 0).unwrap();
    h.kick(0).unwrap();
    wait_used(&h, 3);
    assert_eq!(
        [used_len(&h, 0), used_len(&h, 1), used_len(&h, 2)],
        [0, 0, 32]
    );
    // The read-only chain and the one outside RAM are the device's rejections.
    assert_eq!(h.errors.snapshot().chains_rejected, 2);
}

#[test]
fn rng_refuses_an_indirect_chain_and_leaves_its_buffer_alone() {
    let h = start();
    let target = BUF + 0x1000;
    let in_table = Descriptor::new(target, 64, VRING_DESC_F_WRITE as u16, 0);
    let indirect = indirect_table(&h.mem, BUF, &[RawDescriptor::from(in_table)]).unwrap();
    h.queues[0].add_desc_chains(&[indirect], 0).unwrap();
    h.kick(0).unwrap();
    wait_used(&h, 1);
    assert_eq!(used_len(&h, 0), 0);
    let mut got = [0xffu8; 64];
    h.mem.read_slice(&mut got, GuestAddress(target)).unwrap();
    assert_eq!(got, [0u8; 64]);
    assert_eq!(h.errors.snapshot().chains_rejected, 1);
}

#[test]
fn rng_refuses_a_chain_longer_than_its_queue() {
    let h = start();
    // Descriptors 0 and 1 point at each other: the chain never ends.
    let flags = (VRING_DESC_F_WRITE | VRING_DESC_F_NEXT) as u16;
    let descs = [
        RawDescriptor::from(Descriptor::new(BUF, 64, flags, 1)),
        RawDescriptor::from(Descriptor::new(BUF + 0x1000, 64, flags, 0)),
    ];
    h.queues[0].add_desc_chains(&descs, 0).unwrap();
    h.kick(0).unwrap();
    wait_used(&h, 1);
    assert_eq!(used_len(&h, 0), 0);
    assert_eq!(h.errors.snapshot().chains_rejected, 1);
}

#[test]
fn rng_requests_beyond_its_bandwidth_wait_for_the_limiter_timer() {
    use crate::virtio::{RateLimiterConfig, TokenBucketConfig};
    // 64 bytes per 100 ms: three 64-byte requests take at least 200 ms.
    let config = RateLimiterConfig {
        bandwidth: Some(TokenBucketConfig {
            size: 64,
            one_time_burst: 0,
            refill_time_ms: 100,
        }),
        ops: None,
    };
    let limiter = QueueLimiter::from_config(Some(config)).unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let vq = DriverQueue::new(&mem, 0, 16).unwrap();
    let rng = Rng::new().with_rate_limiter(limiter);
    let h = DeviceHarness::activate(rng, &mem, vec![vq]).unwrap();
    let descs: Vec<RawDescriptor> = (0..3)
        .map(|i| {
            let addr = BUF + 0x100 * i;
            RawDescriptor::from(Descriptor::new(addr, 64, VRING_DESC_F_WRITE as u16, 0))
        })
        .collect();
    let start = std::time::Instant::now();
    h.queues[0].add_desc_chains(&descs, 0).unwrap();
    h.kick(0).unwrap();
    wait_used(&h, 1);
    // Checked only before the bucket can have refilled, so a slow host cannot fail it.
    std::thread::sleep(Duration::from_millis(30));
    let used = h.queues[0].used_idx().unwrap();
    if start.elapsed() < Duration::from_millis(100) {
        assert_eq!(used, 1, "a throttled request was served");
    }
    wait_used(&h, 3);
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert_eq!([used_len(&h, 1), used_len(&h, 2)], [64, 64]);
    assert!(h.errors.throttled_count() >= 1);
}

#[test]
fn rng_reset_returns_after_the_worker_stopped() {
    let mut h = start();
    h.dev.reset();
    let desc = Descriptor::new(BUF, 64, VRING_DESC_F_WRITE as u16, 0);
    h.queues[0]
        .add_desc_chains(&[RawDescriptor::from(desc)], 0)
        .unwrap();
    h.kick(0).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(h.queues[0].used_idx().unwrap(), 0);
}
