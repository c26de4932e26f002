//! The MSRs every vCPU is started with (Firecracker's boot MSR set): syscall entry
//! points cleared for the kernel to fill in, TSC at 0, fast strings on, and MTRRs
//! enabled with write-back as the default memory type.

use kvm_bindings::{kvm_msr_entry, Msrs};

use crate::BootError;

/// SYSENTER target code segment.
pub const MSR_IA32_SYSENTER_CS: u32 = 0x174;
/// SYSENTER target stack pointer.
pub const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
/// SYSENTER target instruction pointer.
pub const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
/// SYSCALL segment selectors.
pub const MSR_STAR: u32 = 0xc000_0081;
/// SYSCALL 64-bit entry point.
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// SYSCALL compatibility-mode entry point.
pub const MSR_CSTAR: u32 = 0xc000_0083;
/// SYSCALL RFLAGS mask.
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
/// GS base swapped in by SWAPGS.
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// Time-stamp counter.
pub const MSR_IA32_TSC: u32 = 0x10;
/// Miscellaneous feature enables.
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
/// `MSR_IA32_MISC_ENABLE` bit 0: fast-string operations (rep movs/stos) enabled.
pub const MSR_IA32_MISC_ENABLE_FAST_STRING: u64 = 1 << 0;
/// Default MTRR memory type and MTRR enable.
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
/// `MSR_MTRR_DEF_TYPE` bit 11: MTRRs enabled.
pub const MTRR_ENABLE: u64 = 1 << 11;
/// MTRR memory type: write-back.
pub const MTRR_MEM_TYPE_WB: u64 = 0x6;

fn entry(index: u32, data: u64) -> kvm_msr_entry {
    kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }
}

/// The boot MSR entries, ready for `VcpuFd::set_msrs`.
pub fn boot_msrs() -> Result<Msrs, BootError> {
    let entries = [
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MSR_IA32_MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_MEM_TYPE_WB),
    ];
    Msrs::from_entries(&entries).map_err(|source| BootError::Msrs {
        count: entries.len(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(msrs: &Msrs, index: u32) -> Option<u64> {
        msrs.as_slice()
            .iter()
            .find(|e| e.index == index)
            .map(|e| e.data)
    }

    #[test]
    fn boot_msrs_enable_fast_strings_and_write_back_mtrrs() {
        let msrs = boot_msrs().unwrap();
        assert_eq!(value_of(&msrs, MSR_IA32_MISC_ENABLE), Some(1));
        assert_eq!(value_of(&msrs, MSR_MTRR_DEF_TYPE), Some(0x806));
    }

    #[test]
    fn boot_msrs_clear_syscall_entry_points_and_tsc() {
        let msrs = boot_msrs().unwrap();
        assert_eq!(msrs.as_slice().len(), 11);
        for index in [
            MSR_IA32_SYSENTER_CS,
            MSR_IA32_SYSENTER_ESP,
            MSR_IA32_SYSENTER_EIP,
            MSR_STAR,
            MSR_LSTAR,
            MSR_CSTAR,
            MSR_SYSCALL_MASK,
            MSR_KERNEL_GS_BASE,
            MSR_IA32_TSC,
        ] {
            assert_eq!(value_of(&msrs, index), Some(0), "MSR {index:#x}");
        }
    }
}
