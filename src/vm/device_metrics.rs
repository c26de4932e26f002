//! What went wrong in each virtio device of a VM: failed requests and rejected chains,
//! counted by the devices themselves (`devices::virtio::metrics`); and how often a rate
//! limiter held a device's queue back.
//!
//! A caller that wants the numbers (a harness such as `vmm compare`, a test) makes a
//! [`DeviceMetrics`] handle, passes a clone in [`RunOptions`](super::RunOptions) and
//! reads [`DeviceMetrics::snapshot`] during or after the run; the VM fills it in as it
//! attaches the devices. The same counts end the run's summary on stderr.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use devices::virtio::{DeviceErrors, ErrorCounters};

/// A handle to the error counters of a VM's devices; clones share them.
#[derive(Debug, Clone, Default)]
pub struct DeviceMetrics(Arc<Mutex<Vec<Device>>>);

#[derive(Debug)]
struct Device {
    kind: &'static str,
    base: u64,
    errors: Arc<ErrorCounters>,
}

/// One device's counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSnapshot {
    /// The device type as Linux's driver names it (`blk`, `net`, …).
    pub kind: &'static str,
    /// The base of its virtio-mmio window, which tells two devices of a kind apart.
    pub base: u64,
    pub errors: DeviceErrors,
    /// Times a queue waited for its rate limiter (not an error: the user's limit).
    pub throttled: u64,
    /// Requests the device completed (failed ones included).
    pub requests: u64,
}

impl DeviceMetrics {
    /// Adds the counters of the device of `kind` at `base`.
    pub(super) fn add(&self, kind: &'static str, base: u64, errors: Arc<ErrorCounters>) {
        self.devices().push(Device { kind, base, errors });
    }

    /// Makes `other` see the devices this handle has (the VM's own list, shared with the
    /// caller's handle).
    pub(super) fn share_with(&self, other: &DeviceMetrics) {
        let devices = self.devices();
        let mut theirs = other.devices();
        theirs.extend(devices.iter().map(|d| Device {
            kind: d.kind,
            base: d.base,
            errors: d.errors.clone(),
        }));
    }

    /// Every device's counts now, in window order.
    pub fn snapshot(&self) -> Vec<DeviceSnapshot> {
        self.devices()
            .iter()
            .map(|d| DeviceSnapshot {
                kind: d.kind,
                base: d.base,
                errors: d.errors.snapshot(),
                throttled: d.errors.throttled_count(),
                requests: d.errors.completed_count(),
            })
            .collect()
    }

    /// One stderr line per device, each starting with `vmm: `: every device with
    /// `all` (`--trace-exits`), otherwise only those that counted an error, since a
    /// hostile or broken driver is worth telling about even when nobody asked.
    pub fn summary_lines(&self, all: bool) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter(|d| all || d.errors.any())
            .map(|d| {
                let mut line = format!(
                    "vmm: virtio-mmio ({}) at {:#x}: {} requests failed, {} chains rejected",
                    d.kind, d.base, d.errors.requests_failed, d.errors.chains_rejected
                );
                if d.throttled > 0 {
                    line.push_str(&format!(
                        ", rate limiter held a queue back {} times",
                        d.throttled
                    ));
                }
                line
            })
            .collect()
    }

    fn devices(&self) -> MutexGuard<'_, Vec<Device>> {
        // The list only grows while the VM is set up: a panic elsewhere leaves it whole.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod vm_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> (DeviceMetrics, Arc<ErrorCounters>) {
        let metrics = DeviceMetrics::default();
        let blk = Arc::new(ErrorCounters::default());
        metrics.add("blk", 0xd000_0000, blk.clone());
        metrics.add("rng", 0xd000_1000, Arc::default());
        (metrics, blk)
    }

    #[test]
    fn a_clone_sees_the_counts_rise() {
        let (metrics, blk) = metrics();
        let handle = metrics.clone();
        blk.chain_rejected();
        blk.request_failed();
        let snapshot = handle.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(
            snapshot[0],
            DeviceSnapshot {
                kind: "blk",
                base: 0xd000_0000,
                errors: DeviceErrors {
                    requests_failed: 1,
                    chains_rejected: 1
                },
                throttled: 0,
                requests: 0,
            }
        );
        assert_eq!(snapshot[1].errors, DeviceErrors::default());
    }

    #[test]
    fn summary_names_only_devices_with_errors_unless_all_are_asked_for() {
        let (metrics, blk) = metrics();
        assert!(metrics.summary_lines(false).is_empty());
        assert_eq!(metrics.summary_lines(true).len(), 2);
        blk.chain_rejected();
        assert_eq!(
            metrics.summary_lines(false),
            vec!["vmm: virtio-mmio (blk) at 0xd0000000: 0 requests failed, 1 chains rejected"]
        );
    }

    #[test]
    fn summary_says_how_often_a_rate_limiter_held_a_device_back() {
        let (metrics, blk) = metrics();
        blk.rate_limiter_throttled();
        assert_eq!(metrics.snapshot()[0].throttled, 1);
        // Throttling is no error: it alone does not make a line unless all are asked for.
        assert!(metrics.summary_lines(false).is_empty());
        assert_eq!(
            metrics.summary_lines(true)[0],
            "vmm: virtio-mmio (blk) at 0xd0000000: 0 requests failed, 0 chains rejected, \
             rate limiter held a queue back 1 times"
        );
    }
}
