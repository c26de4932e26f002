//! virtio-blk (device ID 2) over a raw disk image: one request queue served by a worker
//! thread; reads, writes, FLUSH (a real fdatasync) and GET_ID, optionally rate limited
//! (every request is an op, reads and writes count their data bytes).

mod disk;
mod handler;
mod image;
mod request;
mod state;
mod swap;
#[cfg(test)]
mod tests;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_ID_BYTES,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

use self::disk::Disk;
use self::handler::BlockHandler;
use super::config;
use super::device::{ActivateContext, ActivateError, VirtioDevice};
use super::rate_limiter::QueueLimiter;
use super::state::{DeviceState, SavedDevice, StateError};
use super::worker::Worker;
use crate::user_file::OpenError;

pub use self::image::DiskImage;
pub use self::state::BlockState;
pub use self::swap::SwapError;

/// virtio device ID of a block device.
pub const VIRTIO_ID_BLOCK: u32 = 2;
/// The unit of virtio-blk sector numbers and capacity, whatever the disk's block size.
pub const SECTOR_SIZE: u64 = 512;
/// Entries in the request queue (Firecracker and Cloud Hypervisor use 256 too).
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE];
/// Data segments per request: a chain also holds the header and the status.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Most bytes of a disk id, the GET_ID answer (`VIRTIO_BLK_ID_BYTES`); the VMM's spec
/// checks refuse longer ids before a device is made.
pub const ID_LEN: usize = VIRTIO_BLK_ID_BYTES as usize;

/// Why a disk could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("disk image {0}")]
    Open(#[source] OpenError),
    #[error("cannot read the size of disk image {path:?}")]
    Size {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("disk id {id:?} is longer than {ID_LEN} bytes")]
    IdTooLong { id: String },
}

/// A virtio block device backed by a raw image file (or a host block device).
pub struct Block {
    /// Shared with the worker, which holds the lock through each request: a swap
    /// (`swap`) waits for the request in progress, and the next one sees the new disk.
    disk: Arc<Mutex<Disk>>,
    /// As configured: a swapped-in image is opened the same way.
    read_only: bool,
    /// The GET_ID answer follows the image's file (no id was given), so a swap derives
    /// it again from the new file.
    id_from_file: bool,
    avail_features: u64,
    /// `struct virtio_blk_config` up to `blk_size`, little endian.
    config: [u8; 24],
    /// Kept here across resets, so a reset does not refill its buckets.
    limiter: QueueLimiter,
    worker: Option<Worker<BlockHandler>>,
}

impl Block {
    /// Opens `path` (read-write, or read-only when `read_only`). `id` is the GET_ID
    /// answer (at most 20 bytes); without it one is derived from the file's device and
    /// inode numbers, stable across runs for the same file.
    pub fn new(path: &Path, read_only: bool, id: Option<String>) -> Result<Block, BlockError> {
        let image = DiskImage::open(path, read_only)?;
        let id_from_file = id.is_none();
        let id = match id {
            Some(id) if id.len() > ID_LEN => return Err(BlockError::IdTooLong { id }),
            Some(id) => id,
            None => image.derived_id.clone(),
        };
        let capacity = image.capacity;
        let mut avail_features = 1u64 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE;
        if read_only {
            avail_features |= 1 << VIRTIO_BLK_F_RO;
        }
        Ok(Block {
            disk: Arc::new(Mutex::new(Disk::new(image, id_bytes(&id)))),
            read_only,
            id_from_file,
            avail_features,
            config: config_space(capacity),
            limiter: QueueLimiter::default(),
            worker: None,
        })
    }

    /// Limits the request queue by `limiter` (by default nothing limits it).
    pub fn with_rate_limiter(mut self, limiter: QueueLimiter) -> Block {
        self.limiter = limiter;
        self
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.disk().capacity
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The disk, between two requests of the worker.
    fn disk(&self) -> MutexGuard<'_, Disk> {
        lock_disk(&self.disk)
    }
}

/// A worker that panicked mid-request leaves the disk whole (its fields are only replaced
/// whole, by a swap), so a poisoned lock is taken as it is.
fn lock_disk(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    disk.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `id` as the GET_ID answer: its first 20 bytes, NUL padded.
fn id_bytes(id: &str) -> [u8; ID_LEN] {
    let mut bytes = [0u8; ID_LEN];
    let n = id.len().min(ID_LEN);
    bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
    bytes
}

/// The config space's blk_size (a le32): the sector size.
const BLK_SIZE: u32 = 512;
const _: () = assert!(BLK_SIZE as u64 == SECTOR_SIZE);

/// capacity (u64 @0), size_max (u32 @8, not offered), seg_max (u32 @12), geometry
/// (4 bytes @16, not offered), blk_size (u32 @20).
fn config_space(capacity: u64) -> [u8; 24] {
    let mut c = [0u8; 24];
    c[0..8].copy_from_slice(&capacity.to_le_bytes());
    c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
    c[20..24].copy_from_slice(&BLK_SIZE.to_le_bytes());
    c
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        self.avail_features
    }

    /// Every field is read-only: the driver may write only `writeback`, and only with
    /// VIRTIO_BLK_F_CONFIG_WCE, which is not offered.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        config::read(&self.config, offset, data);
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), ActivateError> {
        let [request_queue] = ctx.take_queues()?;
        // Token 0 is the queue's eventfd, token 1 the limiter's timer (see `handler`).
        let mut fds = vec![request_queue.evt.as_raw_fd()];
        fds.extend(self.limiter.timer_fd());
        let handler =
            BlockHandler::new(ctx, request_queue, self.disk.clone(), self.limiter.clone());
        // A second activation without reset would leave two workers on one queue.
        self.reset();
        let worker =
            Worker::start("vmm-virtio-blk", &fds, handler).map_err(ActivateError::Worker)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        // Dropping the worker stops and joins its thread; the queue it owned goes with it.
        self.worker = None;
    }

    fn save(&mut self) -> Result<SavedDevice, StateError> {
        self.save_state()
    }

    fn restore(&mut self, state: DeviceState) -> Result<(), StateError> {
        self.restore_state(state)
    }

    fn swap_disk(&mut self, image: DiskImage) -> Result<(), SwapError> {
        self.swap_image(image)
    }
}
