//! What can stop a jail from being made. Bad input (exit status 2) is told apart from a
//! failing host (exit status 1) by [`JailError::is_bad_input`].

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("{option} needs --jail")]
    NeedsJail { option: &'static str },
    #[error("--jail needs --uid and --gid: the unprivileged user and group the VMM runs as")]
    NeedsIds,
    #[error("{option} {value:?} is not a number (a numeric {what} id)")]
    NotANumber {
        option: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("jail directory {path:?}")]
    JailDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("jail directory {path:?} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("--cgroup {value:?} is not KEY=VALUE")]
    CgroupSyntax { value: String },
    #[error("--cgroup {key:?}: not a controller's file (CONTROLLER.FILE, such as memory.max)")]
    CgroupKey { key: String },
    #[error("--cgroup {key}: the {controller} controller is not mounted on this host ({mode})")]
    ControllerNotMounted {
        key: String,
        controller: String,
        mode: &'static str,
    },
    #[error("--cgroup {key}: unknown key (no such file in the VM's {controller} group)")]
    UnknownCgroupKey { key: String, controller: String },
    #[error("--cgroup {key}={value}: the kernel refused the value")]
    CgroupValue {
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path:?}: cannot {action}")]
    Cgroup {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("--resource-limit {value:?}: {reason}")]
    ResourceLimit { value: String, reason: &'static str },
    #[error("{what} {path:?}")]
    HostFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path:?} is a directory, not a file")]
    HostFileIsDirectory { what: &'static str, path: PathBuf },
    #[error("vsock socket {path:?}: its directory would be bound into the jail whole; give the socket a directory of its own")]
    VsockDirectory { path: PathBuf },
    #[error("--netns {path:?}: cannot join it as a network namespace")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path:?}: uid {uid} gid {gid} may not {need} it (give it to that user, as for Firecracker's jailer)")]
    NoAccess {
        what: &'static str,
        path: PathBuf,
        uid: u32,
        gid: u32,
        need: &'static str,
    },
    #[error("jail set-up: {action}")]
    Setup {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("jail set-up")]
    Runtime(#[from] runtime::error::ContainerError),
}

impl JailError {
    /// True when the input was at fault (exit status 2), false when the host failed.
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            JailError::Cgroup { .. } | JailError::Setup { .. } | JailError::Runtime(_)
        )
    }

    /// A [`JailError::Setup`] maker for `map_err`.
    pub fn setup(action: impl Into<String>) -> impl FnOnce(io::Error) -> JailError {
        let action = action.into();
        move |source| JailError::Setup { action, source }
    }
}
