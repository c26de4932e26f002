//! The backing file of a virtio-blk device and I/O between it and guest memory.
//!
//! Data moves with one pread/pwrite per guest buffer straight into or out of guest memory
//! (vm-memory's volatile I/O over an offset-carrying adapter), never through a bounce
//! buffer and without a separate seek, so requests need no shared file position.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{
    Bytes, GuestMemoryMmap, ReadVolatile, VolatileMemoryError, VolatileSlice, WriteVolatile,
};

use super::image::DiskImage;
use super::request::Segment;
use super::SECTOR_SIZE;

/// An open disk image as the worker uses it.
#[derive(Debug)]
pub struct Disk {
    pub file: File,
    pub read_only: bool,
    /// Size in 512-byte sectors.
    pub capacity: u64,
    /// The GET_ID answer: up to 20 bytes, NUL padded.
    pub id: [u8; 20],
}

impl Disk {
    /// The disk of `image`, answering GET_ID with `id`.
    pub fn new(image: DiskImage, id: [u8; 20]) -> Disk {
        Disk {
            file: image.file,
            read_only: image.read_only,
            capacity: image.capacity,
            id,
        }
    }

    /// Reads the disk from `sector` into the guest buffers `segs`, in order.
    pub fn read_into(
        &self,
        mem: &GuestMemoryMmap,
        segs: &[Segment],
        sector: u64,
    ) -> Result<(), vm_memory::GuestMemoryError> {
        let mut at = FileAt::new(&self.file, sector * SECTOR_SIZE);
        for s in segs {
            mem.read_exact_volatile_from(s.addr, &mut at, s.len)?;
        }
        Ok(())
    }

    /// Writes the guest buffers `segs`, in order, to the disk from `sector`.
    pub fn write_from(
        &self,
        mem: &GuestMemoryMmap,
        segs: &[Segment],
        sector: u64,
    ) -> Result<(), vm_memory::GuestMemoryError> {
        let mut at = FileAt::new(&self.file, sector * SECTOR_SIZE);
        for s in segs {
            mem.write_all_volatile_to(s.addr, &mut at, s.len)?;
        }
        Ok(())
    }

    /// Makes every completed write durable: data and the metadata needed to read it back.
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Copies the ID into the guest buffers; returns the number of bytes written.
    pub fn write_id(&self, mem: &GuestMemoryMmap, segs: &[Segment]) -> usize {
        let mut done = 0;
        for s in segs {
            let n = s.len.min(self.id.len() - done);
            if n == 0 || mem.write_slice(&self.id[done..done + n], s.addr).is_err() {
                break;
            }
            done += n;
        }
        done
    }
}

/// `File` at an offset that advances with each transfer, as `ReadVolatile`/`WriteVolatile`.
struct FileAt<'a> {
    file: &'a File,
    offset: u64,
}

impl<'a> FileAt<'a> {
    fn new(file: &'a File, offset: u64) -> Self {
        Self { file, offset }
    }

    fn offset(&self) -> Result<libc::off_t, VolatileMemoryError> {
        libc::off_t::try_from(self.offset).map_err(|_| {
            VolatileMemoryError::IOError(io::Error::from_raw_os_error(libc::EOVERFLOW))
        })
    }
}

impl ReadVolatile for FileAt<'_> {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let guard = buf.ptr_guard_mut();
        let offset = self.offset()?;
        // SAFETY: the fd is open for the borrow of `file`; `guard` points to `buf.len()`
        // bytes of mapped guest memory that stay mapped while the guard lives, and the
        // kernel writes at most that many.
        let n = unsafe {
            libc::pread(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        if n < 0 {
            return Err(VolatileMemoryError::IOError(io::Error::last_os_error()));
        }
        let n = n as usize;
        buf.bitmap().mark_dirty(0, n);
        self.offset += n as u64;
        Ok(n)
    }
}

impl WriteVolatile for FileAt<'_> {
    fn write_volatile<B: BitmapSlice>(
        &mut self,
        buf: &VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let guard = buf.ptr_guard();
        let offset = self.offset()?;
        // SAFETY: the fd is open for the borrow of `file`; `guard` points to `buf.len()`
        // bytes of mapped guest memory that stay mapped while the guard lives, and the
        // kernel only reads them.
        let n = unsafe {
            libc::pwrite(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        if n < 0 {
            return Err(VolatileMemoryError::IOError(io::Error::last_os_error()));
        }
        self.offset += n as u64;
        Ok(n as usize)
    }
}
