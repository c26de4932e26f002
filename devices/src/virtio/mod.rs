//! Virtio devices over the virtio-mmio transport (virtio 1.x, split queues from
//! virtio-queue). `device` holds the contract between the transport and a device model;
//! `mmio` the transport; one file per device.

pub mod balloon;
pub mod blk;
pub mod device;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod tap;
pub mod vsock;
pub mod worker;

pub use balloon::{Balloon, BalloonHandle, BalloonStats};
pub use blk::{Block, BlockError};
pub use device::{ActivateContext, ActivateError, Interrupt, VirtioDevice};
pub use mmio::MmioTransport;
pub use net::Net;
pub use rng::Rng;
pub use tap::{Tap, TapError};
pub use vsock::{Vsock, VsockError};
