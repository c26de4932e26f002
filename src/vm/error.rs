//! Errors of building and running a VM. Each says what went wrong once; whether it was the
//! user's input (exit status 2) or the VM/host failing (exit status 1) is a property of the
//! variant, so the binary's edge maps them without guessing.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    // ---- bad input (exit status 2) ----
    #[error("--mem must be at least 1 MiB")]
    MemZero,
    #[error("--mem {mib} MiB is more than this host can map ({host_mib} MiB of RAM)")]
    MemTooLarge { mib: u64, host_mib: u64 },
    #[error("--cpus must be at least 1")]
    CpusZero,
    #[error("--cpus {requested} is above this host's KVM limit of {limit} vCPUs")]
    CpusAboveKvmLimit { requested: u16, limit: usize },
    #[error("--cpus {requested} is above the {limit} vCPUs the MP table can describe")]
    CpusAboveTableLimit { requested: u16, limit: usize },
    #[error("{what} {path:?}: {source}")]
    OpenFile {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path:?} is a directory, not a file")]
    IsDirectory { what: &'static str, path: PathBuf },
    #[error("{what} {path:?} is empty")]
    EmptyFile { what: &'static str, path: PathBuf },
    #[error("kernel image {path:?} is not an ELF vmlinux or a bzImage")]
    UnknownKernelFormat { path: PathBuf },
    #[error("kernel image {path:?} is not a loadable {format}: {reason}")]
    BadKernel {
        path: PathBuf,
        format: &'static str,
        reason: String,
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
    CmdlineInvalid(String),
    #[error(transparent)]
    DeviceSpec(#[from] super::device_specs::SpecError),
    #[error("too many virtio devices: a VM can have at most {max}")]
    TooManyDevices { max: usize },
    #[error("{what}: {reason}")]
    Device { what: String, reason: String },
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
    #[error("KVM refused to set boot MSR {index:#x}")]
    MsrRefused { index: u32 },
    #[error("cannot map {mib} MiB of guest memory: {reason}")]
    GuestMemory { mib: u64, reason: String },
    #[error("writing boot structures: {0}")]
    Boot(#[from] boot::BootError),
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
}

impl VmError {
    /// True when the user's input was at fault (exit status 2), false when the host or
    /// the VM failed (exit status 1).
    pub fn is_bad_input(&self) -> bool {
        use VmError::*;
        matches!(
            self,
            MemZero
                | MemTooLarge { .. }
                | CpusZero
                | CpusAboveKvmLimit { .. }
                | CpusAboveTableLimit { .. }
                | OpenFile { .. }
                | IsDirectory { .. }
                | EmptyFile { .. }
                | UnknownKernelFormat { .. }
                | BadKernel { .. }
                | InitrdTooLarge { .. }
                | CmdlineTooLong { .. }
                | CmdlineInvalid(_)
                | DeviceSpec(_)
                | TooManyDevices { .. }
                | Device { .. }
                | ConfigFile { .. }
        )
    }

    pub fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
        move |source| VmError::Kvm { op, source }
    }

    pub fn io(op: &'static str) -> impl FnOnce(io::Error) -> VmError {
        move |source| VmError::Io { op, source }
    }
}
