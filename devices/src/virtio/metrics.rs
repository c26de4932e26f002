//! What went wrong in a device, counted: the requests it could not carry out and the
//! descriptor chains it refused; and, beside them, how often its rate limiter held a queue
//! back (the user's limit at work, not an error) and how many requests it completed. The transport makes one set per device
//! and hands it to the device at activation; the VMM reads it for its exit summary and
//! for harnesses.
//!
//! Counted with relaxed atomics: the numbers are statistics read after the fact, never
//! used to order other memory.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters, shared by a transport and its device's worker.
#[derive(Debug, Default)]
pub struct ErrorCounters {
    requests_completed: AtomicU64,
    requests_failed: AtomicU64,
    chains_rejected: AtomicU64,
    rate_limiter_throttled: AtomicU64,
}

impl ErrorCounters {
    /// A request (a chain the driver made available) went back to the driver, done:
    /// whether it succeeded or not (a failure also counts in [`Self::request_failed`]).
    pub fn request_completed(&self) {
        self.requests_completed.fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests the device completed (kept apart from [`DeviceErrors`]).
    pub fn completed_count(&self) -> u64 {
        self.requests_completed.load(Ordering::Relaxed)
    }

    /// A well-formed request the device could not carry out (an I/O error, a write to a
    /// read-only disk, a frame the backend refused).
    pub fn request_failed(&self) {
        self.requests_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A chain the device refused as malformed (outside guest RAM, too short, a loop,
    /// wrong direction): returned with an error status or length 0, or the queue stopped.
    pub fn chain_rejected(&self) {
        self.chains_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// A queue stopped because its rate limiter had no tokens for the next request, which
    /// waits in the ring for the limiter's timer.
    pub fn rate_limiter_throttled(&self) {
        self.rate_limiter_throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times a queue was held back by its rate limiter (kept apart from
    /// [`DeviceErrors`]: it is not an error).
    pub fn throttled_count(&self) -> u64 {
        self.rate_limiter_throttled.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> DeviceErrors {
        DeviceErrors {
            requests_failed: self.requests_failed.load(Ordering::Relaxed),
            chains_rejected: self.chains_rejected.load(Ordering::Relaxed),
        }
    }
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceErrors {
    pub requests_failed: u64,
    pub chains_rejected: u64,
}

impl DeviceErrors {
    pub fn any(&self) -> bool {
        self.requests_failed > 0 || self.chains_rejected > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_requests_are_counted_apart_from_errors() {
        let counters = ErrorCounters::default();
        counters.request_completed();
        counters.request_completed();
        assert_eq!(counters.completed_count(), 2);
        assert!(!counters.snapshot().any());
    }

    #[test]
    fn throttling_is_counted_apart_from_errors() {
        let counters = ErrorCounters::default();
        counters.rate_limiter_throttled();
        counters.rate_limiter_throttled();
        assert_eq!(counters.throttled_count(), 2);
        assert!(!counters.snapshot().any());
    }

    #[test]
    fn snapshot_counts_each_kind_apart() {
        let counters = ErrorCounters::default();
        assert!(!counters.snapshot().any());
        counters.chain_rejected();
        counters.chain_rejected();
        counters.request_failed();
        assert_eq!(
            counters.snapshot(),
            DeviceErrors {
                requests_failed: 1,
                chains_rejected: 2
            }
        );
    }
}
