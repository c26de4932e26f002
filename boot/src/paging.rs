//! Boot page tables: an identity map of the first 1 GiB with 2 MiB pages, as the Linux
//! 64-bit entry point expects (it builds its own tables soon after).

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{PDE_START, PDPTE_START, PML4_START};
use crate::BootError;

/// Page-table entry bit: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Page-table entry bit: writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// Page-directory entry bit: this entry maps a 2 MiB page.
pub const PTE_HUGE: u64 = 1 << 7;

const HUGE_PAGE_SIZE: u64 = 2 << 20;
const ENTRIES: u64 = 512;

/// Writes PML4 (at [`PML4_START`]) → PDPT ([`PDPTE_START`]) → PD ([`PDE_START`]) with 512
/// 2 MiB pages identity-mapping [0, 1 GiB). Returns the CR3 value.
pub fn write_identity_page_tables<M: GuestMemoryBackend>(mem: &M) -> Result<u64, BootError> {
    let write = |value: u64, addr: u64| {
        mem.write_obj(value, GuestAddress(addr))
            .map_err(BootError::mem("boot page tables", addr))
    };
    write(PDPTE_START | PTE_PRESENT | PTE_WRITABLE, PML4_START)?;
    write(PDE_START | PTE_PRESENT | PTE_WRITABLE, PDPTE_START)?;
    for i in 0..ENTRIES {
        write(
            (i * HUGE_PAGE_SIZE) | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE,
            PDE_START + i * 8,
        )?;
    }
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn read(mem: &GuestMemoryMmap, addr: u64) -> u64 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    /// Walks the 4-level tables for `vaddr` the way the MMU does, for 2 MiB leaves.
    fn translate(mem: &GuestMemoryMmap, cr3: u64, vaddr: u64) -> Option<u64> {
        const ADDR: u64 = 0x000f_ffff_ffff_f000;
        let pml4e = read(mem, cr3 + ((vaddr >> 39) & 0x1ff) * 8);
        if pml4e & PTE_PRESENT == 0 {
            return None;
        }
        let pdpte = read(mem, (pml4e & ADDR) + ((vaddr >> 30) & 0x1ff) * 8);
        if pdpte & PTE_PRESENT == 0 {
            return None;
        }
        let pde = read(mem, (pdpte & ADDR) + ((vaddr >> 21) & 0x1ff) * 8);
        if pde & PTE_PRESENT == 0 || pde & PTE_HUGE == 0 {
            return None;
        }
        Some((pde & 0x000f_ffff_ffe0_0000) | (vaddr & (HUGE_PAGE_SIZE - 1)))
    }

    #[test]
    fn page_tables_identity_map_first_gigabyte() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let cr3 = write_identity_page_tables(&mem).unwrap();
        assert_eq!(cr3, PML4_START);
        for vaddr in [0, 0x7000, 0x10_0000, 0x1234_5678, (1 << 30) - 1] {
            assert_eq!(translate(&mem, cr3, vaddr), Some(vaddr), "{vaddr:#x}");
        }
        assert_eq!(
            translate(&mem, cr3, 1 << 30),
            None,
            "nothing mapped past 1 GiB"
        );
    }

    #[test]
    fn page_tables_are_writable() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_identity_page_tables(&mem).unwrap();
        for i in 0..ENTRIES {
            assert_ne!(read(&mem, PDE_START + i * 8) & PTE_WRITABLE, 0);
        }
    }
}
