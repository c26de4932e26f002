//! Errors of taking and restoring snapshots. A state or memory file the user named that
//! cannot be used (another format, truncated, corrupt, the wrong size) is bad input (exit
//! status 2), refused before any VM exists; KVM refusing a saved state, or a file that
//! cannot be written, is a failure (exit status 1).

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    // ---- bad input (exit status 2) ----
    /// The state file could not be opened or is not a regular file; the source's text
    /// starts with the path.
    #[error("snapshot state file {0}")]
    OpenState(#[source] devices::user_file::OpenError),
    #[error("snapshot memory file {0}")]
    OpenMemory(#[source] devices::user_file::OpenError),
    #[error("snapshot state file {path:?}: {source}")]
    ReadState { path: PathBuf, source: io::Error },
    #[error("{path:?} is not a vmm snapshot state file (no snapshot magic at its start)")]
    NotAStateFile { path: PathBuf },
    #[error(
        "snapshot state file {path:?} has format version {found} (written by vmm {made_by}); \
         this vmm ({ours}) reads version {expected} only"
    )]
    OtherFormat {
        path: PathBuf,
        found: u32,
        expected: u32,
        made_by: String,
        ours: &'static str,
    },
    #[error(
        "snapshot state file {path:?} is truncated: {found} bytes, its header says {expected}"
    )]
    Truncated {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("snapshot state file {path:?} has {extra} bytes after its end")]
    TrailingData { path: PathBuf, extra: u64 },
    #[error(
        "snapshot state file {path:?} is corrupt: its checksum is {found:#010x}, its header says {expected:#010x}"
    )]
    Corrupt {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("snapshot state file {path:?} cannot be decoded: {source}")]
    Undecodable {
        path: PathBuf,
        source: postcard::Error,
    },
    #[error("snapshot state file {path:?} is larger than {limit_mib} MiB")]
    StateTooLarge { path: PathBuf, limit_mib: u64 },
    /// The saved state of a device does not fit the device made from its saved config
    /// (or the memory file beside it): checked before any device runs.
    #[error("snapshot state file {path:?}: {device} cannot be restored")]
    VirtioRestore {
        path: PathBuf,
        device: String,
        #[source]
        source: Box<devices::virtio::StateError>,
    },
    #[error("snapshot state file {path:?} describes an impossible VM: {reason}")]
    Inconsistent { path: PathBuf, reason: String },
    #[error(
        "snapshot state file {path:?} describes a VM with {nics} NICs: the TAP {tap:?} is for a \
         VM with one"
    )]
    NotOneNic {
        path: PathBuf,
        nics: usize,
        tap: String,
    },
    #[error(
        "snapshot memory file {path:?} is {found} bytes; the state file's guest RAM is {expected} bytes"
    )]
    MemoryFileSize {
        path: PathBuf,
        found: u64,
        expected: u64,
    },

    // ---- failures (exit status 1) ----
    /// `device` names the device and its window: "virtio-blk at 0xd0000000". (Boxed:
    /// a device state error is large, and every `Result` carrying this would grow.)
    #[error("saving the state of {device}")]
    VirtioSave {
        device: String,
        #[source]
        source: Box<devices::virtio::StateError>,
    },
    #[error("starting {device} again")]
    VirtioResume {
        device: String,
        #[source]
        source: Box<devices::virtio::StateError>,
    },
    /// Reading or writing one piece of a vCPU's state; `what` names it ("the LAPIC").
    #[error("{op} {what} of vCPU {index}: {source}")]
    VcpuState {
        index: u8,
        op: &'static str,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("KVM refused MSR {msr:#x} of vCPU {index}")]
    MsrRefused { index: u8, msr: u32 },
    #[error("{op}: {source}")]
    Kvm {
        op: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("{op} {path:?}: {source}")]
    WriteFile {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("mapping guest memory from {path:?}: {source}")]
    MapMemory { path: PathBuf, source: io::Error },
    #[error("encoding the snapshot state: {0}")]
    Encode(#[source] postcard::Error),
    /// A list of KVM entries (CPUID, MSRs, XSAVE) larger than KVM's own limit.
    #[error("building a KVM entry list: {0}")]
    Fam(#[from] vmm_sys_util::fam::Error),
    #[error("the serial port's saved state does not fit it: {0}")]
    SerialState(#[source] io::Error),
}

impl SnapshotError {
    /// True when the files the user named were at fault (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        use SnapshotError::*;
        matches!(
            self,
            OpenState(_)
                | OpenMemory(_)
                | ReadState { .. }
                | NotAStateFile { .. }
                | OtherFormat { .. }
                | Truncated { .. }
                | TrailingData { .. }
                | Corrupt { .. }
                | Undecodable { .. }
                | StateTooLarge { .. }
                | Inconsistent { .. }
                | NotOneNic { .. }
                | MemoryFileSize { .. }
                | VirtioRestore { .. }
        )
    }

    /// A [`SnapshotError::VcpuState`] maker for `map_err`.
    pub fn vcpu(
        index: u8,
        op: &'static str,
        what: &'static str,
    ) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
        move |source| SnapshotError::VcpuState {
            index,
            op,
            what,
            source,
        }
    }

    pub fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
        move |source| SnapshotError::Kvm { op, source }
    }

    pub fn write(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| SnapshotError::WriteFile { op, path, source }
    }
}
