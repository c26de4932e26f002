//! Guest RAM: private anonymous memory (MAP_NORESERVE, so untouched pages cost nothing),
//! or on restore a private mapping of the snapshot's memory file, each region starting on
//! a 2 MiB boundary in the host, wrapped by vm-memory and registered with KVM, one memory
//! slot per region.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use boot::layout::ram_ranges;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

use super::error::{BoxedError, VmError};

pub const MIB: u64 = 1 << 20;

/// Checks `--mem` against what this host can back, before anything is mapped.
pub fn check_mem_size(mem_mib: u64, host_ram_mib: Option<u64>) -> Result<u64, VmError> {
    if mem_mib == 0 {
        return Err(VmError::MemZero);
    }
    let too_large = |host_mib| VmError::MemTooLarge {
        mib: mem_mib,
        host_mib,
    };
    if let Some(host_mib) = host_ram_mib {
        if mem_mib > host_mib {
            return Err(too_large(host_mib));
        }
    }
    mem_mib
        .checked_mul(MIB)
        .ok_or_else(|| too_large(host_ram_mib.unwrap_or(0)))
}

/// Total RAM of the host from /proc/meminfo, in MiB.
pub fn host_ram_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// x86_64's large page. KVM maps guest RAM with 2 MiB pages only where the guest-physical
/// and host-virtual addresses agree modulo 2 MiB (otherwise the whole slot gets 4 KiB
/// mappings, one nested/EPT fault per page the guest touches: measured under nested SVM,
/// 6.7k faults to boot Linux against 0.75k for QEMU, which aligns its RAM the same way).
/// vm-memory maps wherever mmap(2) puts it, so the regions are mapped here instead.
const HUGE_PAGE: usize = 2 << 20;

pub fn create_guest_memory(mem_bytes: u64) -> Result<GuestMemoryMmap, VmError> {
    let ranges = ram_ranges(mem_bytes)
        .into_iter()
        .map(|(base, len)| (base, len, None))
        .collect::<Vec<_>>();
    map_regions(mem_bytes, &ranges, None)
}

/// Guest RAM mapped from a snapshot's memory file: each of `regions` (guest base, length,
/// offset in `file`) privately (MAP_PRIVATE), so pages are read from the file when the
/// guest first touches them and its writes stay in this process, never reaching the file
/// or another VM restored from it.
pub fn map_guest_memory_from(
    file: &File,
    regions: &[(GuestAddress, usize, u64)],
) -> Result<GuestMemoryMmap, VmError> {
    let ranges = regions
        .iter()
        .map(|&(base, len, offset)| (base, len, Some(offset)))
        .collect::<Vec<_>>();
    let total = regions.iter().map(|r| r.1 as u64).sum();
    map_regions(total, &ranges, Some(file))
}

/// Maps each `(guest base, length, file offset)` of `ranges`: from `file` at that offset
/// when both are given, else anonymous memory.
fn map_regions(
    mem_bytes: u64,
    ranges: &[(GuestAddress, usize, Option<u64>)],
    file: Option<&File>,
) -> Result<GuestMemoryMmap, VmError> {
    let error = |source: BoxedError| VmError::GuestMemory {
        mib: mem_bytes / MIB,
        source,
    };
    let regions = ranges
        .iter()
        .map(|&(guest_base, len, offset)| {
            let mut host = map_huge_page_aligned(len).map_err(|e| error(e.into()))?;
            let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
            if let (Some(file), Some(offset)) = (file, offset) {
                host = map_file_over(host, len, file, offset).map_err(|e| error(e.into()))?;
                flags &= !libc::MAP_ANONYMOUS;
            }
            // SAFETY: `host` is the start of a private read-write mapping of exactly `len`
            // bytes made above, which is never unmapped: guest RAM lives as long as the
            // process (one VM per process; vCPU and device threads hold clones of the
            // memory until they exit).
            let mapping =
                unsafe { vm_memory::mmap::MmapRegionBuilder::new(len).with_raw_mmap_pointer(host) }
                    .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                    .with_mmap_flags(flags)
                    .build()
                    .map_err(|e| error(e.into()))?;
            GuestRegionMmap::<()>::new(mapping, guest_base)
                .ok_or_else(|| error("region end overflows".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    GuestMemoryMmap::from_regions(regions).map_err(|e| error(e.into()))
}

/// Replaces the anonymous mapping of `len` bytes at `host` (made by
/// [`map_huge_page_aligned`], so its alignment is kept) with a private mapping of `file`
/// from `offset`.
fn map_file_over(host: *mut u8, len: usize, file: &File, offset: u64) -> io::Result<*mut u8> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: MAP_FIXED replaces exactly [host, host + len), the anonymous mapping this
    // process made for this region a moment ago, which nothing refers to yet.
    let raw = unsafe {
        libc::mmap(
            host.cast(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
            file.as_raw_fd(),
            offset,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(raw.cast())
}

/// Maps `len` bytes of private anonymous memory starting on a [`HUGE_PAGE`] boundary: maps
/// `len + HUGE_PAGE`, then unmaps the unaligned head and the tail beyond `len`.
fn map_huge_page_aligned(len: usize) -> io::Result<*mut u8> {
    let padded = len
        .checked_add(HUGE_PAGE)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    // SAFETY: a new anonymous mapping at an address of the kernel's choosing (no
    // MAP_FIXED), so no existing memory is affected.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            padded,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let head = aligned - start;
    let tail = padded - head - len;
    // SAFETY: both ranges lie inside the mapping just made and outside [aligned,
    // aligned + len), which is what is kept; nothing else refers to them yet.
    unsafe {
        if head > 0 {
            libc::munmap(raw, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    Ok(aligned as *mut u8)
}

pub fn register_with_kvm(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host_addr =
            mem.get_host_address(region.start_addr())
                .map_err(|e| VmError::GuestMemory {
                    mib: region.len() / MIB,
                    source: e.into(),
                })?;
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host_addr as u64,
        };
        // SAFETY: the region maps `memory_size` bytes at `userspace_addr` owned by `mem`,
        // which the VM keeps alive for as long as the VM fd exists; slots do not overlap
        // because `ram_ranges` yields disjoint ranges.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(VmError::kvm("registering guest memory with KVM"))?;
    }
    Ok(())
}

/// Bytes of guest RAM that are resident on the host (touched by the guest or the VMM).
pub fn resident_bytes(mem: &GuestMemoryMmap) -> u64 {
    let page = 4096usize;
    let mut resident = 0u64;
    for region in mem.iter() {
        let Ok(host) = mem.get_host_address(region.start_addr()) else {
            continue;
        };
        let len = region.len() as usize;
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: `host` is the page-aligned start of a live mapping of `len` bytes, and
        // `vec` has one byte per page of it, as mincore(2) requires.
        let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
        if rc == 0 {
            resident += vec.iter().filter(|b| **b & 1 != 0).count() as u64 * page as u64;
        }
    }
    resident
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn guest_ram_regions_start_on_a_huge_page_boundary_in_the_host() {
        // 4.5 GiB: one region below the MMIO gap and one above 4 GiB, both reserved only.
        let mem = create_guest_memory(4608 * MIB).unwrap();
        assert_eq!(mem.num_regions(), 2);
        for region in mem.iter() {
            let host = mem.get_host_address(region.start_addr()).unwrap() as usize;
            assert_eq!(host % HUGE_PAGE, 0, "region at {:?}", region.start_addr());
        }
    }

    #[test]
    fn memory_mapped_from_a_file_reads_it_and_never_writes_it() {
        let path = std::env::temp_dir().join(format!("vmm-mapfile-{}", std::process::id()));
        let mut bytes = vec![0u8; 4 << 20];
        bytes[(2 << 20) + 5] = 0x42; // the second region starts 2 MiB into the file
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let regions = [
            (GuestAddress(0), 2 << 20, 0),
            (GuestAddress(1 << 32), 2 << 20, 2 << 20),
        ];

        let mem = map_guest_memory_from(&file, &regions).unwrap();
        let other = map_guest_memory_from(&file, &regions).unwrap();

        let at = GuestAddress((1 << 32) + 5);
        assert_eq!(mem.read_obj::<u8>(at).unwrap(), 0x42);
        mem.write_obj(0x99u8, at).unwrap();
        assert_eq!(mem.read_obj::<u8>(at).unwrap(), 0x99);
        assert_eq!(
            other.read_obj::<u8>(at).unwrap(),
            0x42,
            "another mapping does not see it"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "the file is unchanged"
        );
        for region in mem.iter() {
            let host = mem.get_host_address(region.start_addr()).unwrap() as usize;
            assert_eq!(host % HUGE_PAGE, 0);
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn guest_ram_is_readable_and_writable_to_its_last_byte() {
        let mem = create_guest_memory(3 * MIB).unwrap();
        let last = GuestAddress(3 * MIB - 1);
        mem.write_obj(0xa5u8, last).unwrap();
        assert_eq!(mem.read_obj::<u8>(last).unwrap(), 0xa5);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0)).unwrap(),
            0,
            "fresh RAM is zero"
        );
        assert!(mem.read_obj::<u8>(GuestAddress(3 * MIB)).is_err());
    }
}
