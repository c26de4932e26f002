//! Why a running VM failed, with the error that caused it kept as its `source()`: a KVM
//! exit the VMM cannot go on from, a failed KVM_RUN, or a device that ended the VM.
//!
//! The PVM hint is decided here from the fault's variant ([`VcpuFault::InternalError`]),
//! not from the words of a message.

use std::error::Error;
use std::fmt;

/// Said after a failure that PVM's instruction emulator is known to cause.
const PVM_HINT: &str = "; this host's KVM is PVM, whose instruction emulator cannot run some \
                        instructions (xsave/xrstor, popcnt, int3, SSE …): unmodified Linux \
                        guests die this way here — see `vmm doctor`";

/// What stopped a vCPU, as KVM reported it.
#[derive(Debug, thiserror::Error)]
pub enum VcpuFault {
    /// The KVM_RUN ioctl itself failed (not EINTR or EAGAIN, which the loop retries).
    #[error("KVM_RUN failed: {0}")]
    Run(#[source] kvm_ioctls::Error),
    #[error("the guest triple-faulted (KVM_EXIT_SHUTDOWN)")]
    TripleFault,
    /// KVM's instruction emulator gave up on the guest's instruction.
    #[error("KVM could not run the guest's instruction (KVM_EXIT_INTERNAL_ERROR)")]
    InternalError,
    #[error(
        "KVM failed to enter the guest (KVM_EXIT_FAIL_ENTRY, hardware reason {reason:#x}, \
         host cpu {cpu})"
    )]
    FailEntry { reason: u64, cpu: u32 },
    /// KVM_SYSTEM_EVENT_CRASH: the guest said it crashed (through PSCI or Hyper-V).
    #[error("the guest reported a crash")]
    GuestCrash,
    #[error("unexpected KVM system event {0}")]
    UnexpectedSystemEvent(u32),
    /// An exit this VMM does not handle; the text is KVM's exit as `kvm-ioctls` shows it.
    #[error("unexpected vCPU exit: {0}")]
    UnexpectedExit(String),
}

impl VcpuFault {
    /// Whether PVM's instruction emulator is the likely cause of this fault on a PVM host:
    /// it cannot run some instructions that hardware KVM runs, and says so as an internal
    /// error.
    pub fn is_pvm_emulator_failure(&self) -> bool {
        matches!(self, VcpuFault::InternalError)
    }
}

/// A vCPU that stopped the VM: which one, where the guest was, and why.
#[derive(Debug)]
pub struct VcpuFailure {
    pub index: u8,
    /// The guest's instruction pointer when it stopped, when KVM could still tell.
    pub rip: Option<u64>,
    /// Adds the PVM hint: the host is PVM and the fault is one its emulator causes.
    pub pvm_hint: bool,
    pub fault: VcpuFault,
}

impl VcpuFailure {
    /// The failure of vCPU `index` at `rip`; on a PVM host (`pvm_host`) a fault that its
    /// instruction emulator causes gets the hint that says so.
    pub fn new(index: u8, fault: VcpuFault, rip: Option<u64>, pvm_host: bool) -> Self {
        Self {
            index,
            rip,
            pvm_hint: pvm_host && fault.is_pvm_emulator_failure(),
            fault,
        }
    }
}

/// "vCPU 1: <fault> at rip=0x…[; PVM hint]": the fault is said inside the line, because
/// the place and the hint qualify it; `edge::error_chain` does not repeat it.
impl fmt::Display for VcpuFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vCPU {}: {}", self.index, self.fault)?;
        if let Some(rip) = self.rip {
            write!(f, " at rip={rip:#x}")?;
        }
        if self.pvm_hint {
            f.write_str(PVM_HINT)?;
        }
        Ok(())
    }
}

impl Error for VcpuFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.fault)
    }
}

/// Why the VM failed ([`super::VmOutcome::Failed`]).
#[derive(thiserror::Error)]
pub enum VmFailure {
    #[error(transparent)]
    Vcpu(#[from] VcpuFailure),
    /// A device ended the VM as failed (pvpanic: the guest kernel panicked). Devices say
    /// why as text (`devices::StopReason::Failed`); there is no error beneath it.
    #[error("{0}")]
    Device(String),
    /// The stop signal was never set; nothing in the VMM stops a VM that way.
    #[error("the VM stopped without a reason")]
    NoReason,
}

/// A failure debug-prints as its one line, quoted: `vmm demo` prints the outcome with `{:?}`
/// (`Failed("vCPU 0: …")`), as it did when the failure was a string.
impl fmt::Debug for VmFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", edge::error_chain(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn efault() -> kvm_ioctls::Error {
        kvm_ioctls::Error::new(libc::EFAULT)
    }

    #[test]
    fn pvm_hint_is_given_for_an_internal_error_on_a_pvm_host() {
        let failure = VcpuFailure::new(0, VcpuFault::InternalError, Some(0x1000), true);
        assert!(failure.pvm_hint);
        assert!(failure.to_string().ends_with(PVM_HINT), "{failure}");
    }

    #[test]
    fn pvm_hint_is_not_given_off_pvm_or_for_other_faults() {
        let off_pvm = VcpuFailure::new(0, VcpuFault::InternalError, None, false);
        let triple_fault = VcpuFailure::new(0, VcpuFault::TripleFault, None, true);
        let run_failed = VcpuFailure::new(0, VcpuFault::Run(efault()), None, true);
        for failure in [off_pvm, triple_fault, run_failed] {
            assert!(!failure.pvm_hint, "{failure}");
            assert!(!failure.to_string().contains("PVM"), "{failure}");
        }
    }

    #[test]
    fn pvm_hint_follows_the_variant_not_the_words_of_a_message() {
        // An unexpected exit whose text names INTERNAL_ERROR is still not one.
        let fault = VcpuFault::UnexpectedExit("KVM_EXIT_INTERNAL_ERROR lookalike".into());
        assert!(!VcpuFailure::new(0, fault, None, true).pvm_hint);
    }

    #[test]
    fn vcpu_failure_names_the_vcpu_the_fault_and_where_the_guest_was() {
        let failure = VcpuFailure::new(1, VcpuFault::TripleFault, Some(0xfff0), false);
        assert_eq!(
            failure.to_string(),
            "vCPU 1: the guest triple-faulted (KVM_EXIT_SHUTDOWN) at rip=0xfff0"
        );
    }

    #[test]
    fn a_failed_kvm_run_keeps_its_errno_as_the_source() {
        let failure = VmFailure::from(VcpuFailure::new(2, VcpuFault::Run(efault()), None, false));
        let fault = failure.source().expect("the vCPU fault");
        assert!(matches!(
            fault.downcast_ref::<VcpuFault>(),
            Some(VcpuFault::Run(_))
        ));
        let errno = fault.source().expect("the ioctl's error");
        assert_eq!(
            errno.downcast_ref::<kvm_ioctls::Error>().map(|e| e.errno()),
            Some(libc::EFAULT)
        );
    }

    #[test]
    fn a_failed_kvm_run_is_said_once_on_one_line() {
        let failure = VmFailure::from(VcpuFailure::new(0, VcpuFault::Run(efault()), None, false));
        assert_eq!(
            edge::error_chain(&failure),
            format!("vCPU 0: KVM_RUN failed: {}", efault())
        );
    }
}
