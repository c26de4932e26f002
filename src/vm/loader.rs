//! Loading the kernel, initrd and command line into guest memory with linux-loader.
//! The kernel's format is recognised from its magic numbers so that a wrong file gets a
//! message about the file rather than about a loader internal.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use boot::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START};
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{self, BzImage, Elf, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::error::VmError;
use super::input::open_nonempty_file;

/// Where the 64-bit entry point sits relative to a bzImage's protected-mode code
/// (Documentation/arch/x86/boot.rst, "64-bit boot protocol").
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// "HdrS" at offset 0x202 marks a Linux boot-protocol setup header.
const SETUP_HEADER_MAGIC_OFFSET: u64 = 0x202;
const SETUP_HEADER_MAGIC: &[u8; 4] = b"HdrS";
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// Boot protocol 2.06 introduced `cmdline_size`; older kernels accept 255 bytes.
const BOOT_PROTOCOL_WITH_CMDLINE_SIZE: u16 = 0x0206;
const OLD_KERNEL_CMDLINE_LIMIT: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    Elf,
    BzImage,
}

impl KernelFormat {
    fn name(self) -> &'static str {
        match self {
            KernelFormat::Elf => "ELF vmlinux",
            KernelFormat::BzImage => "bzImage",
        }
    }
}

/// What the rest of the boot needs to know about a loaded kernel.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// Guest physical address of the 64-bit entry point.
    pub entry: u64,
    /// The bzImage's setup header, which seeds the zero page.
    pub setup_header: Option<setup_header>,
}

/// An opened kernel image whose format is known but which is not loaded yet, so that the
/// command line can be checked against its limit before anything else is built.
pub struct KernelImage {
    file: File,
    format: KernelFormat,
    path: std::path::PathBuf,
}

impl KernelImage {
    pub fn open(path: &Path) -> Result<Self, VmError> {
        let (mut file, _) = open_nonempty_file("kernel image", path)?;
        let format = detect_format(&mut file).map_err(VmError::io("reading the kernel image"))?;
        let format = format.ok_or_else(|| VmError::UnknownKernelFormat {
            path: path.to_path_buf(),
        })?;
        Ok(Self {
            file,
            format,
            path: path.to_path_buf(),
        })
    }

    /// Loads the kernel; `mem` must already hold all guest RAM.
    pub fn load(mut self, mem: &GuestMemoryMmap) -> Result<LoadedKernel, VmError> {
        let highmem = Some(GuestAddress(HIMEM_START));
        let loaded = match self.format {
            KernelFormat::Elf => Elf::load(mem, None, &mut self.file, highmem),
            KernelFormat::BzImage => BzImage::load(mem, None, &mut self.file, highmem),
        }
        .map_err(|source| VmError::BadKernel {
            path: self.path.clone(),
            format: self.format.name(),
            source,
        })?;
        let entry = match self.format {
            KernelFormat::Elf => loaded.kernel_load.0,
            KernelFormat::BzImage => loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
        };
        Ok(LoadedKernel {
            entry,
            setup_header: loaded.setup_header,
        })
    }
}

fn bzimage_cmdline_limit(hdr: &setup_header) -> usize {
    // Copy out of the packed struct before use.
    let version = hdr.version;
    let size = hdr.cmdline_size;
    if version >= BOOT_PROTOCOL_WITH_CMDLINE_SIZE && size > 0 {
        size as usize
    } else {
        OLD_KERNEL_CMDLINE_LIMIT
    }
}

fn detect_format(file: &mut File) -> std::io::Result<Option<KernelFormat>> {
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0))?;
    if file.read_exact(&mut magic).is_ok() && &magic == ELF_MAGIC {
        return Ok(Some(KernelFormat::Elf));
    }
    file.seek(SeekFrom::Start(SETUP_HEADER_MAGIC_OFFSET))?;
    if file.read_exact(&mut magic).is_ok() && &magic == SETUP_HEADER_MAGIC {
        return Ok(Some(KernelFormat::BzImage));
    }
    Ok(None)
}

/// The kernel's limit for a bzImage can only be known from its header; read it without
/// loading, so a too-long command line is refused before guest memory is built.
pub fn cmdline_limit_of(image: &mut KernelImage) -> usize {
    use vm_memory::ByteValued;
    /// The setup header starts at 0x1f1 in the image (boot protocol).
    const SETUP_HEADER_OFFSET: u64 = 0x1f1;
    if image.format == KernelFormat::Elf {
        return CMDLINE_MAX_SIZE;
    }
    let mut buf = vec![0u8; std::mem::size_of::<setup_header>()];
    let read = image
        .file
        .seek(SeekFrom::Start(SETUP_HEADER_OFFSET))
        .and_then(|_| image.file.read_exact(&mut buf));
    match (read, setup_header::from_slice(&buf)) {
        (Ok(()), Some(hdr)) => bzimage_cmdline_limit(hdr),
        _ => OLD_KERNEL_CMDLINE_LIMIT,
    }
}

/// Writes the command line, already checked against `limit` with `check_cmdline`, at
/// CMDLINE_START. Returns the number of bytes the kernel will see, without the NUL.
pub fn load_cmdline(mem: &GuestMemoryMmap, cmdline: &str, limit: usize) -> Result<usize, VmError> {
    let parsed =
        Cmdline::try_from(cmdline, limit + 1).map_err(|e| VmError::CmdlineInvalid(e.into()))?;
    loader::load_cmdline(mem, GuestAddress(CMDLINE_START), &parsed)
        .map_err(|e| VmError::CmdlineInvalid(e.into()))?;
    let len = parsed
        .as_cstring()
        .map_err(|e| VmError::CmdlineInvalid(e.into()))?
        .as_bytes()
        .len();
    Ok(len)
}

pub fn check_cmdline(cmdline: &str, limit: usize) -> Result<(), VmError> {
    if cmdline.len() > limit {
        return Err(VmError::CmdlineTooLong {
            len: cmdline.len(),
            limit,
        });
    }
    Ok(())
}

/// An opened initrd and where it will go: page aligned at the top of low RAM. Opened and
/// placed before anything is built, so a missing or too large file is refused first.
pub struct InitrdImage {
    file: File,
    addr: u64,
    size: u64,
}

impl InitrdImage {
    pub fn open(path: &Path, mem_bytes: u64) -> Result<Self, VmError> {
        let (file, size) = open_nonempty_file("initrd", path)?;
        let addr = boot::zero_page::initrd_load_addr(mem_bytes, size).map_err(|_| {
            VmError::InitrdTooLarge {
                path: path.to_path_buf(),
                size,
                limit: boot::layout::low_ram_end(mem_bytes),
            }
        })?;
        Ok(Self { file, addr, size })
    }

    /// Copies the initrd into guest memory. Returns (address, size).
    fn load(mut self, mem: &GuestMemoryMmap) -> Result<(u64, u64), VmError> {
        use vm_memory::Bytes;
        mem.read_exact_volatile_from(GuestAddress(self.addr), &mut self.file, self.size as usize)
            .map_err(|source| VmError::GuestMemoryIo {
                op: "reading the initrd into guest memory",
                source,
            })?;
        Ok((self.addr, self.size))
    }
}

/// Everything [`Payload`] wrote into guest memory, for the zero page and the vCPUs.
#[derive(Debug, Clone, Copy)]
pub struct LoadedPayload {
    pub kernel: LoadedKernel,
    /// Bytes of command line the kernel will see, without the NUL.
    pub cmdline_len: usize,
    /// (address, size) of the initrd, if there is one.
    pub initrd: Option<(u64, u64)>,
}

/// The guest's boot payload, opened and checked: kernel, command line (checked against
/// `cmdline_limit`) and initrd.
pub struct Payload {
    pub kernel: KernelImage,
    pub cmdline: String,
    pub cmdline_limit: usize,
    pub initrd: Option<InitrdImage>,
}

impl Payload {
    /// Copies the payload into `mem` on a thread of its own, so that
    /// the copying (megabytes of kernel and initrd) overlaps with creating the VM, which
    /// needs the memory mapping but not its contents. Measured under nested SVM the two
    /// took 60 ms and 50 ms one after the other.
    pub fn load_in_background(self, mem: &GuestMemoryMmap) -> Result<PayloadLoading, VmError> {
        let mem = mem.clone();
        std::thread::Builder::new()
            .name("loader".into())
            .spawn(move || self.load(&mem))
            .map(PayloadLoading)
            .map_err(VmError::io("starting the loader thread"))
    }

    fn load(self, mem: &GuestMemoryMmap) -> Result<LoadedPayload, VmError> {
        let kernel = self.kernel.load(mem)?;
        let cmdline_len = load_cmdline(mem, &self.cmdline, self.cmdline_limit)?;
        let initrd = match self.initrd {
            Some(initrd) => Some(initrd.load(mem)?),
            None => None,
        };
        Ok(LoadedPayload {
            kernel,
            cmdline_len,
            initrd,
        })
    }
}

/// A payload being loaded; [`PayloadLoading::wait`] gives the result.
pub struct PayloadLoading(std::thread::JoinHandle<Result<LoadedPayload, VmError>>);

impl PayloadLoading {
    pub fn wait(self) -> Result<LoadedPayload, VmError> {
        self.0.join().unwrap_or_else(|_| {
            Err(VmError::Io {
                op: "loading the kernel and initrd",
                source: std::io::Error::other("the loader thread panicked"),
            })
        })
    }
}
