//! virtio-balloon (device ID 5), with Firecracker's semantics: the host sets a target
//! size, the guest inflates (gives pages, which the device releases to the host with
//! `madvise(MADV_DONTNEED)`) or deflates (takes them back; the next touch faults in a zero
//! page) towards it, and optionally reports memory statistics every interval.
//!
//! Queues: 0 = inflate, 1 = deflate, 2 = stats (only when a polling interval is set).
//! Config space (§5.5.4): le32 num_pages (target, host-written), le32 actual (guest).
//!
//! Releasing works for the private anonymous mappings `GuestMemoryMmap::from_ranges`
//! makes; a shared or file-backed guest memory would need `FALLOC_FL_PUNCH_HOLE` instead.

mod handler;
mod state;
mod stats;

#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_BALLOON;

use super::config;
use super::state::{DeviceState, SavedDevice, StateError};
use super::worker::Worker;
use super::{ActivateContext, ActivateError, Interrupt, VirtioDevice};
use handler::BalloonHandler;
pub use state::BalloonState;
use stats::PAGES_PER_MIB;
pub use stats::{BalloonStats, PAGE_SIZE};

/// The guest reports statistics through the stats queue.
pub const VIRTIO_BALLOON_F_STATS_VQ: u32 = 1;
/// The guest may deflate when it runs out of memory.
pub const VIRTIO_BALLOON_F_DEFLATE_ON_OOM: u32 = 2;

pub const BALLOON_QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 3] = [BALLOON_QUEUE_SIZE; 3];
const CONFIG_LEN: usize = 8;
/// Where `actual`, the one field the driver writes, starts in the config space.
const ACTUAL_OFFSET: u64 = 4;

/// State shared by the device, its worker and every [`BalloonHandle`].
#[derive(Default)]
struct Shared {
    target_pages: AtomicU32,
    actual_pages: AtomicU32,
    stats: Mutex<BalloonStats>,
    /// Set while the device is active, so a target change can interrupt the driver.
    interrupt: Mutex<Option<Arc<Interrupt>>>,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, BalloonStats> {
        // The stats are plain numbers: a panic mid-update leaves nothing inconsistent.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Controls a balloon from the VMM after the device was handed to its transport.
#[derive(Clone)]
pub struct BalloonHandle(Arc<Shared>);

impl BalloonHandle {
    /// The latest statistics and the current target/actual sizes.
    pub fn stats(&self) -> BalloonStats {
        let mut stats = self.0.stats().clone();
        stats.target_pages = self.0.target_pages.load(Ordering::SeqCst);
        stats.actual_pages = self.0.actual_pages.load(Ordering::SeqCst);
        stats.target_mib = stats.target_pages / PAGES_PER_MIB;
        stats.actual_mib = stats.actual_pages / PAGES_PER_MIB;
        stats
    }

    /// Sets a new target size and tells the driver (config-change interrupt) when the
    /// device is running; otherwise the driver reads it at probe.
    pub fn set_target_mib(&self, mib: u32) {
        let pages = mib.saturating_mul(PAGES_PER_MIB);
        self.0.target_pages.store(pages, Ordering::SeqCst);
        let interrupt = self
            .0
            .interrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(interrupt) = interrupt.as_ref() {
            interrupt.signal_config_change();
        }
    }
}

pub struct Balloon {
    shared: Arc<Shared>,
    avail_features: u64,
    stats_interval: Option<Duration>,
    /// Dropping it stops and joins the thread.
    worker: Option<Worker<BalloonHandler>>,
    /// The stats buffer a saved worker held: the next activation holds it in turn.
    held_stats_head: Option<u16>,
    /// The target a saved device had: a target set while it was stopped (no interrupt can
    /// reach the driver then) is announced when it starts again.
    saved_target_pages: Option<u32>,
}

impl Balloon {
    /// A balloon whose initial target is `amount_mib`; `stats_polling_interval_s` = 0
    /// disables statistics (no stats queue offered).
    pub fn new(amount_mib: u32, deflate_on_oom: bool, stats_polling_interval_s: u16) -> Balloon {
        let mut avail_features = 1u64 << VIRTIO_F_VERSION_1;
        if deflate_on_oom {
            avail_features |= 1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
        }
        let stats_interval = (stats_polling_interval_s > 0)
            .then(|| Duration::from_secs(u64::from(stats_polling_interval_s)));
        if stats_interval.is_some() {
            avail_features |= 1 << VIRTIO_BALLOON_F_STATS_VQ;
        }
        let balloon = Balloon {
            shared: Arc::default(),
            avail_features,
            stats_interval,
            worker: None,
            held_stats_head: None,
            saved_target_pages: None,
        };
        balloon.handle().set_target_mib(amount_mib);
        balloon
    }

    /// A handle that stays usable after the device moved into its transport.
    pub fn handle(&self) -> BalloonHandle {
        BalloonHandle(self.shared.clone())
    }

    pub fn stats(&self) -> BalloonStats {
        self.handle().stats()
    }

    pub fn set_target_mib(&self, mib: u32) {
        self.handle().set_target_mib(mib)
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut config = [0u8; CONFIG_LEN];
        let target = self.shared.target_pages.load(Ordering::SeqCst);
        let actual = self.shared.actual_pages.load(Ordering::SeqCst);
        config[..4].copy_from_slice(&target.to_le_bytes());
        config[4..].copy_from_slice(&actual.to_le_bytes());
        config
    }

    fn stop_worker(&mut self) {
        *self
            .shared
            .interrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.worker = None;
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    fn queue_max_sizes(&self) -> &[u16] {
        let queues = if self.stats_interval.is_some() { 3 } else { 2 };
        &QUEUE_SIZES[..queues]
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        config::read(&self.config(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only `actual` (bytes 4..8) is driver-writable; a partial write updates the bytes
        // it covers.
        let mut config = self.config();
        if offset < ACTUAL_OFFSET || !config::write(&mut config, offset, data) {
            return;
        }
        let actual = u32::from_le_bytes([config[4], config[5], config[6], config[7]]);
        self.shared.actual_pages.store(actual, Ordering::SeqCst);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let stats_acked = ctx.acked_features & (1 << VIRTIO_BALLOON_F_STATS_VQ) != 0;
        let interval = self.stats_interval.filter(|_| stats_acked);
        let interrupt = ctx.interrupt.clone();
        let mut handler = BalloonHandler::new(ctx, interval, self.shared.clone())?;
        self.stop_worker();
        if let Some(head) = self.held_stats_head.take() {
            handler.hold_stats_buffer(head);
        }
        handler.kick_all().map_err(ActivateError::Worker)?;
        let fds = handler.fds();
        let worker = Worker::start("vmm-balloon", &fds, handler).map_err(ActivateError::Worker)?;
        self.worker = Some(worker);
        let target = self.shared.target_pages.load(Ordering::SeqCst);
        if self.saved_target_pages.take().is_some_and(|t| t != target) {
            interrupt.signal_config_change();
        }
        *self
            .shared
            .interrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(interrupt);
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
        self.held_stats_head = None;
        self.saved_target_pages = None;
        self.shared.actual_pages.store(0, Ordering::SeqCst);
    }

    fn save(&mut self) -> Result<SavedDevice, StateError> {
        self.save_state()
    }

    fn restore(&mut self, state: DeviceState) -> Result<(), StateError> {
        self.restore_state(state)
    }
}

impl Drop for Balloon {
    fn drop(&mut self) {
        self.stop_worker();
    }
}
