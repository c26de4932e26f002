//! vCPU register state for a 64-bit Linux boot entry: general registers, segments and
//! control registers (long mode with paging on), and the FPU. Nothing here writes guest
//! memory: the tables the registers point at are written once per VM by
//! [`crate::cpu_tables::write_cpu_tables`].

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use crate::cpu_tables::CpuTables;
use crate::gdt::{kvm_segment_from_gdt, BOOT_GDT, CODE_INDEX, DATA_INDEX, TSS_INDEX};
use crate::layout::BOOT_STACK_POINTER;

/// CR0: protection enable.
pub const X86_CR0_PE: u64 = 1 << 0;
/// CR0: extension type (hard-wired to 1 on every CPU since the 486).
pub const X86_CR0_ET: u64 = 1 << 4;
/// CR0: paging.
pub const X86_CR0_PG: u64 = 1 << 31;
/// CR4: physical address extension, required for long mode.
pub const X86_CR4_PAE: u64 = 1 << 5;
/// EFER: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

/// RFLAGS at entry: only the reserved bit 1, which always reads as 1; interrupts off.
pub const BOOT_RFLAGS: u64 = 0x2;
/// x87 control word at reset: all exceptions masked, 64-bit precision, round to nearest.
pub const BOOT_FCW: u16 = 0x37f;
/// MXCSR at reset: all SSE exceptions masked.
pub const BOOT_MXCSR: u32 = 0x1f80;

/// General registers for the 64-bit entry at `entry`: RIP there, the boot stack, and RSI
/// pointing at the zero page (`boot_params`, at `zero_page`) as the Linux boot protocol
/// requires.
pub fn boot_regs(entry: u64, zero_page: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: zero_page,
        rflags: BOOT_RFLAGS,
        ..Default::default()
    }
}

/// Puts `sregs` in 64-bit long mode over the boot tables at `tables`: GDTR and IDTR, flat
/// segments from [`BOOT_GDT`], CR0.PE|PG, CR3, CR4.PAE, EFER.LME|LMA. Other fields of
/// `sregs` (e.g. `apic_base` from KVM) are kept.
pub fn setup_sregs(tables: &CpuTables, sregs: &mut kvm_sregs) {
    sregs.gdt.base = tables.gdt_base;
    sregs.gdt.limit = tables.gdt_limit;
    sregs.idt.base = tables.idt_base;
    sregs.idt.limit = tables.idt_limit;

    let data = kvm_segment_from_gdt(BOOT_GDT[usize::from(DATA_INDEX)], DATA_INDEX);
    sregs.cs = kvm_segment_from_gdt(BOOT_GDT[usize::from(CODE_INDEX)], CODE_INDEX);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment_from_gdt(BOOT_GDT[usize::from(TSS_INDEX)], TSS_INDEX);

    sregs.cr3 = tables.cr3;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
}

/// FPU state at entry: the reset control word and MXCSR, everything else zero.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: BOOT_FCW,
        mxcsr: BOOT_MXCSR,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_tables::write_cpu_tables;
    use crate::layout::{BOOT_GDT_START, BOOT_IDT_START, PML4_START, ZERO_PAGE_START};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    /// The tables as written into a small guest memory, which the tests read back.
    fn written_tables() -> (GuestMemoryMmap, CpuTables) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let tables = write_cpu_tables(&mem).unwrap();
        (mem, tables)
    }

    #[test]
    fn boot_regs_enter_at_rip_with_zero_page_in_rsi() {
        let regs = boot_regs(0x100_0000, ZERO_PAGE_START);
        assert_eq!(regs.rip, 0x100_0000);
        assert_eq!(
            (regs.rsp, regs.rbp),
            (BOOT_STACK_POINTER, BOOT_STACK_POINTER)
        );
        assert_eq!(regs.rsi, ZERO_PAGE_START);
        assert_eq!(regs.rflags, 0x2);
        assert_eq!(regs.rax | regs.rdi | regs.rbx, 0);
    }

    #[test]
    fn sregs_enter_long_mode_with_paging() {
        let (_, tables) = written_tables();
        let mut sregs = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        setup_sregs(&tables, &mut sregs);
        assert_eq!(sregs.cr0, 0xe000_0011);
        assert_eq!(sregs.cr3, PML4_START);
        assert_ne!(sregs.cr4 & X86_CR4_PAE, 0);
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
    }

    #[test]
    fn sregs_segments_come_from_the_written_gdt() {
        let (mem, tables) = written_tables();
        let mut sregs = kvm_sregs::default();
        setup_sregs(&tables, &mut sregs);
        assert_eq!((sregs.gdt.base, sregs.gdt.limit), (BOOT_GDT_START, 31));
        assert_eq!((sregs.idt.base, sregs.idt.limit), (BOOT_IDT_START, 7));
        let code: u64 = mem.read_obj(GuestAddress(BOOT_GDT_START + 8)).unwrap();
        assert_eq!(sregs.cs, kvm_segment_from_gdt(code, 1));
        assert_eq!((sregs.cs.selector, sregs.cs.l), (0x08, 1));
        for seg in [sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss] {
            assert_eq!(seg.selector, 0x10);
        }
        assert_eq!(sregs.tr.selector, 0x18);
    }

    #[test]
    fn sregs_keep_fields_they_do_not_own() {
        let (_, tables) = written_tables();
        let mut sregs = kvm_sregs {
            apic_base: 0xfee0_0900,
            ..Default::default()
        };
        setup_sregs(&tables, &mut sregs);
        assert_eq!(sregs.apic_base, 0xfee0_0900);
    }

    #[test]
    fn boot_fpu_has_reset_control_words() {
        let fpu = boot_fpu();
        assert_eq!((fpu.fcw, fpu.mxcsr), (0x37f, 0x1f80));
    }
}
