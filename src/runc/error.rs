//! `vmm-runc`'s errors. Messages follow runc's where clients match on them (Podman and
//! containerd treat "does not exist" as already gone).

use std::io;
use std::path::PathBuf;

use runtime::error::ContainerError;
use runtime::state_dir::StateDirError;

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error(
        "invalid container ID {0:?}: use letters, digits, '-', '_' and '.', not starting with '.'"
    )]
    BadId(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container with id {0} already exists")]
    Exists(String),
    #[error("container {0} is being created by another vmm-runc")]
    Busy(String),
    #[error("state file {path:?} is unreadable: {reason}")]
    CorruptState { path: PathBuf, reason: String },
    #[error("cannot {op} container {id}: it is {status}")]
    WrongStatus {
        id: String,
        op: &'static str,
        status: &'static str,
    },
    #[error("unknown signal {0:?}")]
    BadSignal(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Container(#[from] ContainerError),
}

/// The state directory's errors in runc's words (clients match on "does not exist").
impl From<StateDirError> for RuncError {
    fn from(e: StateDirError) -> Self {
        match e {
            StateDirError::BadId(id) => Self::BadId(id),
            StateDirError::NotFound(id) => Self::NotFound(id),
            StateDirError::Busy(id) => Self::Busy(id),
            StateDirError::Corrupt { path, reason } => Self::CorruptState { path, reason },
            StateDirError::Io { action, source } => Self::Io { action, source },
        }
    }
}

impl RuncError {
    pub fn io(action: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }

    /// The caller's mistake (exit status 2) rather than a failure (1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Self::BadId(_) | Self::BadSignal(_) | Self::Unsupported(_) => true,
            Self::Container(e) => e.is_bad_input(),
            _ => false,
        }
    }
}
