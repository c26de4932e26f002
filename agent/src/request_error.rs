//! Why a request failed, and what kind of error the host is told it is.

use std::io;

use agent_protocol::protocol::{ErrorKind, Reply, SEED_BYTES};
use edge::error_chain;
use runtime::error::ContainerError;

use crate::files::FilesError;
use crate::guest_init::InitError;
use crate::link::LinkError;
use crate::requests::{MAX_CONTAINERS, MAX_WAITS};
use crate::rootfs::RootError;

/// Why a request failed; [`RequestError::kind`] is what the host is told about it.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no container {0:?}")]
    Unknown(String),
    #[error("container {0:?} exists already")]
    Exists(String),
    #[error("too many containers (at most {MAX_CONTAINERS} at once)")]
    TooMany,
    #[error("too many pending waits for container {0:?} (at most {MAX_WAITS})")]
    TooManyWaits(String),
    #[error("container {0:?} was started already")]
    Started(String),
    #[error("the {stream} of container {container:?} is attached already")]
    Attached {
        container: String,
        stream: &'static str,
    },
    #[error("attach must be the first line of its own connection")]
    AttachNotFirst,
    #[error(
        "container {0:?} was removed before it ended (its start failed or its owner went away)"
    )]
    Removed(String),
    #[error("signal container {container:?}")]
    NotRunning {
        container: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot exec in {0:?}: it is not running, or is an exec itself")]
    NotExecTarget(String),
    #[error("container {0:?} has no terminal (it is not running, or runs without one)")]
    NoTerminal(String),
    #[error("resize the terminal of container {container:?}")]
    Resize {
        container: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid signal number {0}")]
    BadSignal(i32),
    #[error("set up the standard streams of container {container:?}")]
    Stdio {
        container: String,
        #[source]
        source: io::Error,
    },
    #[error("hello's seed must be {SEED_BYTES} bytes, not {0}")]
    BadSeed(usize),
    #[error("seed the guest kernel's random number generator")]
    Seed(#[source] io::Error),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Files(#[from] FilesError),
}

impl RequestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Unknown(_) | Self::Started(_) | Self::Attached { .. } | Self::AttachNotFirst => {
                ErrorKind::Protocol
            }
            Self::Exists(_) | Self::BadSignal(_) | Self::NotExecTarget(_) | Self::NoTerminal(_) => {
                ErrorKind::BadInput
            }
            // Hosts send the seed themselves: a wrong length is a host's bug.
            Self::BadSeed(_) => ErrorKind::Protocol,
            Self::Container(e) if e.is_bad_input() => ErrorKind::BadInput,
            Self::Link(e) if e.is_bad_input() => ErrorKind::BadInput,
            Self::Files(e) if e.is_bad_input() => ErrorKind::BadInput,
            Self::TooMany
            | Self::TooManyWaits(_)
            | Self::Removed(_)
            | Self::NotRunning { .. }
            | Self::Resize { .. }
            | Self::Stdio { .. }
            | Self::Seed(_)
            | Self::Container(_)
            | Self::Root(_)
            | Self::Init(_)
            | Self::Link(_)
            | Self::Files(_) => ErrorKind::Failed,
        }
    }

    pub(crate) fn reply(&self, id: u64) -> Reply {
        Reply::error(Some(id), self.kind(), error_chain(self))
    }
}
