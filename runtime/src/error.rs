//! Errors of the container runtime. Each names the thing and the problem once; the binary's
//! edge prints the chain. [`ContainerError::is_bad_input`] separates the caller's mistakes
//! (exit status 2) from failures of the host (exit status 1).

use std::io;
use std::path::PathBuf;

use super::state_dir::StateDirError;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("rootfs {0:?} does not exist or is not a directory")]
    MissingRootfs(PathBuf),
    #[error("no command given: pass one after `--` or set process.args in config.json")]
    NoCommand,
    #[error("command {command:?} not found in the container's rootfs")]
    CommandNotFound { command: String },
    #[error("bundle {path:?}: cannot read config.json")]
    BundleUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bundle config {path:?} is not a valid OCI runtime spec: {reason}")]
    InvalidSpec { path: PathBuf, reason: String },
    #[error("unsupported in this runtime: {0}")]
    Unsupported(String),
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("mount source {0:?} does not exist")]
    MissingMountSource(PathBuf),
    #[error("{action}")]
    Sys {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("container setup failed: {0}")]
    Setup(String),
    #[error("cgroup {path:?}: {action}")]
    Cgroup {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("{stage} hook {path:?} failed: {reason}")]
    Hook {
        stage: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("working directory {0:?} does not exist in the container, or is not a directory")]
    MissingWorkdir(PathBuf),
    /// Another live run holds the container's ID (and with it, its cgroup).
    #[error("container {id} is in use by another run{holder}: choose another name, or wait for it to end")]
    InUse { id: String, holder: String },
    #[error(transparent)]
    State(#[from] StateDirError),
    /// An error the container's first process reported before it could exec.
    #[error("{message}")]
    Child { message: String, bad_input: bool },
}

impl ContainerError {
    /// True when the caller gave something that cannot work (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::MissingRootfs(_)
                | Self::NoCommand
                | Self::CommandNotFound { .. }
                | Self::BundleUnreadable { .. }
                | Self::InvalidSpec { .. }
                | Self::Unsupported(_)
                | Self::InvalidValue { .. }
                | Self::MissingMountSource(_)
                | Self::Seccomp(_)
                | Self::MissingWorkdir(_)
                | Self::InUse { .. }
                | Self::State(
                    StateDirError::BadId(_) | StateDirError::NotFound(_) | StateDirError::Busy(_),
                )
                | Self::Child {
                    bad_input: true,
                    ..
                }
        )
    }

    pub(crate) fn sys(action: impl Into<String>, source: io::Error) -> Self {
        Self::Sys {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::InvalidValue {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ContainerError>;
