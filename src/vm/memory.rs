//! Guest RAM: mapped with vm-memory (anonymous, MAP_NORESERVE, so untouched pages cost
//! nothing) and registered with KVM, one memory slot per region.

use boot::layout::ram_ranges;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::error::VmError;

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

pub fn create_guest_memory(mem_bytes: u64) -> Result<GuestMemoryMmap, VmError> {
    let ranges = ram_ranges(mem_bytes);
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| VmError::GuestMemory {
        mib: mem_bytes / MIB,
        reason: e.to_string(),
    })
}

pub fn register_with_kvm(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host_addr =
            mem.get_host_address(region.start_addr())
                .map_err(|e| VmError::GuestMemory {
                    mib: region.len() / MIB,
                    reason: e.to_string(),
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
