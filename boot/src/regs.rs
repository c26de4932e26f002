//! vCPU register state for a 64-bit Linux boot entry: general registers, segments and
//! control registers (long mode with paging on), and the FPU.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::GuestMemoryBackend;

use crate::gdt::{
    kvm_segment_from_gdt, write_gdt, write_idt, BOOT_GDT, CODE_INDEX, DATA_INDEX, TSS_INDEX,
};
use crate::layout::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, ZERO_PAGE_START};
use crate::paging::write_identity_page_tables;
use crate::BootError;

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
/// pointing at the zero page as the Linux boot protocol requires.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        rflags: BOOT_RFLAGS,
        ..Default::default()
    }
}

/// Writes the boot GDT, IDT and page tables to `mem`, and puts `sregs` in 64-bit long
/// mode over them: flat segments from the GDT, CR0.PE|PG, CR3, CR4.PAE, EFER.LME|LMA.
/// Other fields of `sregs` (e.g. `apic_base` from KVM) are kept.
pub fn setup_sregs<M: GuestMemoryBackend>(mem: &M, sregs: &mut kvm_sregs) -> Result<(), BootError> {
    write_gdt(mem, &BOOT_GDT)?;
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
    write_idt(mem)?;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = (std::mem::size_of::<u64>() - 1) as u16;

    let data = kvm_segment_from_gdt(BOOT_GDT[usize::from(DATA_INDEX)], DATA_INDEX);
    sregs.cs = kvm_segment_from_gdt(BOOT_GDT[usize::from(CODE_INDEX)], CODE_INDEX);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment_from_gdt(BOOT_GDT[usize::from(TSS_INDEX)], TSS_INDEX);

    sregs.cr3 = write_identity_page_tables(mem)?;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    Ok(())
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
    use crate::layout::PML4_START;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    #[test]
    fn boot_regs_enter_at_rip_with_zero_page_in_rsi() {
        let regs = boot_regs(0x100_0000);
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
        let mem = mem();
        let mut sregs = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        setup_sregs(&mem, &mut sregs).unwrap();
        assert_eq!(sregs.cr0, 0xe000_0011);
        assert_eq!(sregs.cr3, PML4_START);
        assert_ne!(sregs.cr4 & X86_CR4_PAE, 0);
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
    }

    #[test]
    fn sregs_segments_come_from_the_written_gdt() {
        let mem = mem();
        let mut sregs = kvm_sregs::default();
        setup_sregs(&mem, &mut sregs).unwrap();
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
        let mem = mem();
        let mut sregs = kvm_sregs {
            apic_base: 0xfee0_0900,
            ..Default::default()
        };
        setup_sregs(&mem, &mut sregs).unwrap();
        assert_eq!(sregs.apic_base, 0xfee0_0900);
    }

    #[test]
    fn boot_fpu_has_reset_control_words() {
        let fpu = boot_fpu();
        assert_eq!((fpu.fcw, fpu.mxcsr), (0x37f, 0x1f80));
    }
}
