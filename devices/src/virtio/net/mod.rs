//! virtio-net (device ID 1) over a TAP device, or any packet fd that stands in for one.
//!
//! Queues: 0 = receive (host → guest), 1 = transmit (guest → host). Features: VERSION_1,
//! MAC (when the user gave one; otherwise the guest picks a random one) and STATUS (the
//! link is always up). No offloads and no mergeable rx buffers: every frame is one chain
//! with the 12-byte `virtio_net_hdr_v1` in front, which is what the tap speaks with
//! `IFF_VNET_HDR`, so frames cross without reformatting. Receive and transmit may each
//! have a rate limiter (a frame is an op and counts its bytes, the vnet header included).

mod handler;
mod state;

#[cfg(test)]
mod rate_limit_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP};

use super::config;
use super::rate_limiter::QueueLimiter;
use super::state::{DeviceState, SavedDevice, StateError};
use super::tap::Tap;
use super::worker::Worker;
use super::{ActivateContext, ActivateError, VirtioDevice};
use handler::NetHandler;

pub use state::NetState;

/// The STATUS field's link-up bit, a le16; virtio-bindings spells it as a u32.
#[allow(clippy::cast_possible_truncation)] // the value is 1
const STATUS_LINK_UP: u16 = VIRTIO_NET_S_LINK_UP as u16;

/// Entries per queue; Linux's driver fills the whole rx ring with 1.5 KiB buffers.
pub const NET_QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 2] = [NET_QUEUE_SIZE; 2];
/// Config space: mac[6], status u16 (virtio 1.x §5.1.4).
const CONFIG_LEN: usize = 8;

/// The host side of the device: a non-blocking fd with packet semantics (one read = one
/// frame, one write = one frame), each frame preceded by a 12-byte `virtio_net_hdr_v1`.
/// A [`Tap`] opened with `IFF_VNET_HDR` is one; so is a `SOCK_DGRAM` socketpair.
pub type NetBackend = Arc<dyn AsRawFd + Send + Sync>;

/// What the data path did, for tests, benchmarks and diagnostics.
#[derive(Debug, Default)]
pub struct NetCounters {
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Frames read from the backend that did not reach the guest (too big for the
    /// buffer, shorter than the header).
    pub rx_dropped: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Frames the guest sent that the backend refused or that were too long.
    pub tx_dropped: AtomicU64,
    /// Descriptor chains returned with length 0 because they were malformed.
    pub malformed_chains: AtomicU64,
}

pub struct Net {
    backend: NetBackend,
    mac: Option<[u8; 6]>,
    counters: Arc<NetCounters>,
    /// Kept here across resets, so a reset does not refill their buckets.
    rx_limiter: QueueLimiter,
    tx_limiter: QueueLimiter,
    /// Dropping it stops and joins the thread.
    worker: Option<Worker<NetHandler>>,
    /// A received frame a saved worker held for the guest: the next activation delivers
    /// it first.
    held_frame: Option<Vec<u8>>,
}

impl Net {
    pub fn new(tap: Tap, mac: Option<[u8; 6]>) -> Net {
        Self::with_backend(Arc::new(tap), mac)
    }

    /// A device over any backend fd (see [`NetBackend`]); tests and benchmarks pass a
    /// socketpair here.
    pub fn with_backend(backend: NetBackend, mac: Option<[u8; 6]>) -> Net {
        Net {
            backend,
            mac,
            counters: Arc::default(),
            rx_limiter: QueueLimiter::default(),
            tx_limiter: QueueLimiter::default(),
            worker: None,
            held_frame: None,
        }
    }

    /// Limits the frames that reach the guest by `rx` and those it sends by `tx` (by
    /// default nothing limits either).
    pub fn with_rate_limiters(mut self, rx: QueueLimiter, tx: QueueLimiter) -> Net {
        self.rx_limiter = rx;
        self.tx_limiter = tx;
        self
    }

    pub fn mac(&self) -> Option<[u8; 6]> {
        self.mac
    }

    pub fn counters(&self) -> Arc<NetCounters> {
        self.counters.clone()
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&self.mac.unwrap_or_default());
        config[6..].copy_from_slice(&STATUS_LINK_UP.to_le_bytes());
        config
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        let mut features = 1u64 << VIRTIO_F_VERSION_1 | 1u64 << VIRTIO_NET_F_STATUS;
        if self.mac.is_some() {
            features |= 1u64 << VIRTIO_NET_F_MAC;
        }
        features
    }

    /// The config space is read-only: the MAC for a VERSION_1 driver (§5.1.4), and the
    /// status is the device's.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        config::read(&self.config(), offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let limiters = [self.rx_limiter.clone(), self.tx_limiter.clone()];
        let mut handler =
            NetHandler::new(ctx, self.backend.clone(), self.counters.clone(), limiters)?;
        if let Some(frame) = self.held_frame.take() {
            handler.hold_frame(&frame);
        }
        let fds = handler.fds();
        // A second activation without reset would leave two workers on one queue.
        self.worker = None;
        let worker =
            Worker::start("vmm-virtio-net", &fds, handler).map_err(ActivateError::Worker)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
        self.held_frame = None;
    }

    fn save(&mut self) -> Result<SavedDevice, StateError> {
        self.save_state()
    }

    fn restore(&mut self, state: DeviceState) -> Result<(), StateError> {
        self.restore_state(state)
    }
}
