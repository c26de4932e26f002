//! What went wrong in a device, counted: the requests it could not carry out and the
//! descriptor chains it refused. The transport makes one set per device and hands it to
//! the device at activation; the VMM reads it for its exit summary and for harnesses.
//!
//! Counted with relaxed atomics: the numbers are statistics read after the fact, never
//! used to order other memory.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters, shared by a transport and its device's worker.
#[derive(Debug, Default)]
pub struct ErrorCounters {
    requests_failed: AtomicU64,
    chains_rejected: AtomicU64,
}

impl ErrorCounters {
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
