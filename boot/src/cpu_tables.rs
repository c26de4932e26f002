//! The tables every vCPU enters long mode over: the boot GDT, the boot IDT and the
//! identity-mapping page tables. They are the same for every vCPU, so they are written to
//! guest memory once per VM; each vCPU's special registers then only point at them
//! ([`crate::regs::setup_sregs`]), and setting up a vCPU writes no guest memory.

use vm_memory::GuestMemoryBackend;

use crate::gdt::{write_gdt, write_idt, BOOT_GDT};
use crate::layout::{BOOT_GDT_START, BOOT_IDT_START};
use crate::paging::write_identity_page_tables;
use crate::BootError;

/// Where [`write_cpu_tables`] put the tables: what GDTR, IDTR and CR3 are loaded with.
/// The segment registers come from [`BOOT_GDT`], the table written at `gdt_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTables {
    /// GDTR base: the boot GDT.
    pub gdt_base: u64,
    /// GDTR limit: the GDT's size in bytes, minus one.
    pub gdt_limit: u16,
    /// IDTR base: the single, empty boot IDT entry.
    pub idt_base: u64,
    /// IDTR limit: one 8-byte entry, minus one.
    pub idt_limit: u16,
    /// CR3: the PML4 of the identity map of the first 1 GiB.
    pub cr3: u64,
}

/// Writes the boot GDT ([`BOOT_GDT`] at [`BOOT_GDT_START`]), the boot IDT (at
/// [`BOOT_IDT_START`]) and the identity-mapping page tables, in that order, and says where
/// they are.
pub fn write_cpu_tables<M: GuestMemoryBackend>(mem: &M) -> Result<CpuTables, BootError> {
    write_gdt(mem, &BOOT_GDT)?;
    write_idt(mem)?;
    let cr3 = write_identity_page_tables(mem)?;
    Ok(CpuTables {
        gdt_base: BOOT_GDT_START,
        gdt_limit: (std::mem::size_of_val(&BOOT_GDT) - 1) as u16,
        idt_base: BOOT_IDT_START,
        idt_limit: (std::mem::size_of::<u64>() - 1) as u16,
        cr3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{PDE_START, PDPTE_START, PML4_START};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    fn read(mem: &GuestMemoryMmap, addr: u64) -> u64 {
        mem.read_obj(GuestAddress(addr)).unwrap()
    }

    /// The bytes are spelled out rather than derived from the encoders, so a change to
    /// what a vCPU enters over shows up here (the values are Firecracker's too).
    #[test]
    fn gdt_idt_and_page_tables_are_written_where_and_as_before() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        mem.write_obj(u64::MAX, GuestAddress(0x520)).unwrap();

        let tables = write_cpu_tables(&mem).unwrap();

        let gdt: Vec<u64> = (0..4).map(|i| read(&mem, 0x500 + i * 8)).collect();
        assert_eq!(
            gdt,
            [
                0,
                0x00af_9b00_0000_ffff,
                0x00cf_9300_0000_ffff,
                0x008f_8b00_0000_ffff
            ]
        );
        assert_eq!(read(&mem, 0x520), 0, "the IDT's one entry is empty");
        assert_eq!(
            read(&mem, 0x9000),
            0xa003,
            "PML4[0] → PDPT, present|writable"
        );
        assert_eq!(read(&mem, 0xa000), 0xb003, "PDPT[0] → PD, present|writable");
        assert_eq!(read(&mem, 0xb000), 0x83, "PD[0]: 2 MiB page at 0");
        assert_eq!(read(&mem, 0xb000 + 511 * 8), 0x3fe0_0083, "PD[511]");
        assert_eq!(
            (PML4_START, PDPTE_START, PDE_START),
            (0x9000, 0xa000, 0xb000)
        );
        assert_eq!(
            tables,
            CpuTables {
                gdt_base: 0x500,
                gdt_limit: 31,
                idt_base: 0x520,
                idt_limit: 7,
                cr3: 0x9000,
            }
        );
    }

    #[test]
    fn tables_that_do_not_fit_in_guest_memory_are_refused_by_name() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let err = write_cpu_tables(&mem).unwrap_err();
        assert!(
            matches!(
                err,
                BootError::GuestMemory {
                    what: "boot page tables",
                    addr: 0x9000,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
