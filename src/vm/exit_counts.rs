//! Live counts of the vCPUs' KVM exits by reason, readable while the VM runs (the API
//! socket's metrics). `--trace-exits` ([`super::exit_stats`]) keeps more (addresses,
//! times) and hands it back only when the vCPUs stop; these are only numbers, each vCPU
//! bumping its own cache line with a relaxed add, and exist only when a caller asked for
//! them ([`super::RunOptions::running`]).

use std::sync::atomic::{AtomicU64, Ordering};

use kvm_ioctls::VcpuExit;

use super::exit_stats::Reason;

/// One vCPU's counters, on a cache line of their own so two vCPUs never share one.
#[repr(align(64))]
#[derive(Default)]
struct VcpuCounts([AtomicU64; Reason::COUNT]);

/// Every vCPU's exit counts.
pub struct ExitCounts {
    vcpus: Vec<VcpuCounts>,
}

impl ExitCounts {
    pub fn new(num_cpus: u8) -> ExitCounts {
        ExitCounts {
            vcpus: (0..num_cpus).map(|_| VcpuCounts::default()).collect(),
        }
    }

    /// Counts one exit of vCPU `index`.
    pub fn record(&self, index: u8, exit: &VcpuExit) {
        self.bump(index, Reason::of(exit));
    }

    /// Counts a KVM_RUN that a signal interrupted.
    pub fn record_interrupted(&self, index: u8) {
        self.bump(index, Reason::Intr);
    }

    fn bump(&self, index: u8, reason: Reason) {
        if let Some(vcpu) = self.vcpus.get(usize::from(index)) {
            vcpu.0[reason as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The totals over every vCPU, by reason (each reason's name, as `--trace-exits`
    /// prints it), in [`Reason`]'s order.
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        Reason::ALL
            .iter()
            .map(|&reason| {
                let total = self
                    .vcpus
                    .iter()
                    .map(|v| v.0[reason as usize].load(Ordering::Relaxed))
                    .sum();
                (reason.name(), total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_of_every_vcpu_add_up_by_reason() {
        let counts = ExitCounts::new(2);
        counts.record(0, &VcpuExit::Hlt);
        counts.record(1, &VcpuExit::Hlt);
        counts.record_interrupted(1);
        counts.record_interrupted(7); // no such vCPU: ignored, not a panic
        let totals = counts.totals();
        assert!(totals.contains(&("hlt", 2)), "{totals:?}");
        assert!(totals.contains(&("intr", 1)), "{totals:?}");
        assert!(totals.contains(&("io-out", 0)), "{totals:?}");
    }
}
