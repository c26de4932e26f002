//! Guest RAM: private anonymous memory (MAP_NORESERVE, so untouched pages cost nothing),
//! or on restore a private mapping of the snapshot's memory file, each region starting on
//! a 2 MiB boundary in the host, wrapped by vm-memory and registered with KVM, one memory
//! slot per region, and unmapped when the last holder of it lets go ([`GuestRam`]).

use std::fs::File;
use std::io;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Weak};

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

/// A VM's guest RAM: the memory (its clones go to the vCPUs, the devices and the loader)
/// and the mappings behind it.
///
/// vm-memory does not own these mappings (it maps wherever mmap(2) puts them; they are
/// made here, 2 MiB aligned), so they are unmapped here, when this is dropped and nothing
/// else holds the memory any more: every thread that held a clone has ended. A mapping
/// something still holds (a vCPU thread that did not stop in time, a loader thread of a
/// VM that failed to build) stays mapped, for the rest of the process, rather than be
/// pulled from under it. (Left mapped always, as it was, every VM of a process that runs
/// several, `vmm bench soak` or the tests, kept its RAM mapped and its touched pages
/// resident: ~190 KiB a run of the test guest, which the soak found.)
pub struct GuestRam {
    mem: ManuallyDrop<GuestMemoryMmap>,
    mappings: Vec<Mapping>,
}

/// One region's mapping: where it is, and the region that wraps it (gone once every
/// clone of the memory is).
struct Mapping {
    region: Weak<GuestRegionMmap>,
    addr: usize,
    len: usize,
}

impl Deref for GuestRam {
    type Target = GuestMemoryMmap;

    fn deref(&self) -> &GuestMemoryMmap {
        &self.mem
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: `mem` is not used after this: the struct is being dropped.
        unsafe { ManuallyDrop::drop(&mut self.mem) };
        unmap_unheld(&self.mappings);
    }
}

/// Unmaps each of `mappings` whose region is gone (or was never made).
fn unmap_unheld(mappings: &[Mapping]) {
    for mapping in mappings {
        if mapping.region.strong_count() == 0 {
            // SAFETY: the range is a mapping made by `map_huge_page_aligned` that only its
            // region referred to, and the region, with every clone of the memory that held
            // it, is gone (a Weak cannot bring it back).
            unsafe { libc::munmap(mapping.addr as *mut libc::c_void, mapping.len) };
        }
    }
}

pub fn create_guest_memory(mem_bytes: u64) -> Result<GuestRam, VmError> {
    let ranges = ram_ranges(mem_bytes)
        .into_iter()
        .map(|(base, len)| (base, len, None))
        .collect::<Vec<_>>();
    guest_ram(mem_bytes, &ranges, None)
}

/// Guest RAM mapped from a snapshot's memory file: each of `regions` (guest base, length,
/// offset in `file`) privately (MAP_PRIVATE), so pages are read from the file when the
/// guest first touches them and its writes stay in this process, never reaching the file
/// or another VM restored from it.
pub fn map_guest_memory_from(
    file: &File,
    regions: &[(GuestAddress, usize, u64)],
) -> Result<GuestRam, VmError> {
    let ranges = regions
        .iter()
        .map(|&(base, len, offset)| (base, len, Some(offset)))
        .collect::<Vec<_>>();
    let total = regions.iter().map(|r| r.1 as u64).sum();
    guest_ram(total, &ranges, Some(file))
}

/// Maps each `(guest base, length, file offset)` of `ranges` (from `file` at that offset
/// when both are given, else anonymous memory) into one [`GuestRam`].
fn guest_ram(
    mem_bytes: u64,
    ranges: &[(GuestAddress, usize, Option<u64>)],
    file: Option<&File>,
) -> Result<GuestRam, VmError> {
    let error = |source: BoxedError| VmError::GuestMemory {
        mib: mem_bytes / MIB,
        source,
    };
    let mut mappings = Vec::new();
    let mem = map_regions(mem_bytes, ranges, file, &mut mappings).and_then(|regions| {
        GuestMemoryMmap::from_arc_regions(regions).map_err(|e| error(e.into()))
    });
    match mem {
        Ok(mem) => Ok(GuestRam {
            mem: ManuallyDrop::new(mem),
            mappings,
        }),
        Err(e) => {
            // The regions made so far are gone with the error.
            unmap_unheld(&mappings);
            Err(e)
        }
    }
}

/// Maps each range of guest RAM and wraps it in a region, recording every mapping in
/// `mappings` as soon as it exists (so that a failure later unmaps it).
fn map_regions(
    mem_bytes: u64,
    ranges: &[(GuestAddress, usize, Option<u64>)],
    file: Option<&File>,
    mappings: &mut Vec<Mapping>,
) -> Result<Vec<Arc<GuestRegionMmap>>, VmError> {
    let error = |source: BoxedError| VmError::GuestMemory {
        mib: mem_bytes / MIB,
        source,
    };
    let mut regions = Vec::new();
    for &(guest_base, len, offset) in ranges {
        let mut host = map_huge_page_aligned(len).map_err(|e| error(e.into()))?;
        mappings.push(Mapping {
            region: Weak::new(),
            addr: host as usize,
            len,
        });
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        if let (Some(file), Some(offset)) = (file, offset) {
            // The same range, so the recorded mapping stays right.
            host = map_file_over(host, len, file, offset).map_err(|e| error(e.into()))?;
            flags &= !libc::MAP_ANONYMOUS;
        }
        // SAFETY: `host` is the start of a private read-write mapping of exactly `len`
        // bytes made above, which `GuestRam` unmaps only once this region is gone.
        let mapping =
            unsafe { vm_memory::mmap::MmapRegionBuilder::new(len).with_raw_mmap_pointer(host) }
                .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
                .with_mmap_flags(flags)
                .build()
                .map_err(|e| error(e.into()))?;
        let region = GuestRegionMmap::<()>::new(mapping, guest_base)
            .ok_or_else(|| error("region end overflows".into()))?;
        let region = Arc::new(region);
        if let Some(last) = mappings.last_mut() {
            last.region = Arc::downgrade(&region);
        }
        regions.push(region);
    }
    Ok(regions)
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

    /// Whether /proc/self/maps has a mapping of exactly [addr, addr + len).
    fn mapped(addr: usize, len: usize) -> bool {
        let range = format!("{:x}-{:x} ", addr, addr + len);
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .any(|l| l.starts_with(&range))
    }

    fn host_range(mem: &GuestMemoryMmap) -> (usize, usize) {
        let region = mem.iter().next().unwrap();
        let addr = mem.get_host_address(region.start_addr()).unwrap() as usize;
        (addr, region.len() as usize)
    }

    // An odd size, so that no other test's mapping has the same range.
    const ODD_SIZE: u64 = 7 * MIB;

    #[test]
    fn dropping_guest_ram_unmaps_it() {
        let ram = create_guest_memory(ODD_SIZE).unwrap();
        let (addr, len) = host_range(&ram);
        assert!(mapped(addr, len));
        drop(ram);
        assert!(!mapped(addr, len), "guest RAM at {addr:#x} is still mapped");
    }

    #[test]
    fn guest_ram_a_clone_still_holds_stays_mapped_for_it() {
        let ram = create_guest_memory(ODD_SIZE + MIB).unwrap();
        let (addr, len) = host_range(&ram);
        let held = GuestMemoryMmap::clone(&ram);
        drop(ram);
        assert!(mapped(addr, len));
        held.write_obj(0x5au8, GuestAddress(len as u64 - 1))
            .unwrap();
        assert_eq!(
            held.read_obj::<u8>(GuestAddress(len as u64 - 1)).unwrap(),
            0x5a
        );
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
