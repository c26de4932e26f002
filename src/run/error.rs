//! Why `vmm run` could not run the workload. [`RunError::is_bad_input`] separates the
//! caller's mistakes (exit status 2) from failures of the host, the VM or the guest (1).

use std::io;

use agent_protocol::protocol::{ErrorKind, ReplyError, PROTOCOL_VERSION};
use runtime::error::ContainerError;

use crate::vm::control::ControlError;
use crate::vm::VmError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    RootfsImage(#[from] super::rootfs_image::RootfsImageError),
    #[error(transparent)]
    Images(#[from] super::images::ImagesError),
    /// Options that cannot work together or at this level.
    #[error("{0}")]
    BadInput(String),
    #[error(
        "the {level} level needs a host that can boot Linux guests, and this one cannot: {reason}"
    )]
    CannotBootLinux { level: &'static str, reason: String },
    #[error("cannot {op}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the guest agent refused: {0}")]
    Agent(ReplyError),
    #[error("the guest agent went away during {during}")]
    AgentGone {
        during: &'static str,
        #[source]
        source: Option<io::Error>,
    },
    #[error("the guest agent did not answer within {secs} s")]
    AgentTimeout { secs: u64 },
    #[error(
        "the guest agent ({agent}) speaks protocol version {protocol}, this vmm speaks \
         {PROTOCOL_VERSION}: rebuild the agent initramfs with resources/build-images.sh"
    )]
    AgentVersion { agent: String, protocol: u32 },
    #[error(
        "the guest agent did not answer within {secs} s of boot (is --initrd the agent \
         initramfs that resources/build-images.sh builds?){console}"
    )]
    BootTimeout { secs: u64, console: String },
    #[error("the microVM ended before the workload did: {outcome}{console}")]
    VmEnded { outcome: String, console: String },
    #[error("the microVM's control: {0}")]
    Control(#[from] ControlError),
    #[error("warm snapshot cache: cannot {action}")]
    WarmSnapshot {
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the warm snapshot's VM was not restored within {secs} s")]
    WarmSnapshotStuck { secs: u64 },
}

impl RunError {
    /// True when the caller gave something that cannot work (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Self::Container(e) => e.is_bad_input(),
            Self::Vm(e) => e.is_bad_input(),
            Self::RootfsImage(e) => e.is_bad_input(),
            Self::Images(_) | Self::BadInput(_) | Self::CannotBootLinux { .. } => true,
            Self::Agent(ReplyError::Agent(e)) => e.kind == ErrorKind::BadInput,
            Self::Io { .. }
            | Self::Agent(_)
            | Self::AgentGone { .. }
            | Self::AgentTimeout { .. }
            | Self::AgentVersion { .. }
            | Self::BootTimeout { .. }
            | Self::VmEnded { .. }
            | Self::Control(_)
            | Self::WarmSnapshot { .. }
            | Self::WarmSnapshotStuck { .. } => false,
        }
    }

    /// An [`RunError::Io`] maker for `map_err`.
    pub fn io(op: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { op, source }
    }
}

/// The last lines of a guest console, as a suffix for an error message.
pub fn console_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from("; the guest's console said last:");
    for line in lines {
        text.push_str("\n  | ");
        text.push_str(line);
    }
    text
}
