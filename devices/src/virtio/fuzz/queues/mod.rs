//! The queue targets: for each queue of each device, a hostile driver's ring (`ring`), the
//! device activated on it through [`DeviceHarness`] and kicked, and once it has answered
//! (or asked for a reset) and stopped, what every device promises a driver:
//!
//! - no worker thread panicked, and the device answered within [`SETTLE`]: its work per
//!   notification is bounded whatever the ring holds (loops, huge lengths, out-of-range
//!   indices, indirect tables);
//! - it used no more chains than the driver made available (none when the available index
//!   runs more than a queue ahead), and only heads it was given, each as often as given;
//! - a ring of well-formed chains never made it ask for a reset;
//! - it wrote guest memory only in its used rings and in the device-writable buffers of
//!   the chains it may accept (`allowed`), on the queues whose buffers it may write (for
//!   tx queues and the balloon: the used ring alone); never through a chain the rules
//!   refuse (an INDIRECT descriptor, a loop, an index past the table, 4 GiB);
//! - a chain the rules refuse, if given back, is given back empty and counted as rejected;
//! - its error counts add up: a reset counts a rejected chain, and there are no more
//!   errors than chains, plus the one for the reset.
//!
//! Each device's file adds what that device promises besides (used lengths, the disk's
//! size, the frames on the backend, the balloon's statistics).

mod balloon;
mod blk;
mod net;
mod rng;
mod vsock;

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use fuzzkit::{fail, Reach};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestCaseResult};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::allowed::{Allowed, INDIRECT_FOLLOWED};
use super::ring::{driver_queue, memory, Ring};
use crate::testing::{
    reached, wait_until, worker_panics, DeviceHarness, DriverQueue, MemorySnapshot,
};
use crate::virtio::{DeviceErrors, VirtioDevice};

/// The balloon's page size, the unit of the PFNs it releases.
const PAGE: u64 = 4096;
/// How long a device gets to answer a case: ample for a few dozen chains even on a loaded
/// machine, and short, since shrinking a stuck case waits this long per attempt.
const SETTLE: Duration = Duration::from_secs(2);

/// A device running on hostile rings.
pub(super) struct Case<D: VirtioDevice> {
    pub h: DeviceHarness<D>,
    /// What queue `q` was given (its latest ring, for a queue posted to twice).
    pub rings: Vec<Ring>,
    before: MemorySnapshot,
    allowed: Allowed,
    writes_buffers: Vec<bool>,
    panics: usize,
}

/// What the guest sees once the device stopped.
pub(super) struct Finished {
    /// Queue `q`'s used elements: (head, length); empty unless `exact`.
    pub used: Vec<Vec<(u32, u32)>>,
    /// How many chains queue `q` had to answer (`Case::offered`).
    pub offered: Vec<u16>,
    pub needs_reset: bool,
    pub errors: DeviceErrors,
    /// The memory checks applied and the used rings could be read back (see
    /// `allowed::Allowed::exact`).
    pub exact: bool,
    /// An offered chain reached an INDIRECT descriptor.
    pub indirect_offered: bool,
}

impl<D: VirtioDevice> Case<D> {
    /// Writes `rings[q]` into queue `q`, activates `dev` on them and kicks every queue.
    /// `writes_buffers[q]`: whether the device may write queue `q`'s buffers.
    pub fn start(dev: D, rings: Vec<Ring>, writes_buffers: &[bool]) -> Result<Self, TestCaseError> {
        let offers_indirect = dev.avail_features() & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0;
        prop_assert_eq!(
            offers_indirect,
            INDIRECT_FOLLOWED,
            "the device offers INDIRECT_DESC: the harness's chain rules must follow it"
        );
        let mem = memory();
        let queues: Vec<DriverQueue> = (0..)
            .zip(&rings)
            .map(|(q, r)| driver_queue(&mem, q, r.size))
            .collect();
        for (r, vq) in rings.iter().zip(&queues) {
            r.write(&mem, vq).map_err(fail)?;
        }
        let before = MemorySnapshot::take(&mem).map_err(fail)?;
        let allowed = Allowed::compute(&before, &queues.iter().collect::<Vec<_>>(), writes_buffers)
            .map_err(fail)?;
        let panics = worker_panics();
        let h = DeviceHarness::activate(dev, &mem, queues).map_err(fail)?;
        for q in 0..rings.len() {
            h.kick(q).map_err(fail)?;
        }
        Ok(Case {
            h,
            rings,
            before,
            allowed,
            writes_buffers: writes_buffers.to_vec(),
            panics,
        })
    }

    pub fn used_idx(&self, q: usize) -> u16 {
        self.h.queues[q].used_idx().unwrap_or(0)
    }

    /// (head, length) of queue `q`'s used element `n`.
    pub fn used_elem(&self, q: usize, n: u16) -> (u32, u32) {
        self.h.queues[q].used_elem(n).unwrap_or((u32::MAX, 0))
    }

    /// The chains queue `q` was given that the device must answer: the available index,
    /// or none when it is more than a queue ahead (a broken ring, answered with a reset).
    pub fn offered(&self, q: usize) -> u16 {
        let r = &self.rings[q];
        if r.avail_idx <= r.size {
            r.avail_idx
        } else {
            0
        }
    }

    /// Whether queue `q` used every chain it was given (and the ring was not broken).
    pub fn answered(&self, q: usize) -> bool {
        let r = &self.rings[q];
        r.avail_idx <= r.size && reached(self.used_idx(q), r.avail_idx)
    }

    /// Waits until `done`, a reset request or a worker's panic; a device that does none
    /// of these within [`SETTLE`] is stuck.
    pub fn settle(&self, done: impl Fn(&Self) -> bool) -> TestCaseResult {
        let settled = wait_until(SETTLE, || {
            done(self) || self.h.interrupt.needs_reset() || worker_panics() != self.panics
        });
        prop_assert_eq!(worker_panics(), self.panics, "a device worker panicked");
        let used: Vec<u16> = (0..self.rings.len()).map(|q| self.used_idx(q)).collect();
        prop_assert!(
            settled,
            "the device neither answered nor asked for a reset within {:?} (used {:?})",
            SETTLE,
            used
        );
        Ok(())
    }

    /// Checks the memory the device changed since the last snapshot, then writes `ring`
    /// into queue `q` (which must have been given a ring of the same size and nothing
    /// offered) and kicks it: a second phase, for an rx queue that waits for the device to
    /// have something to say.
    pub fn post(&mut self, q: usize, ring: Ring) -> TestCaseResult {
        prop_assert_eq!(ring.size, self.rings[q].size);
        self.check_memory(false)?;
        ring.write(&self.h.mem, &self.h.queues[q]).map_err(fail)?;
        self.rings[q] = ring;
        self.before = MemorySnapshot::take(&self.h.mem).map_err(fail)?;
        let queues: Vec<&DriverQueue> = self.h.queues.iter().collect();
        self.allowed =
            Allowed::compute(&self.before, &queues, &self.writes_buffers).map_err(fail)?;
        self.h.kick(q).map_err(fail)
    }

    /// Whether every byte the device changed was its to write; `released_pages`: whole
    /// pages that now read as zero count as the balloon's to drop. Returns whether the
    /// check applied.
    fn check_memory(&self, released_pages: bool) -> Result<bool, TestCaseError> {
        let changed = self.before.changed(&self.h.mem).map_err(fail)?;
        let released = if released_pages {
            zeroed_pages(&self.h.mem, &changed, &self.allowed.used)
        } else {
            Vec::new()
        };
        let overlaps = |a: &Range<u64>, b: &Range<u64>| a.start < b.end && b.start < a.end;
        // A released page under the rings leaves the device reading zeros it did not write.
        let rings_released = released
            .iter()
            .any(|p| self.allowed.control.iter().any(|c| overlaps(p, c)));
        if !self.allowed.exact() || rings_released {
            return Ok(false);
        }
        let outside = self.allowed.outside(&changed, &released);
        prop_assert!(
            outside.is_empty(),
            "the device wrote guest memory it was not given: {:x?}",
            outside
        );
        Ok(true)
    }

    /// Stops the device and checks what every device promises (module docs).
    pub fn finish(mut self, released_pages: bool) -> Result<Finished, TestCaseError> {
        self.h.dev.reset();
        prop_assert_eq!(worker_panics(), self.panics, "a device worker panicked");
        let needs_reset = self.h.interrupt.needs_reset();
        let errors = self.h.errors.snapshot();
        let exact = self.check_memory(released_pages)?;
        let mut used = Vec::new();
        let offered: Vec<u16> = (0..self.rings.len()).map(|q| self.offered(q)).collect();
        let mut offered_total = 0u64;
        let mut refused_used = 0u64;
        for (q, &offered_q) in offered.iter().enumerate() {
            offered_total += u64::from(offered_q);
            // In an inexact case the device may have written over the used rings as the
            // driver asked: nothing there can be read back.
            if !exact {
                used.push(Vec::new());
                continue;
            }
            let used_idx = self.used_idx(q);
            prop_assert!(
                used_idx <= offered_q,
                "queue {}: {} chains used, {} offered",
                q,
                used_idx,
                offered_q
            );
            let elems: Vec<(u32, u32)> = (0..used_idx).map(|n| self.used_elem(q, n)).collect();
            // Each head as often as the avail ring gave it (entries never written read as
            // head 0).
            let mut given: HashMap<u32, i64> = HashMap::new();
            for i in 0..usize::from(offered_q) {
                let head = self.rings[q].heads.get(i).copied().unwrap_or(0);
                *given.entry(u32::from(head)).or_default() += 1;
            }
            for &(id, len) in &elems {
                let left = given.entry(id).or_default();
                *left -= 1;
                prop_assert!(
                    *left >= 0,
                    "queue {}: head {} used more often than it was made available",
                    q,
                    id
                );
                if self.allowed.refused[q].contains(&id) {
                    refused_used += 1;
                    prop_assert_eq!(len, 0, "queue {}: refused chain {} given back full", q, id);
                }
            }
            used.push(elems);
        }
        // Inexact cases are ones where the device's writes (or the balloon's releases) hit
        // the rings: the driver broke its own rings.
        if exact && self.rings.iter().all(|r| r.well_formed) {
            prop_assert!(
                !needs_reset,
                "well-formed rings made the device ask for a reset"
            );
        }
        if needs_reset {
            prop_assert!(
                errors.chains_rejected >= 1,
                "a reset that no rejected chain counts: {:?}",
                errors
            );
        }
        prop_assert!(
            errors.chains_rejected >= refused_used,
            "{} refused chains given back, fewer counted as rejected: {:?}",
            refused_used,
            errors
        );
        prop_assert!(
            errors.chains_rejected + errors.requests_failed <= offered_total + 1,
            "more errors than chains: {:?} for {} chains",
            errors,
            offered_total
        );
        Ok(Finished {
            used,
            offered,
            needs_reset,
            errors,
            exact,
            indirect_offered: self.allowed.indirect_offered,
        })
    }
}

/// The pages touched by `changed` that now read as zero throughout, but for the used
/// rings in them, which the device may have written after it dropped the page.
fn zeroed_pages(
    mem: &GuestMemoryMmap,
    changed: &[Range<u64>],
    used: &[Range<u64>],
) -> Vec<Range<u64>> {
    let mut pages: Vec<u64> = changed
        .iter()
        .flat_map(|r| r.start / PAGE..r.end.div_ceil(PAGE))
        .collect();
    pages.dedup();
    pages
        .into_iter()
        .map(|p| p * PAGE..(p + 1) * PAGE)
        .filter(|page| {
            let mut bytes = vec![0xffu8; PAGE as usize];
            mem.read_slice(&mut bytes, GuestAddress(page.start)).is_ok()
                && (page.start..)
                    .zip(&bytes)
                    .all(|(addr, &b)| b == 0 || used.iter().any(|u| u.contains(&addr)))
        })
        .collect()
}

/// Whether a target's inputs reach its checks: the memory check must apply to a good part
/// of the cases (it does not when every writable buffer lies over the rings), and chains
/// with INDIRECT descriptors must reach the device in some of those, or the checks that
/// the devices refuse them go untested.
pub(super) struct Coverage {
    exact: Reach,
    indirect: Reach,
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage {
            exact: Reach::new("had the memory check apply"),
            indirect: Reach::new("offered an INDIRECT descriptor with the memory check applying"),
        }
    }
}

impl Coverage {
    pub fn record(&self, f: &Finished) {
        self.exact.record(f.exact);
        self.indirect.record(f.exact && f.indirect_offered);
    }

    pub fn assert_reached(&self) {
        self.exact.assert_at_least_one_in(4);
        self.indirect.assert_at_least_one_in(16);
    }
}

/// Cases per queue target in a plain `cargo test` run (docs/fuzzing.md for long runs).
pub(super) const CASES: u32 = 128;

/// A `u32` length at an edge or small, for headers' length fields.
pub(super) fn edge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0..64u32,
        1 => proptest::sample::select(vec![u32::MAX, u32::MAX - 1, 1 << 31, 0x1_0000, 0x1_0001]),
        1 => any::<u32>(),
    ]
}
