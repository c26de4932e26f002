//! Snapshots of virtio devices: the state types every device saves, and why a saved state
//! cannot be restored.
//!
//! How a device is saved (`MmioTransport::save`, with the vCPUs paused): the device's
//! worker is stopped between two requests and its handler taken back
//! (`Worker::stop_and_take`). A handler finishes every chain it takes off a ring within one
//! call (used, or put back with `go_to_previous_position`), so at that point a request the
//! guest made is either in the used ring or still in the available ring, where the next
//! worker finds it: nothing is lost and nothing runs twice. The queues' `next_avail` and
//! `next_used` are read from the queues the handler gave back; what the handler held
//! besides (net's frame waiting for a buffer, the balloon's stats buffer, vsock's
//! connection table) goes into the device's own state ([`DeviceState`]).
//!
//! After a save the device stays stopped until `MmioTransport::resume`, so nothing writes
//! guest memory while the VMM copies it. Resuming starts the device from the state just
//! saved, through the same `VirtioDevice::restore` and activation a restored VM takes,
//! rather than restarting the old handler: the restore path then runs on every snapshot,
//! and the VM that goes on is in the same state as every VM restored from the snapshot
//! (for vsock, with the same connections reset).
//!
//! Versioning: every state carries [`STATE_VERSION`], and restore refuses any other. The
//! version goes up whenever a field is added, removed or changes meaning; states are not
//! converted between versions.

use serde::{Deserialize, Serialize};
use virtio_queue::Queue;

use super::balloon::BalloonState;
use super::blk::BlockState;
use super::device::ActivateError;
use super::mmio::QueueError;
use super::net::NetState;
use super::rng::RngState;
use super::vsock::VsockState;

/// The version of the device states this build writes and reads.
/// 2: the transport saves ConfigGeneration (a disk swapped at run time changes it).
pub const STATE_VERSION: u32 = 2;

/// A device's own state, beside its transport's: one variant per device type, so a state
/// cannot be restored into a device of another type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    Block(BlockState),
    Net(NetState),
    Vsock(VsockState),
    Rng(RngState),
    /// Boxed: its statistics make it several times the size of the others.
    Balloon(Box<BalloonState>),
}

impl DeviceState {
    /// The device type, as Linux's driver names it.
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceState::Block(_) => "blk",
            DeviceState::Net(_) => "net",
            DeviceState::Vsock(_) => "vsock",
            DeviceState::Rng(_) => "rng",
            DeviceState::Balloon(_) => "balloon",
        }
    }
}

/// What `VirtioDevice::save` hands the transport.
pub struct SavedDevice {
    pub state: DeviceState,
    /// The queues the stopped worker owned, slot `i` for queue `i` (`None` for one it did
    /// not take); empty when no worker was running.
    pub queues: Vec<Option<Queue>>,
}

/// The name of virtio device type `id` (virtio 1.x §5), for messages.
pub fn device_kind(id: u32) -> &'static str {
    match id {
        1 => "net",
        2 => "blk",
        4 => "rng",
        5 => "balloon",
        19 => "vsock",
        _ => "unknown",
    }
}

/// Why a device could not be saved, or a saved state not restored. Restoring checks the
/// whole state before any device runs, so a refused state leaves nothing half started.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("device state version {found} is not {STATE_VERSION}, the version this vmm reads")]
    Version { found: u32 },
    #[error("the state is of a virtio-{found} device, not of the virtio-{expected} device here")]
    WrongDevice {
        expected: &'static str,
        found: &'static str,
    },
    #[error("the {device} device cannot be saved or restored")]
    Unsupported { device: &'static str },
    #[error("the state has {found} queues, the virtio-{device} device has {expected}")]
    QueueCount {
        device: &'static str,
        found: usize,
        expected: usize,
    },
    #[error("queue {index}: the state's maximum size is {found}, the device's is {expected}")]
    QueueMaxSize {
        index: usize,
        found: u16,
        expected: u16,
    },
    #[error("queue {index} cannot be used")]
    Queue {
        index: usize,
        #[source]
        source: QueueError,
    },
    #[error(
        "queue {index}: {in_flight} chains in flight (next_avail {next_avail}, next_used \
         {next_used}) in a {size}-entry queue"
    )]
    InFlight {
        index: usize,
        in_flight: u16,
        next_avail: u16,
        next_used: u16,
        size: u16,
    },
    #[error(
        "queue {index}: the used index in guest memory is {in_memory}, the state's is {saved}: \
         the memory is not the one saved with this state"
    )]
    UsedIndex {
        index: usize,
        in_memory: u16,
        saved: u16,
    },
    #[error("queue {index}: cannot read its used ring")]
    UsedRing {
        index: usize,
        #[source]
        source: virtio_queue::Error,
    },
    #[error("device status {status:#x} is not one a driver can reach")]
    Status { status: u32 },
    #[error(
        "device status {status:#x} and the device's running ({running}) contradict each other"
    )]
    Inconsistent { status: u32, running: bool },
    #[error("the driver accepted features {accepted:#x}, the device offers only {offered:#x}")]
    Features { accepted: u64, offered: u64 },
    #[error("virtio-{device}: the state's {what} is {saved}, the device's is {now}")]
    Mismatch {
        device: &'static str,
        what: &'static str,
        saved: String,
        now: String,
    },
    #[error("virtio-{device}: {problem}")]
    Invalid {
        device: &'static str,
        problem: String,
    },
    #[error("the virtio-{device} worker ended abnormally: its queues are lost")]
    WorkerLost { device: &'static str },
    #[error("cannot make an eventfd for the restored transport")]
    EventFd(#[source] std::io::Error),
    #[error("the device could not start again")]
    Activate(#[source] ActivateError),
}

impl StateError {
    /// `found` is not a state of the `expected` device type.
    pub fn wrong_device(expected: &'static str, found: &DeviceState) -> StateError {
        StateError::WrongDevice {
            expected,
            found: found.kind(),
        }
    }

    /// The device's configuration (`now`) contradicts what the guest saw (`saved`).
    pub fn mismatch(
        device: &'static str,
        what: &'static str,
        saved: impl ToString,
        now: impl ToString,
    ) -> StateError {
        StateError::Mismatch {
            device,
            what,
            saved: saved.to_string(),
            now: now.to_string(),
        }
    }
}
