//! Virtio devices over the virtio-mmio transport (virtio 1.x, split queues from
//! virtio-queue). `device` holds the contract between the transport and a device model;
//! `mmio` the transport; `worker` the thread every device runs its queues on, `chain`
//! the checked descriptor chains every device takes off its queues, `config` the
//! configuration-space accesses, `metrics` the counts all devices share and
//! `rate_limiter` the token buckets blk, net and rng may be limited by, `state` the
//! snapshots of devices (each device's own state is in its folder's `state.rs`); one file
//! (or folder) per device.

pub mod balloon;
pub mod blk;
pub mod chain;
pub mod config;
pub mod device;
#[cfg(test)]
mod fuzz;
pub mod metrics;
pub mod mmio;
pub mod net;
pub mod rate_limiter;
pub mod rng;
pub mod state;
pub mod tap;
pub mod vsock;
pub mod worker;

pub use balloon::{Balloon, BalloonHandle, BalloonState, BalloonStats};
pub use blk::{Block, BlockError, BlockState, DiskImage, SwapError};
pub use device::{ActivateContext, ActivateError, DeviceQueue, Interrupt, VirtioDevice};
pub use metrics::{DeviceErrors, ErrorCounters};
pub use mmio::{MmioTransport, QueueState, TransportState};
pub use net::{Net, NetState};
pub use rate_limiter::{QueueLimiter, RateLimiterConfig, TokenBucketConfig};
pub use rng::{Rng, RngState};
pub use state::{DeviceState, SavedDevice, StateError, STATE_VERSION};
pub use tap::{Tap, TapError};
pub use vsock::{Vsock, VsockConnection, VsockError, VsockState};
