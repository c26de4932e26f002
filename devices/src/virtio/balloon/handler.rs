//! The balloon's queue processing, run on a `Worker` thread over the queue eventfds and
//! the stats timer.
//!
//! Stats protocol (§5.5.6.3): the driver posts one buffer with its statistics; the device
//! keeps that buffer until it wants fresh numbers, then returns it (used, len 0), and the
//! driver refills and re-posts it. The timer decides when.

use std::io::{self, Read};
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::stats::{PAGE_SIZE, STAT_LEN};
use super::Shared;
use crate::virtio::chain::{self, Reader};
use crate::virtio::metrics::ErrorCounters;
use crate::virtio::worker::{continue_or_reset, EventHandler, Interest};
use crate::virtio::{ActivateContext, ActivateError, Interrupt};

const INFLATE: usize = 0;
const DEFLATE: usize = 1;
const STATS: usize = 2;
/// PFNs read from one inflate/deflate chain. Linux sends at most 256; the cap bounds the
/// work a hostile chain can ask for.
const MAX_PFNS_PER_CHAIN: usize = 16 * 1024;
/// Bytes read from one stats buffer (Linux sends ~16 entries of 10 bytes).
const MAX_STATS_LEN: usize = 64 * STAT_LEN;

/// The balloon's queues, owned by the worker thread.
pub(super) struct BalloonHandler {
    mem: GuestMemoryMmap,
    /// Inflate, deflate and (when the driver accepted it) stats, in that order.
    queues: Vec<Queue>,
    evts: Vec<EventFd>,
    timer: Option<TimerFd>,
    interrupt: Arc<Interrupt>,
    errors: Arc<ErrorCounters>,
    shared: Arc<Shared>,
    /// The stats buffer the device is holding until the next poll.
    stats_head: Option<u16>,
}

impl BalloonHandler {
    /// Takes inflate and deflate, and stats when `stats_interval` is set (the driver
    /// accepted STATS_VQ and the user asked for polling).
    pub(super) fn new(
        mut ctx: ActivateContext,
        stats_interval: Option<Duration>,
        shared: Arc<Shared>,
    ) -> Result<Self, ActivateError> {
        let [inflate, deflate] = ctx.take_queues()?;
        let mut queues = vec![inflate, deflate];
        let timer = match stats_interval {
            Some(interval) => {
                queues.push(ctx.take_queue(STATS)?);
                // errno::Error converts into io::Error, which the activation error carries.
                let timer_err = |e: vmm_sys_util::errno::Error| ActivateError::Worker(e.into());
                let mut timer = TimerFd::new().map_err(timer_err)?;
                timer.reset(interval, Some(interval)).map_err(timer_err)?;
                Some(timer)
            }
            None => None,
        };
        let (queues, evts) = queues.into_iter().map(|q| (q.queue, q.evt)).unzip();
        Ok(BalloonHandler {
            mem: ctx.mem,
            queues,
            evts,
            timer,
            interrupt: ctx.interrupt,
            errors: ctx.errors,
            shared,
            stats_head: None,
        })
    }

    /// The fds to wait on: queue `i`'s eventfd at index `i`, then the timer.
    pub(super) fn fds(&self) -> Vec<RawFd> {
        let timer = self.timer.as_ref().map(|t| t.as_raw_fd());
        self.evts
            .iter()
            .map(|e| e.as_raw_fd())
            .chain(timer)
            .collect()
    }

    /// Holds the stats buffer `head` until the next poll, as a saved worker held it.
    pub(super) fn hold_stats_buffer(&mut self, head: u16) {
        if self.queues.len() > STATS {
            self.stats_head = Some(head);
        }
    }

    /// The queues (inflate, deflate, and stats when taken), where the worker left them,
    /// and the stats buffer it held (for a snapshot).
    pub(super) fn into_saved(self) -> (Vec<Queue>, Option<u16>) {
        (self.queues, self.stats_head)
    }

    /// Handles the fd at `index` in [`Self::fds`]. A broken ring (index past the queue
    /// size, ring outside RAM) stops the device until the driver resets it.
    fn handle(&mut self, index: usize) -> ControlFlow<()> {
        let result = if index < self.queues.len() {
            let _ = self.evts[index].read();
            self.process(index)
        } else {
            self.request_stats()
        };
        continue_or_reset(result, &self.interrupt, &self.errors)
    }

    /// Makes the worker look at every queue once, for buffers posted before DRIVER_OK
    /// reached the device.
    pub(super) fn kick_all(&self) -> io::Result<()> {
        self.evts.iter().try_for_each(|e| e.write(1))
    }

    fn process(&mut self, q: usize) -> Result<(), virtio_queue::Error> {
        let mut used = false;
        while let Some(chain) = chain::pop(&mut self.queues[q], &self.mem)? {
            let head = chain.head_index();
            // A chain outside RAM, or malformed (`chain::pop`), carries nothing we can act
            // on: returned with len 0.
            let buf = match Reader::new(&self.mem, &chain) {
                Ok(reader) => read_capped(reader, cap_for(q)),
                Err(_) => {
                    self.errors.chain_rejected();
                    Vec::new()
                }
            };
            match q {
                INFLATE => self.inflate(&buf),
                DEFLATE => {
                    let pages = (buf.len() / 4) as u64;
                    self.shared.stats().deflated_pages += pages;
                }
                _ => {
                    self.shared.stats().apply(&buf);
                    // Keep the newest buffer; an older one (a confused driver posting
                    // twice) goes back so it is not lost.
                    match self.stats_head.replace(head) {
                        Some(old) => self.queues[q].add_used(&self.mem, old, 0)?,
                        None => continue,
                    }
                    used = true;
                    continue;
                }
            }
            self.queues[q].add_used(&self.mem, head, 0)?;
            self.errors.request_completed();
            used = true;
        }
        if used && self.queues[q].needs_notification(&self.mem)? {
            self.interrupt.signal_used_queue();
        }
        Ok(())
    }

    /// Timer tick: hand the held stats buffer back so the driver refills it.
    fn request_stats(&mut self) -> Result<(), virtio_queue::Error> {
        if let Some(timer) = self.timer.as_mut() {
            // Readable per epoll, so this does not block; the count is irrelevant.
            let _ = timer.wait();
        }
        if let Some(head) = self.stats_head.take() {
            self.queues[STATS].add_used(&self.mem, head, 0)?;
            if self.queues[STATS].needs_notification(&self.mem)? {
                self.interrupt.signal_used_queue();
            }
        }
        Ok(())
    }

    /// Releases the pages of each PFN (le32, 4 KiB pages) to the host.
    fn inflate(&mut self, buf: &[u8]) {
        let mut pfns: Vec<u64> = buf
            .chunks_exact(4)
            .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect();
        // Linux sends runs of consecutive PFNs: one madvise per run instead of per page.
        pfns.sort_unstable();
        pfns.dedup();
        let (mut released, mut invalid) = (0u64, 0u64);
        for (start, count) in runs(&pfns) {
            if release(&self.mem, start, count) {
                released += count;
            } else {
                // The run crosses a region boundary or leaves RAM: try page by page so
                // the valid pages are still released and only the others count as errors.
                for pfn in start..start + count {
                    if release(&self.mem, pfn, 1) {
                        released += 1;
                    } else {
                        invalid += 1;
                    }
                }
            }
        }
        if invalid > 0 {
            self.errors.request_failed();
        }
        let mut stats = self.shared.stats();
        stats.inflated_pages += released;
        stats.invalid_pfns += invalid;
    }
}

impl EventHandler for BalloonHandler {
    fn on_event(&mut self, index: usize, _: EventSet, _: &mut Interest) -> ControlFlow<()> {
        self.handle(index)
    }
}

fn cap_for(q: usize) -> usize {
    if q == STATS {
        MAX_STATS_LEN
    } else {
        MAX_PFNS_PER_CHAIN * 4
    }
}

fn read_capped(reader: Reader<'_>, cap: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    // Reads from validated guest slices cannot fail; a short buffer is still usable.
    let _ = reader.take(cap as u64).read_to_end(&mut buf);
    buf
}

/// Splits sorted, distinct PFNs into (first, count) runs of consecutive pages.
fn runs(pfns: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &pfn in pfns {
        match runs.last_mut() {
            Some((start, count)) if *start + *count == pfn => *count += 1,
            _ => runs.push((pfn, 1)),
        }
    }
    runs
}

/// `madvise(MADV_DONTNEED)` on the host mapping of `count` guest pages from `pfn`; false
/// when the range is not one piece of guest RAM or the kernel refused.
fn release(mem: &GuestMemoryMmap, pfn: u64, count: u64) -> bool {
    let (Some(addr), Some(len)) = (pfn.checked_mul(PAGE_SIZE), count.checked_mul(PAGE_SIZE)) else {
        return false;
    };
    let Ok(len) = usize::try_from(len) else {
        return false;
    };
    // get_slice succeeds only when the whole range lies inside one region.
    let Ok(slice) = mem.get_slice(GuestAddress(addr), len) else {
        return false;
    };
    let host = slice.ptr_guard_mut();
    // SAFETY: the range is inside a live mapping owned by `mem` (checked by get_slice).
    // Guest memory is only ever accessed through volatile copies, never through Rust
    // references, so replacing the pages with zero-fill-on-demand ones (what DONTNEED does
    // to private anonymous memory) breaks no invariant; it is what the guest asked for.
    let ret = unsafe { libc::madvise(host.as_ptr().cast(), len, libc::MADV_DONTNEED) };
    ret == 0
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn consecutive_pfns_are_merged_into_runs() {
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 1), (9, 2)]);
        assert!(runs(&[]).is_empty());
    }
}
