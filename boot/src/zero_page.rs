//! The Linux zero page (`boot_params`): setup header, command line, initrd and e820 map.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

use crate::e820::e820_map;
use crate::layout::{low_ram_end, HIMEM_START, ZERO_PAGE_START};
use crate::BootError;

/// `setup_header.boot_flag` magic.
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `setup_header.header` magic: "HdrS".
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// `setup_header.type_of_loader`: a boot loader with no assigned ID.
pub const KERNEL_LOADER_OTHER: u8 = 0xff;
/// `setup_header.kernel_alignment` when no setup header is given (16 MiB, as Firecracker).
pub const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;

const PAGE_SIZE: u64 = 4096;

/// What goes into the zero page.
#[derive(Debug, Clone, Copy)]
pub struct ZeroPageConfig {
    /// The bzImage setup header to start from; `None` for an ELF vmlinux.
    pub setup_header: Option<setup_header>,
    /// Guest address of the NUL-terminated kernel command line.
    pub cmdline_addr: u64,
    /// Length of the command line in bytes, NUL included.
    pub cmdline_size: usize,
    /// Initrd as (guest address, size in bytes), if any.
    pub initrd: Option<(u64, u64)>,
    /// Guest memory size in bytes; the e820 map is derived from it.
    pub mem_bytes: u64,
}

/// `boot_params` is plain old data from the kernel ABI; the newtype lets vm-memory copy it.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct BootParams(boot_params);

// SAFETY: `boot_params` is `repr(C, packed)` (no padding) and made only of integers and
// arrays of integer structs, so every byte pattern is a valid value and it has no pointers.
unsafe impl ByteValued for BootParams {}

/// Builds the `boot_params` for `cfg` without writing it.
pub fn boot_params_for(cfg: &ZeroPageConfig) -> boot_params {
    let hdr = cfg.setup_header.unwrap_or(setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        kernel_alignment: KERNEL_MIN_ALIGNMENT_BYTES,
        ..Default::default()
    });
    let mut params = boot_params {
        hdr,
        ..Default::default()
    };
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    let (lo, hi) = split(cfg.cmdline_addr);
    params.hdr.cmd_line_ptr = lo;
    params.ext_cmd_line_ptr = hi;
    params.hdr.cmdline_size = cfg.cmdline_size as u32;
    if let Some((addr, size)) = cfg.initrd {
        let (addr_lo, addr_hi) = split(addr);
        let (size_lo, size_hi) = split(size);
        params.hdr.ramdisk_image = addr_lo;
        params.ext_ramdisk_image = addr_hi;
        params.hdr.ramdisk_size = size_lo;
        params.ext_ramdisk_size = size_hi;
    }
    let map = e820_map(cfg.mem_bytes);
    params.e820_entries = map.len() as u8;
    for (slot, entry) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    params
}

/// Writes the zero page for `cfg` at [`ZERO_PAGE_START`]. Returns that address, for RSI at
/// the 64-bit entry.
pub fn write_zero_page<M: GuestMemoryBackend>(
    mem: &M,
    cfg: &ZeroPageConfig,
) -> Result<u64, BootError> {
    mem.write_obj(
        BootParams(boot_params_for(cfg)),
        GuestAddress(ZERO_PAGE_START),
    )
    .map_err(BootError::mem("zero page", ZERO_PAGE_START))?;
    Ok(ZERO_PAGE_START)
}

/// Where to load an initrd of `initrd_size` bytes: the top of low RAM, page aligned,
/// above [`HIMEM_START`].
pub fn initrd_load_addr(mem_bytes: u64, initrd_size: u64) -> Result<u64, BootError> {
    let limit = low_ram_end(mem_bytes);
    let too_large = BootError::InitrdTooLarge {
        size: initrd_size,
        limit,
    };
    let start = limit.checked_sub(initrd_size).ok_or(too_large)? & !(PAGE_SIZE - 1);
    if start < HIMEM_START {
        return Err(BootError::InitrdTooLarge {
            size: initrd_size,
            limit,
        });
    }
    Ok(start)
}

fn split(value: u64) -> (u32, u32) {
    (value as u32, (value >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{E820_RAM, E820_RESERVED};
    use crate::layout::{ram_ranges, CMDLINE_START, EBDA_START, MMIO_GAP_START};
    use vm_memory::GuestMemoryMmap;

    const MIB: u64 = 1 << 20;

    fn config(setup_header: Option<setup_header>) -> ZeroPageConfig {
        ZeroPageConfig {
            setup_header,
            cmdline_addr: CMDLINE_START,
            cmdline_size: 42,
            initrd: Some((0x7f0_0000, 0x10_0000)),
            mem_bytes: 128 * MIB,
        }
    }

    fn write_and_read_back(cfg: &ZeroPageConfig) -> boot_params {
        let mem = GuestMemoryMmap::<()>::from_ranges(&ram_ranges(cfg.mem_bytes)).unwrap();
        write_zero_page(&mem, cfg).unwrap();
        mem.read_obj::<BootParams>(GuestAddress(ZERO_PAGE_START))
            .unwrap()
            .0
    }

    #[test]
    fn zero_page_without_setup_header_has_magic_and_loader_fields() {
        let params = write_and_read_back(&config(None));
        let hdr = params.hdr;
        assert_eq!({ hdr.boot_flag }, KERNEL_BOOT_FLAG_MAGIC);
        assert_eq!({ hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ hdr.kernel_alignment }, KERNEL_MIN_ALIGNMENT_BYTES);
        assert_eq!({ hdr.type_of_loader }, KERNEL_LOADER_OTHER);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ hdr.cmdline_size }, 42);
        assert_eq!({ hdr.ramdisk_image }, 0x7f0_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x10_0000);
    }

    #[test]
    fn zero_page_keeps_the_bzimage_setup_header() {
        let bz = setup_header {
            boot_flag: KERNEL_BOOT_FLAG_MAGIC,
            header: KERNEL_HDR_MAGIC,
            version: 0x020f,
            setup_sects: 27,
            kernel_alignment: 0x20_0000,
            loadflags: 1,
            ..Default::default()
        };
        let hdr = write_and_read_back(&config(Some(bz))).hdr;
        assert_eq!({ hdr.version }, 0x020f);
        assert_eq!({ hdr.setup_sects }, 27);
        assert_eq!({ hdr.kernel_alignment }, 0x20_0000);
        assert_eq!({ hdr.loadflags }, 1);
        assert_eq!({ hdr.type_of_loader }, KERNEL_LOADER_OTHER);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
    }

    #[test]
    fn zero_page_carries_the_e820_map() {
        let params = write_and_read_back(&config(None));
        let map = e820_map(128 * MIB);
        assert_eq!(params.e820_entries as usize, map.len());
        let table = params.e820_table;
        let got: Vec<(u64, u64, u32)> = table[..map.len()]
            .iter()
            .map(|e| ({ e.addr }, { e.size }, { e.r#type }))
            .collect();
        assert_eq!(got[0], (0, EBDA_START, E820_RAM));
        assert_eq!(
            got[1],
            (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED)
        );
        assert_eq!(got[2], (HIMEM_START, 128 * MIB - HIMEM_START, E820_RAM));
        assert_eq!({ table[map.len()].size }, 0, "no entry past the map");
    }

    #[test]
    fn zero_page_without_initrd_leaves_ramdisk_fields_zero() {
        let cfg = ZeroPageConfig {
            initrd: None,
            ..config(None)
        };
        let hdr = write_and_read_back(&cfg).hdr;
        assert_eq!(({ hdr.ramdisk_image }, { hdr.ramdisk_size }), (0, 0));
    }

    #[test]
    fn initrd_is_placed_page_aligned_at_the_top_of_low_ram() {
        let addr = initrd_load_addr(128 * MIB, 5000).unwrap();
        assert_eq!(addr % PAGE_SIZE, 0);
        assert!(addr + 5000 <= 128 * MIB);
        assert!(128 * MIB - addr < 5000 + PAGE_SIZE);
        let big = initrd_load_addr(8 << 30, 1000).unwrap();
        assert!(big + 1000 <= MMIO_GAP_START, "stays below the MMIO gap");
    }

    #[test]
    fn initrd_larger_than_low_memory_is_rejected() {
        let err = initrd_load_addr(64 * MIB, 64 * MIB).unwrap_err();
        assert!(matches!(err, BootError::InitrdTooLarge { size, limit }
            if size == 64 * MIB && limit == 64 * MIB));
        assert!(initrd_load_addr(64 * MIB, 128 * MIB).is_err());
    }
}
