//! How a VM ended, from the first stop reason and what the vCPUs handed back.
//!
//! The shared [`StopSignal`](devices::StopSignal) keeps the first reason, and a failure in
//! it is text (`devices::StopReason::Failed(String)`: devices report it so). A vCPU that
//! fails requests its failure's text there and hands the typed [`VcpuFailure`] back when
//! its thread is joined; [`outcome_of`] puts the two together, so the outcome carries the
//! error KVM gave, not a copy of its words.

use devices::StopReason;

use super::failure::{VcpuFailure, VmFailure};

/// How the VM ended.
#[derive(Debug)]
pub enum VmOutcome {
    /// The guest reset the machine (i8042) or powered it off.
    Reset,
    /// The guest wrote this status to the debug-exit port.
    DebugExit(u8),
    /// The VM failed: triple fault, KVM internal error, failed entry, guest panic …
    Failed(VmFailure),
    /// The VMM was told to stop by this signal.
    Terminated(i32),
    /// The VMM's owner stopped it ([`StopReason::Requested`]).
    Stopped,
}

/// The outcome of a VM whose stop signal holds `reason`, whose vCPUs handed back
/// `vcpu_failures`. A failure's text that a vCPU requested becomes that vCPU's typed
/// failure; any other failure text came from a device.
pub fn outcome_of(reason: Option<StopReason>, vcpu_failures: Vec<VcpuFailure>) -> VmOutcome {
    match reason {
        Some(StopReason::Reset) => VmOutcome::Reset,
        Some(StopReason::DebugExit(code)) => VmOutcome::DebugExit(code),
        Some(StopReason::Requested) => VmOutcome::Stopped,
        Some(StopReason::Failed(text)) => VmOutcome::Failed(
            // Each vCPU fails at most once, and its text starts with its own index: the
            // first request's text matches at most one of them.
            match vcpu_failures.into_iter().find(|f| f.to_string() == text) {
                Some(failure) => VmFailure::Vcpu(failure),
                None => VmFailure::Device(text),
            },
        ),
        None => VmOutcome::Failed(VmFailure::NoReason),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::super::failure::VcpuFault;
    use super::*;

    fn run_failed(index: u8, errno: i32) -> VcpuFailure {
        VcpuFailure::new(
            index,
            VcpuFault::Run(kvm_ioctls::Error::new(errno)),
            Some(0x1000),
            false,
        )
    }

    /// The innermost `source()` of an error.
    fn root_cause<'a>(e: &'a (dyn Error + 'static)) -> &'a (dyn Error + 'static) {
        let mut cause = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause
    }

    #[test]
    fn a_vcpu_failure_keeps_the_kvm_error_as_its_root_cause() {
        let failure = run_failed(1, libc::EFAULT);
        let reason = StopReason::Failed(failure.to_string());
        let VmOutcome::Failed(failed) = outcome_of(Some(reason), vec![failure]) else {
            panic!("a failed stop reason must give a failed outcome");
        };
        assert!(matches!(&failed, VmFailure::Vcpu(f) if f.index == 1));
        let errno = root_cause(&failed).downcast_ref::<kvm_ioctls::Error>();
        assert_eq!(errno.map(|e| e.errno()), Some(libc::EFAULT));
    }

    #[test]
    fn the_vcpu_whose_request_came_first_is_the_failure() {
        let (first, second) = (run_failed(0, libc::EFAULT), run_failed(1, libc::EINVAL));
        let reason = StopReason::Failed(second.to_string());
        let VmOutcome::Failed(VmFailure::Vcpu(failed)) =
            outcome_of(Some(reason), vec![first, second])
        else {
            panic!("the second vCPU's failure was requested first");
        };
        assert_eq!(failed.index, 1);
    }

    #[test]
    fn a_device_failure_is_its_text() {
        let reason = StopReason::Failed("the guest kernel panicked (pvpanic)".into());
        let outcome = outcome_of(Some(reason), vec![run_failed(0, libc::EFAULT)]);
        assert!(matches!(
            outcome,
            VmOutcome::Failed(VmFailure::Device(text)) if text.contains("pvpanic")
        ));
    }

    #[test]
    fn a_clean_stop_is_not_a_failure_even_after_a_vcpu_failed() {
        let outcome = outcome_of(Some(StopReason::Reset), vec![run_failed(0, libc::EFAULT)]);
        assert!(matches!(outcome, VmOutcome::Reset));
    }

    #[test]
    fn no_reason_is_a_failure_that_says_so() {
        let VmOutcome::Failed(failed) = outcome_of(None, Vec::new()) else {
            panic!("no reason must be a failure");
        };
        assert_eq!(failed.to_string(), "the VM stopped without a reason");
    }
}
