//! A balloon saved and restored into a new transport and device over the same guest
//! memory: the target and actual sizes, the statistics and the held stats buffer carry
//! over, and inflating goes on.

use std::time::Duration;

use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::test_util::through_json;
use crate::testing::{wait_until, DriverError, DriverQueue, MmioDriver, Waited, WAIT};
use crate::virtio::device::VIRTIO_MMIO_INT_CONFIG;
use crate::virtio::mmio::regs::{CONFIG, INTERRUPT_STATUS};
use crate::virtio::state::{DeviceState, StateError};
use crate::virtio::TransportState;

const MEM_SIZE: usize = 0x80_0000;
const RINGS: [u64; 3] = [0x1000, 0x4000, 0x7000];
const BUF: u64 = 0x10_0000;
const VICTIM: u64 = 0x40_0000;
const INFLATE: usize = 0;
const STATS: usize = 2;

/// A balloon with statistics, polled every `poll`.
fn balloon(amount_mib: u32, poll: Duration) -> Balloon {
    let mut b = Balloon::new(amount_mib, false, 1);
    // The option counts whole seconds; the tests choose their own pace.
    b.stats_interval = Some(poll);
    b
}

struct Guest {
    d: MmioDriver,
    queues: Vec<DriverQueue>,
}

impl Guest {
    fn start(b: Balloon) -> Guest {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let queues: Vec<DriverQueue> = RINGS
            .iter()
            .map(|&ring| DriverQueue::new(&mem, ring, 16).unwrap())
            .collect();
        let mut d = MmioDriver::new(&mem, Box::new(b)).unwrap();
        d.bring_up(&queues.iter().collect::<Vec<_>>()).unwrap();
        Guest { d, queues }
    }

    /// Posts `bytes` at BUF + `offset` as descriptor `slot` of queue `q` and notifies.
    fn post(&mut self, q: usize, slot: u16, offset: u64, bytes: &[u8]) {
        let addr = BUF + offset;
        self.d.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
        let desc = Descriptor::new(addr, bytes.len() as u32, 0, 0);
        self.queues[q]
            .add_desc_chains(&[RawDescriptor::from(desc)], slot)
            .unwrap();
        self.d.notify(q as u32);
    }

    fn wait_used(&self, q: usize, n: u16) {
        let waited = self.d.wait_used(&self.queues[q], n, Some(WAIT)).unwrap();
        assert_eq!(waited, Waited::Used, "queue {q} did not use {n}");
    }

    fn restore(self, b: Balloon, state: TransportState) -> Result<Guest, DriverError> {
        let mem = self.d.mem.clone();
        drop(self.d);
        let mut d = MmioDriver::restore(&mem, Box::new(b), through_json(&state))?;
        d.transport.resume()?;
        Ok(Guest { d, ..self })
    }
}

fn pfns(first_page: u64, count: u64) -> Vec<u8> {
    (first_page..first_page + count)
        .flat_map(|p| (p as u32).to_le_bytes())
        .collect()
}

/// One `virtio_balloon_stat`: free memory (tag 4).
fn free_memory_stat(bytes: u64) -> Vec<u8> {
    let mut stat = 4u16.to_le_bytes().to_vec();
    stat.extend(bytes.to_le_bytes());
    stat
}

#[test]
fn balloon_sizes_stats_and_held_buffer_survive_restore_and_inflating_goes_on() {
    let saved_balloon = balloon(64, Duration::from_secs(600));
    let handle = saved_balloon.handle();
    let mut g = Guest::start(saved_balloon);
    let first = VICTIM / PAGE_SIZE;
    g.post(INFLATE, 0, 0, &pfns(first, 4));
    g.wait_used(INFLATE, 1);
    g.d.write(CONFIG + 4, 4);
    g.post(STATS, 0, 0x1000, &free_memory_stat(123 << 20));
    assert!(wait_until(WAIT, || handle.stats().free_memory == Some(123 << 20)));
    handle.set_target_mib(32);

    let state = g.d.transport.save().unwrap();
    let DeviceState::Balloon(saved) = &state.device else {
        panic!("not a balloon state: {:?}", state.device);
    };
    assert_eq!((saved.target_pages, saved.actual_pages), (32 * 256, 4));
    assert_eq!(saved.stats.inflated_pages, 4);
    assert_eq!(saved.held_stats_buffer, Some(0));
    // The held buffer is the one chain in flight.
    let stats_q = &state.queues[STATS];
    assert_eq!((stats_q.next_avail, stats_q.next_used), (1, 0));

    // Restored with another initial target, polling soon: the held buffer comes back.
    let restored = balloon(0, Duration::from_millis(20));
    let handle = restored.handle();
    let mut g = g.restore(restored, state).unwrap();
    let stats = handle.stats();
    assert_eq!((stats.target_mib, stats.actual_pages), (32, 4));
    assert_eq!(stats.free_memory, Some(123 << 20));
    assert_eq!(stats.inflated_pages, 4);
    assert_eq!(g.d.read(CONFIG), 32 * 256);
    g.wait_used(STATS, 1);
    assert_eq!(g.queues[STATS].used_elem(0).unwrap(), (0, 0));

    g.post(INFLATE, 1, 0x100, &pfns(first + 4, 2));
    g.wait_used(INFLATE, 2);
    assert_eq!(handle.stats().inflated_pages, 6);
}

#[test]
fn balloon_restore_refuses_a_held_stats_buffer_past_its_queue() {
    let mut g = Guest::start(balloon(64, Duration::from_secs(600)));
    let mut state = g.d.transport.save().unwrap();
    let DeviceState::Balloon(b) = &mut state.device else {
        unreachable!()
    };
    b.held_stats_buffer = Some(BALLOON_QUEUE_SIZE);
    let err = match g.restore(balloon(64, Duration::from_secs(600)), state) {
        Err(DriverError::State(e)) => e,
        _ => panic!("the restore took a stats buffer past the queue"),
    };
    assert!(matches!(err, StateError::Invalid { .. }), "{err:?}");
}

#[test]
fn balloon_restore_refuses_a_state_with_statistics_into_one_without() {
    let mut g = Guest::start(balloon(64, Duration::from_secs(600)));
    let state = g.d.transport.save().unwrap();
    let err = match g.restore(Balloon::new(64, false, 0), state) {
        Err(DriverError::State(e)) => e,
        _ => panic!("the restore took a stats queue the device does not have"),
    };
    assert!(
        matches!(
            err,
            StateError::QueueCount {
                found: 3,
                expected: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn balloon_target_set_while_saved_is_announced_when_it_resumes() {
    let b = balloon(64, Duration::from_secs(600));
    let handle = b.handle();
    let mut g = Guest::start(b);
    g.d.transport.save().unwrap();
    // The API sets a new target while the VM is paused for the snapshot.
    handle.set_target_mib(16);
    assert_eq!(g.d.read(INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG, 0);
    g.d.transport.resume().unwrap();
    assert_ne!(g.d.read(INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG, 0);
    assert_eq!(g.d.read(CONFIG), 16 * 256);
}
