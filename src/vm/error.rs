//! Errors of building and running a VM. Each says what went wrong once; whether it was the
//! user's input (exit status 2) or the VM/host failing (exit status 1) is a property of the
//! variant, so the binary's edge maps them without guessing.

use std::io;
use std::path::PathBuf;

/// The source of an error whose cause comes in several types (each device's own error,
/// linux-loader's command-line and loader errors, vm-memory's mapping errors).
pub type BoxedError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    // ---- bad input (exit status 2) ----
    #[error("--mem must be at least 1 MiB")]
    MemZero,
    #[error("--mem {mib} MiB is more than this host can map ({host_mib} MiB of RAM)")]
    MemTooLarge { mib: u64, host_mib: u64 },
    #[error("--cpus must be at least 1")]
    CpusZero,
    #[error("--restore does not work with --jail yet")]
    RestoreJailed,
    #[error("--cpus {requested} is above this host's KVM limit of {limit} vCPUs")]
    CpusAboveKvmLimit { requested: u16, limit: usize },
    #[error("--cpus {requested} is above the {limit} vCPUs the MP table can describe")]
    CpusAboveTableLimit { requested: u16, limit: usize },
    /// A file the user named is missing, unreadable, or not a regular file; the source's
    /// text starts with the path.
    #[error("{what} {source}")]
    OpenFile {
        what: &'static str,
        source: devices::user_file::OpenError,
    },
    #[error("{what} {path:?}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path:?} is larger than {limit_mib} MiB")]
    FileTooLarge {
        what: &'static str,
        path: PathBuf,
        limit_mib: u64,
    },
    #[error("{what} {path:?} is empty")]
    EmptyFile { what: &'static str, path: PathBuf },
    #[error("kernel image {path:?} is not an ELF vmlinux or a bzImage")]
    UnknownKernelFormat { path: PathBuf },
    #[error("kernel image {path:?} is not a loadable {format}: {source}")]
    BadKernel {
        path: PathBuf,
        format: &'static str,
        source: linux_loader::loader::Error,
    },
    #[error(
        "initrd {path:?} ({size} bytes) does not fit in guest RAM below {limit:#x}; raise --mem"
    )]
    InitrdTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("kernel command line is {len} bytes; this kernel accepts at most {limit}")]
    CmdlineTooLong { len: usize, limit: usize },
    #[error("kernel command line is invalid: {0}")]
    CmdlineInvalid(#[source] BoxedError),
    #[error(transparent)]
    DeviceSpec(#[from] super::device_specs::SpecError),
    /// Devices that do not fit together or with the VM's size.
    #[error(transparent)]
    InvalidSpec(#[from] super::spec_checks::InvalidSpec),
    #[error("too many virtio devices: a VM can have at most {max}")]
    TooManyDevices { max: usize },
    /// A device could not be made from its spec (a disk image that cannot be opened …).
    #[error("{what}: {source}")]
    Device { what: String, source: BoxedError },
    #[error("config file {path:?}: {reason}")]
    ConfigFile { path: PathBuf, reason: String },

    // ---- host or VM failure (exit status 1) ----
    #[error(transparent)]
    KvmOpen(#[from] crate::host::KvmOpenError),
    #[error("this host's KVM lacks required capabilities: {0}")]
    MissingCaps(String),
    #[error("{op}: {source}")]
    Kvm {
        op: &'static str,
        source: kvm_ioctls::Error,
    },
    /// Setting up one vCPU failed; `op` reads before its name ("setting the CPUID of").
    #[error("{op} vCPU {index}: {source}")]
    Vcpu {
        index: u8,
        op: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM refused to set boot MSR {msr:#x} of vCPU {vcpu}")]
    MsrRefused { vcpu: u8, msr: u32 },
    #[error("starting the thread of vCPU {index}: {source}")]
    VcpuThread { index: u8, source: io::Error },
    #[error(transparent)]
    Seccomp(#[from] super::seccomp::SeccompError),
    /// Wiring a device to KVM failed; `device` names it and where it is ("virtio-blk at
    /// 0xd0000000"), `op` what was being done ("registering the notify ioeventfd of queue 1").
    #[error("{device}: {op}: {source}")]
    DeviceKvm {
        device: String,
        op: String,
        source: kvm_ioctls::Error,
    },
    #[error("{device}: {op}: {source}")]
    DeviceIo {
        device: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("placing {device} on the {bus} bus: {source}")]
    BusPlacement {
        device: String,
        bus: &'static str,
        source: devices::BusError,
    },
    #[error("{op}: {source}")]
    GuestMemoryIo {
        op: &'static str,
        source: vm_memory::GuestMemoryError,
    },
    #[error("{op}: {source}")]
    EventLoop {
        op: &'static str,
        source: event_manager::Error,
    },
    #[error("cannot map {mib} MiB of guest memory: {source}")]
    GuestMemory { mib: u64, source: BoxedError },
    #[error("writing boot structures: {0}")]
    Boot(#[from] boot::BootError),
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
    /// Taking or restoring a snapshot; bad input when the files named were at fault.
    #[error(transparent)]
    Snapshot(#[from] super::snapshot::SnapshotError),
    /// A restore asked to start paused with nothing to resume it (a caller's mistake).
    #[error("a restored VM that starts paused needs a control to resume it")]
    PausedWithoutControl,
}

impl VmError {
    /// True when the user's input was at fault (exit status 2), false when the host or
    /// the VM failed (exit status 1).
    pub fn is_bad_input(&self) -> bool {
        use VmError::*;
        matches!(
            self,
            MemZero
                | RestoreJailed
                | MemTooLarge { .. }
                | CpusZero
                | CpusAboveKvmLimit { .. }
                | CpusAboveTableLimit { .. }
                | OpenFile { .. }
                | ReadFile { .. }
                | FileTooLarge { .. }
                | EmptyFile { .. }
                | UnknownKernelFormat { .. }
                | BadKernel { .. }
                | InitrdTooLarge { .. }
                | CmdlineTooLong { .. }
                | CmdlineInvalid(_)
                | DeviceSpec(_)
                | InvalidSpec(_)
                | TooManyDevices { .. }
                | Device { .. }
                | ConfigFile { .. }
        ) || matches!(self, Snapshot(e) if e.is_bad_input())
    }

    pub fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
        move |source| VmError::Kvm { op, source }
    }

    pub fn io(op: &'static str) -> impl FnOnce(io::Error) -> VmError {
        move |source| VmError::Io { op, source }
    }

    /// A [`VmError::Vcpu`] maker for `map_err`: `op` of vCPU `index` failed.
    pub fn vcpu(index: u8, op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
        move |source| VmError::Vcpu { index, op, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn einval() -> kvm_ioctls::Error {
        kvm_ioctls::Error::new(libc::EINVAL)
    }

    #[test]
    fn a_vcpu_setup_error_names_the_vcpu() {
        let e = VmError::vcpu(3, "setting the CPUID of")(einval());
        assert!(
            e.to_string().starts_with("setting the CPUID of vCPU 3: "),
            "{e}"
        );
        assert!(!e.is_bad_input());
    }

    #[test]
    fn a_device_wiring_error_names_the_device_and_what_was_done() {
        let e = VmError::DeviceKvm {
            device: "virtio-blk at 0xd0000000".into(),
            op: "registering the notify ioeventfd of queue 1".into(),
            source: einval(),
        };
        assert!(
            e.to_string().starts_with(
                "virtio-blk at 0xd0000000: registering the notify ioeventfd of queue 1: "
            ),
            "{e}"
        );
    }
}
