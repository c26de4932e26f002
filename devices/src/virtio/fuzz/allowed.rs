//! What a device may write in guest memory in answer to the rings a driver wrote: the
//! used rings, and the device-writable buffers of the chains it was offered and may
//! accept, on the queues whose buffers it writes.
//!
//! Which chains a device may accept is restated here from the rules every device takes
//! chains under (`virtio::chain`), rather than asked of that code, so that the harness
//! does not trust what it checks: the chain from an offered head follows `next` through
//! the table, ends within the queue's size at a descriptor without NEXT, never leaves the
//! table, has no INDIRECT descriptor and adds up to less than 4 GiB. Any other chain is
//! refused whole: none of its buffers (the direct ones included) may be written, and it
//! is given back empty if at all.

use std::collections::BTreeSet;
use std::ops::Range;

use super::ring::{Desc, INDIRECT, NEXT, WRITE};
use crate::testing::{DriverError, DriverQueue, MemorySnapshot};

/// Whether the devices follow INDIRECT descriptors: no. None offers
/// VIRTIO_RING_F_INDIRECT_DESC (the queue targets check that, see `queues::Case::start`),
/// and `virtio::chain` refuses every chain with an INDIRECT descriptor, so a chain with
/// one is refused here too: the harness checks that no indirect table's buffer, nor any
/// other buffer of such a chain, is ever written. A device that starts offering the
/// feature must make this true and teach [`accepted_chain`] to follow the tables
/// (virtio 1.x §2.7.5.3).
pub const INDIRECT_FOLLOWED: bool = false;

/// What a device may change in guest memory after the driver wrote its rings, read from
/// memory as it was before the device ran.
pub struct Allowed {
    /// The used rings: the device writes them.
    pub used: Vec<Range<u64>>,
    /// The device-writable buffers of the chains offered on the queues whose buffers the
    /// device writes, for the chains the rules accept.
    pub writable: Vec<Range<u64>>,
    /// What the device reads to find its buffers: the rings (an indirect table is never
    /// read).
    pub control: Vec<Range<u64>>,
    /// Queue `q`'s offered heads whose chains the rules refuse.
    pub refused: Vec<BTreeSet<u32>>,
    /// Whether an offered chain reaches an INDIRECT descriptor.
    pub indirect_offered: bool,
}

/// The descriptors from `head` of `table`, following NEXT, until one without NEXT, an
/// index past the table, or one more than the table holds (a loop).
fn walk(table: &[Desc], head: u16) -> Vec<Desc> {
    let at = |i: u16| table.get(usize::from(i)).copied();
    std::iter::successors(at(head), |d| {
        if d.flags & NEXT != 0 {
            at(d.next)
        } else {
            None
        }
    })
    .take(table.len() + 1)
    .collect()
}

/// The chain from `head` as the devices accept it, or `None` when the rules refuse it.
fn accepted_chain(table: &[Desc], head: u16) -> Option<Vec<Desc>> {
    let chain = walk(table, head);
    // The last descriptor still says NEXT: its next index is past the table, or the
    // walk went round a loop.
    let ends = chain.last().is_some_and(|d| d.flags & NEXT == 0);
    let indirect = chain.iter().any(|d| d.flags & INDIRECT != 0);
    let total: u64 = chain.iter().map(|d| u64::from(d.len)).sum();
    let accepted = ends && chain.len() <= table.len() && !indirect && total <= u64::from(u32::MAX);
    accepted.then_some(chain)
}

impl Allowed {
    /// `writes_buffers[q]`: whether the device may write queue `q`'s buffers at all (rx
    /// queues, blk, rng) or only its used ring (tx queues, the balloon). Each queue's
    /// chains are the ones from the heads the driver made available, none when the
    /// available index runs more than a queue ahead (the device takes no chain then);
    /// the device has taken none before.
    pub fn compute(
        before: &MemorySnapshot,
        queues: &[&DriverQueue],
        writes_buffers: &[bool],
    ) -> Result<Allowed, DriverError> {
        let mut allowed = Allowed {
            used: Vec::new(),
            writable: Vec::new(),
            control: Vec::new(),
            refused: Vec::new(),
            indirect_offered: false,
        };
        for (vq, &writes) in queues.iter().zip(writes_buffers) {
            let [desc, avail, used] = vq.ring_ranges();
            allowed.control.extend([desc, avail, used.clone()]);
            allowed.used.push(used);
            let was = DriverQueue::new(before.memory(), vq.desc_table_addr(), vq.size())?;
            let table = (0..vq.size())
                .map(|i| was.desc(i).map(Desc::from))
                .collect::<Result<Vec<_>, _>>()?;
            let idx = was.avail_idx()?;
            let offered = if idx <= vq.size() { idx } else { 0 };
            let mut refused = BTreeSet::new();
            for i in 0..offered {
                let head = was.avail_entry(i)?;
                let reach = walk(&table, head);
                allowed.indirect_offered |= reach.iter().any(|d| d.flags & INDIRECT != 0);
                match accepted_chain(&table, head) {
                    Some(chain) if writes => allowed.writable.extend(
                        chain
                            .iter()
                            .filter(|d| d.flags & WRITE != 0)
                            .map(|d| d.range()),
                    ),
                    Some(_) => {}
                    None => drop(refused.insert(u32::from(head))),
                }
            }
            allowed.refused.push(refused);
        }
        Ok(allowed)
    }

    /// Whether no writable buffer overlaps the rings. Only then does the driver's input
    /// stay as written while the device runs, so that the used rings can be read back and
    /// the allowed ranges are all the device may write; otherwise the device read
    /// descriptors it had itself written.
    pub fn exact(&self) -> bool {
        let overlaps = |a: &Range<u64>, b: &Range<u64>| a.start < b.end && b.start < a.end;
        !self
            .writable
            .iter()
            .any(|w| self.control.iter().any(|c| overlaps(w, c)))
    }

    /// The runs of `changed` outside the used rings, the writable buffers and `extra`.
    pub fn outside(&self, changed: &[Range<u64>], extra: &[Range<u64>]) -> Vec<Range<u64>> {
        let mut ranges: Vec<Range<u64>> = self
            .used
            .iter()
            .chain(&self.writable)
            .chain(extra)
            .filter(|r| !r.is_empty())
            .cloned()
            .collect();
        ranges.sort_by_key(|r| r.start);
        let mut out = Vec::new();
        for run in changed {
            let mut at = run.start;
            for r in &ranges {
                if r.start <= at && at < r.end {
                    at = r.end.min(run.end);
                }
                if at >= run.end {
                    break;
                }
            }
            if at < run.end {
                out.push(at..run.end);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
