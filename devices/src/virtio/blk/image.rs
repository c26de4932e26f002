//! Opening a disk image: a regular file or a host block device (never a FIFO, which
//! would block, or a directory), sized by seeking to its end. Used when a block device is
//! made and when its backing file is replaced at run time (`swap`), so both accept the
//! same files and size them the same way.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{BlockError, SECTOR_SIZE};
use crate::user_file::{self, Allowed};

/// An open disk image, checked and sized, not yet given to a device.
#[derive(Debug)]
pub struct DiskImage {
    pub(super) file: File,
    pub(super) read_only: bool,
    /// Size in 512-byte sectors; a tail shorter than a sector cannot be addressed.
    pub(super) capacity: u64,
    /// The GET_ID answer of a disk given no id: the file's device and inode numbers,
    /// stable across runs for the same file.
    pub(super) derived_id: String,
    path: PathBuf,
}

impl DiskImage {
    /// Opens `path` read-write, or read-only when `read_only`.
    pub fn open(path: &Path, read_only: bool) -> Result<DiskImage, BlockError> {
        let mut file = user_file::open(path, !read_only, Allowed::RegularFileOrBlockDevice)
            .map_err(BlockError::Open)?;
        let size_err = |source| BlockError::Size {
            path: path.to_path_buf(),
            source,
        };
        // Seeking to the end also sizes host block devices, whose metadata length is 0.
        let size = file.seek(SeekFrom::End(0)).map_err(size_err)?;
        let meta = file.metadata().map_err(size_err)?;
        Ok(DiskImage {
            file,
            read_only,
            capacity: size / SECTOR_SIZE,
            derived_id: format!("{:x}-{:x}", meta.dev(), meta.ino()),
            path: path.to_path_buf(),
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
