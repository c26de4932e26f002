//! virtio-balloon against the test driver (`crate::testing`).

use std::ops::Deref;

use virtio_bindings::virtio_ring::VRING_DESC_F_NEXT;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::*;
use crate::testing::{self, indirect_table, DeviceHarness, DriverQueue, Waited, WAIT};

const MEM_SIZE: usize = 0x80_0000;
/// Rings of the three queues.
const RINGS: [u64; 3] = [0x1000, 0x4000, 0x7000];
/// Where PFN arrays and stats buffers live.
const BUF: u64 = 0x10_0000;
/// Pages the tests balloon: well away from rings and buffers.
const VICTIM: u64 = 0x40_0000;

struct Harness(DeviceHarness<Balloon>);

impl Deref for Harness {
    type Target = DeviceHarness<Balloon>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Harness {
    /// Activates `balloon` with one ring per queue it offers.
    fn start(balloon: Balloon) -> Harness {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let n = balloon.queue_max_sizes().len();
        let queues = RINGS[..n]
            .iter()
            .map(|&ring| DriverQueue::new(&mem, ring, 16).unwrap())
            .collect();
        Harness(DeviceHarness::activate(balloon, &mem, queues).unwrap())
    }

    fn balloon(&self) -> &Balloon {
        &self.dev
    }

    /// Posts `bytes` at BUF + `offset` as a one-descriptor readable chain on queue `q`.
    fn post(&self, q: usize, index: u16, offset: u64, bytes: &[u8]) {
        let addr = BUF + offset;
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
        let desc = Descriptor::new(addr, bytes.len() as u32, 0, 0);
        self.queues[q]
            .add_desc_chains(&[RawDescriptor::from(desc)], index)
            .unwrap();
        self.kick(q).unwrap();
    }

    fn wait_used(&self, q: usize, n: u16) {
        let waited = self.0.wait_used(q, n, Some(WAIT)).unwrap();
        assert_eq!(
            waited,
            Waited::Used,
            "queue {q}: device did not use {n} chains"
        );
    }
}

fn wait_for(cond: impl Fn() -> bool) {
    assert!(
        testing::wait_until(WAIT, cond),
        "condition not reached in 5 s"
    );
}

fn pfns(list: &[u64]) -> Vec<u8> {
    list.iter()
        .flat_map(|&p| (p as u32).to_le_bytes())
        .collect()
}

/// Whether the host page behind guest address `gpa` is resident (mincore).
fn resident(mem: &GuestMemoryMmap, gpa: u64) -> bool {
    let host = mem.get_host_address(GuestAddress(gpa)).unwrap();
    let mut vec = [0u8; 1];
    // SAFETY: `host` is page aligned inside a live mapping of `mem`; mincore writes one
    // byte per page of the 4 KiB range into `vec`.
    let ret = unsafe { libc::mincore(host.cast(), 4096, vec.as_mut_ptr()) };
    assert_eq!(ret, 0);
    vec[0] & 1 == 1
}

#[test]
fn balloon_inflate_releases_touched_pages_to_the_host() {
    let h = Harness::start(Balloon::new(64, false, 0));
    for page in 0..4 {
        h.mem
            .write_slice(&[0xab; 4096], GuestAddress(VICTIM + page * 4096))
            .unwrap();
    }
    assert!(resident(&h.mem, VICTIM));

    let first = VICTIM / PAGE_SIZE;
    h.post(
        0,
        0,
        0,
        &pfns(&[first + 1, first, first + 2, first + 3, first]),
    );
    h.wait_used(0, 1);

    for page in 0..4 {
        assert!(
            !resident(&h.mem, VICTIM + page * 4096),
            "page {page} still resident"
        );
    }
    let mut back = [0xffu8; 16];
    h.mem.read_slice(&mut back, GuestAddress(VICTIM)).unwrap();
    assert_eq!(back, [0; 16], "a released page reads as zeros");
    let stats = h.balloon().stats();
    assert_eq!((stats.inflated_pages, stats.invalid_pfns), (4, 0));
}

#[test]
fn balloon_pfns_outside_ram_are_counted_and_the_rest_released() {
    let h = Harness::start(Balloon::new(64, false, 0));
    h.mem.write_slice(&[1; 4096], GuestAddress(VICTIM)).unwrap();
    let last = MEM_SIZE as u64 / PAGE_SIZE - 1;
    h.post(
        0,
        0,
        0,
        &pfns(&[last, last + 1, 0xffff_ffff, VICTIM / PAGE_SIZE]),
    );
    h.wait_used(0, 1);

    let stats = h.balloon().stats();
    assert_eq!((stats.inflated_pages, stats.invalid_pfns), (2, 2));
    assert!(!resident(&h.mem, VICTIM));
    assert!(!h.interrupt.needs_reset());
}

#[test]
fn balloon_inflate_chain_outside_ram_is_used_with_len_0() {
    let h = Harness::start(Balloon::new(64, false, 0));
    let desc = Descriptor::new(MEM_SIZE as u64 + 0x1000, u32::MAX, 0, 0);
    h.queues[0]
        .add_desc_chains(&[RawDescriptor::from(desc)], 0)
        .unwrap();
    h.kick(0).unwrap();
    h.wait_used(0, 1);
    assert_eq!(h.queues[0].used_elem(0).unwrap(), (0, 0));
    assert_eq!(h.errors.snapshot().chains_rejected, 1);

    // The device still serves the next request.
    h.post(0, 1, 0, &pfns(&[VICTIM / PAGE_SIZE]));
    h.wait_used(0, 2);
}

#[test]
fn balloon_descriptor_loop_on_deflate_does_not_hang() {
    let h = Harness::start(Balloon::new(64, false, 0));
    h.mem
        .write_slice(&pfns(&[1, 2]), GuestAddress(BUF))
        .unwrap();
    let looped = Descriptor::new(BUF, 8, VRING_DESC_F_NEXT as u16, 0);
    h.queues[1]
        .add_desc_chains(&[RawDescriptor::from(looped)], 0)
        .unwrap();
    h.kick(1).unwrap();
    h.wait_used(1, 1);
}

#[test]
fn balloon_indirect_inflate_chain_is_refused_and_releases_nothing() {
    let h = Harness::start(Balloon::new(64, false, 0));
    h.mem
        .write_slice(&pfns(&[VICTIM / PAGE_SIZE]), GuestAddress(BUF))
        .unwrap();
    let in_table = RawDescriptor::from(Descriptor::new(BUF, 4, 0, 0));
    let indirect = indirect_table(&h.mem, BUF + 0x1000, &[in_table]).unwrap();
    h.queues[0].add_desc_chains(&[indirect], 0).unwrap();
    h.kick(0).unwrap();
    h.wait_used(0, 1);
    assert_eq!(h.balloon().stats().inflated_pages, 0);
    assert_eq!(h.errors.snapshot().chains_rejected, 1);
}

#[test]
fn balloon_deflate_is_acknowledged() {
    let h = Harness::start(Balloon::new(64, true, 0));
    h.post(1, 0, 0, &pfns(&[0x400, 0x401]));
    h.wait_used(1, 1);
    assert_eq!(h.balloon().stats().deflated_pages, 2);
    assert_ne!(h.interrupt.status() & 1, 0);
}

#[test]
fn balloon_stats_are_kept_and_the_buffer_is_returned_every_interval() {
    let mut balloon = Balloon::new(64, false, 1);
    // One second per poll would make the test slow; the protocol is the same.
    balloon.stats_interval = Some(Duration::from_millis(20));
    let h = Harness::start(balloon);
    let mut buf = 4u16.to_le_bytes().to_vec();
    buf.extend((123u64 << 20).to_le_bytes());
    h.post(2, 0, 0, &buf);

    wait_for(|| h.balloon().stats().free_memory == Some(123 << 20));
    // The device holds the buffer until the timer fires, then hands it back.
    h.wait_used(2, 1);
    buf[2..].copy_from_slice(&(7u64 << 20).to_le_bytes());
    h.post(2, 0, 0, &buf);
    wait_for(|| h.balloon().stats().free_memory == Some(7 << 20));
    assert_eq!(h.balloon().stats().stats_updates, 2);
}

#[test]
fn balloon_config_has_target_and_accepts_actual() {
    let mut balloon = Balloon::new(64, false, 0);
    let mut config = [0u8; 8];
    balloon.read_config(0, &mut config);
    assert_eq!(
        u32::from_le_bytes(config[..4].try_into().unwrap()),
        64 * 256
    );

    balloon.write_config(4, &(1000u32).to_le_bytes());
    balloon.write_config(0, &[9, 9, 9, 9]); // num_pages is host-owned: ignored
    let stats = balloon.stats();
    assert_eq!((stats.target_pages, stats.actual_pages), (64 * 256, 1000));
}

#[test]
fn balloon_set_target_updates_config_and_interrupts_the_driver() {
    let h = Harness::start(Balloon::new(64, false, 0));
    let handle = h.balloon().handle();
    handle.set_target_mib(128);
    let mut config = [0u8; 4];
    h.balloon().read_config(0, &mut config);
    assert_eq!(u32::from_le_bytes(config), 128 * 256);
    assert_ne!(h.interrupt.status() & 2, 0, "config-change interrupt");
    assert_eq!(handle.stats().target_mib, 128);
}

#[test]
fn balloon_features_follow_the_options() {
    let plain = Balloon::new(0, false, 0);
    assert_eq!(plain.avail_features(), 1 << 32);
    assert_eq!(plain.queue_max_sizes().len(), 2);
    let full = Balloon::new(0, true, 5);
    let want = 1 << 32 | 1 << VIRTIO_BALLOON_F_STATS_VQ | 1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
    assert_eq!(full.avail_features(), want);
    assert_eq!(full.queue_max_sizes().len(), 3);
}
