//! Replacing the backing file of a block device that the guest is using (Firecracker's
//! `PATCH /drives/{id}` after boot): the new image takes the old one's place between two
//! requests of the worker, the capacity in the config space follows it, and the transport
//! (`mmio::config_change`) tells the driver. The read-only flag stays as configured: the
//! driver negotiated VIRTIO_BLK_F_RO once and does not read it again.

use std::mem;

use super::disk::Disk;
use super::image::DiskImage;
use super::{config_space, id_bytes, Block};

/// Why a device did not take a new disk image; it keeps the one it had.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("the virtio-{device} device has no disk to replace")]
    NotADisk { device: &'static str },
    #[error(
        "the new image was opened {}, the drive is {}",
        rw(*opened_read_only),
        rw(!*opened_read_only)
    )]
    ReadOnly { opened_read_only: bool },
}

fn rw(read_only: bool) -> &'static str {
    if read_only {
        "read-only"
    } else {
        "read-write"
    }
}

impl Block {
    /// Puts `image` in place of the disk. Waits for the request the worker is running, if
    /// any; every later request goes to `image`, the old file is closed here.
    pub(super) fn swap_image(&mut self, image: DiskImage) -> Result<(), SwapError> {
        if image.read_only != self.read_only {
            return Err(SwapError::ReadOnly {
                opened_read_only: image.read_only,
            });
        }
        let config = config_space(image.capacity);
        let mut disk = self.disk();
        let id = if self.id_from_file {
            id_bytes(&image.derived_id)
        } else {
            disk.id
        };
        let old = mem::replace(&mut *disk, Disk::new(image, id));
        drop(disk);
        // The config space is read by vCPUs through the transport, whose lock our caller
        // holds: the driver sees the new capacity from now on.
        self.config = config;
        drop(old);
        Ok(())
    }
}
