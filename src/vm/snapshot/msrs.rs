//! Which MSRs a snapshot keeps, and reading and writing them in KVM-sized chunks.
//!
//! KVM_GET_MSR_INDEX_LIST names every MSR KVM can save, including PMU counters, VMX
//! capability MSRs and Hyper-V's, which a guest without those CPUID features does not have
//! (reading them fails) or cannot change. As Firecracker does, the list is cut down to the
//! architectural state a guest can change, named below by range: what is neither on KVM's
//! list nor below is not this VM's state. Each range says why it is kept.

use kvm_bindings::{kvm_msr_entry, Msrs, KVM_MAX_MSR_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd};

use super::error::SnapshotError;

/// IA32_TSC_DEADLINE: written last on restore. KVM arms the LAPIC timer from it relative
/// to the guest's TSC, so the TSC must be restored first or the deadline lands wrong.
pub const TSC_DEADLINE: u32 = 0x6e0;

/// `(first, count)` ranges of MSRs a guest changes and a restore must give back.
const KEPT: &[(u32, u32, &str)] = &[
    (
        0x10,
        1,
        "the TSC (the guest's time stamp counter goes on from its value)",
    ),
    (0x11, 2, "kvmclock's first MSRs (wall clock, system time)"),
    (0x1b, 1, "APIC base"),
    (0x3a, 1, "feature control"),
    (0x3b, 1, "TSC adjust"),
    (0x48, 1, "speculation control"),
    (0x140, 1, "misc features enables"),
    (0x174, 3, "SYSENTER CS, ESP, EIP"),
    (0x1a0, 1, "misc enable"),
    (0x200, 0x100, "MTRRs and PAT"),
    (
        TSC_DEADLINE,
        1,
        "TSC deadline (LAPIC timer in TSC-deadline mode)",
    ),
    (
        0xc000_0080,
        5,
        "EFER, STAR, LSTAR, CSTAR, SFMASK (syscall entry)",
    ),
    (0xc000_0100, 4, "FS base, GS base, kernel GS base, TSC_AUX"),
    (0xc001_0015, 1, "AMD HWCR"),
    (
        0x4b56_4d00,
        0x80,
        "KVM's paravirtual MSRs (kvmclock, async PF, steal time, PV EOI)",
    ),
    (
        0x4b56_4df0,
        0x10,
        "PVM's per-vCPU MSRs (its hypervisor state, on PVM hosts)",
    ),
];

/// Whether the MSR `index` is kept in snapshots (when KVM lists it).
pub fn kept(index: u32) -> bool {
    KEPT.iter()
        .any(|&(first, count, _)| index >= first && index - first < count)
}

/// The MTRRs a guest can program (default type, the fixed ranges, KVM's 8 variable
/// pairs). KVM emulates them without listing them; as QEMU does, they are saved anyway,
/// since a guest that set memory types at boot does not set them again.
const MTRRS: &[u32] = &[
    0x2ff, 0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f, 0x200,
    0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d,
    0x20e, 0x20f,
];

/// The MSRs to save on this host: KVM's list cut to [`KEPT`], in KVM's order, and the
/// [`MTRRS`].
pub fn to_save(kvm: &Kvm) -> Result<Vec<u32>, SnapshotError> {
    let list = kvm
        .get_msr_index_list()
        .map_err(SnapshotError::kvm("reading KVM's list of MSRs to save"))?;
    let mut msrs: Vec<u32> = list
        .as_slice()
        .iter()
        .copied()
        .filter(|&i| kept(i))
        .collect();
    msrs.extend(
        MTRRS
            .iter()
            .filter(|m| !msrs.contains(m))
            .collect::<Vec<_>>(),
    );
    Ok(msrs)
}

/// Reads the MSRs `indices` of vCPU `index`, KVM_MAX_MSR_ENTRIES at a time.
pub fn read(
    vcpu: &VcpuFd,
    index: u8,
    indices: &[u32],
) -> Result<Vec<kvm_msr_entry>, SnapshotError> {
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(KVM_MAX_MSR_ENTRIES) {
        let entries: Vec<kvm_msr_entry> = chunk
            .iter()
            .map(|&i| kvm_msr_entry {
                index: i,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries)?;
        let read = vcpu
            .get_msrs(&mut msrs)
            .map_err(SnapshotError::vcpu(index, "reading", "the MSRs"))?;
        if read != chunk.len() {
            // KVM stops at the first MSR it cannot read.
            return Err(SnapshotError::MsrRefused {
                index,
                msr: chunk[read],
            });
        }
        out.extend_from_slice(msrs.as_slice());
    }
    Ok(out)
}

/// Writes `entries` to vCPU `index`, the TSC deadline last (see [`TSC_DEADLINE`]).
pub fn write(vcpu: &VcpuFd, index: u8, entries: &[kvm_msr_entry]) -> Result<(), SnapshotError> {
    let (deadline, rest): (Vec<_>, Vec<_>) = entries.iter().partition(|e| e.index == TSC_DEADLINE);
    for chunk in rest
        .chunks(KVM_MAX_MSR_ENTRIES)
        .chain(std::iter::once(&deadline[..]))
    {
        if chunk.is_empty() {
            continue;
        }
        let msrs = Msrs::from_entries(chunk)?;
        let written =
            vcpu.set_msrs(&msrs)
                .map_err(SnapshotError::vcpu(index, "restoring", "the MSRs"))?;
        if written != chunk.len() {
            return Err(SnapshotError::MsrRefused {
                index,
                msr: chunk[written].index,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectural_msrs_are_kept_and_pmu_and_vmx_ones_are_not() {
        for msr in [
            0x10,
            0x1b,
            0x277,
            0x2ff,
            TSC_DEADLINE,
            0xc000_0080,
            0xc000_0102,
            0x4b56_4d01,
        ] {
            assert!(kept(msr), "{msr:#x}");
        }
        // PMU counters and event selects, VMX basic, Hyper-V's guest OS id, MCG_CTL.
        for msr in [0xc1, 0x186, 0x480, 0x4000_0000, 0x17b] {
            assert!(!kept(msr), "{msr:#x}");
        }
    }

    #[test]
    fn every_mtrr_is_in_a_kept_range() {
        assert!(MTRRS.iter().all(|&m| kept(m)));
    }

    #[test]
    fn ranges_do_not_overflow() {
        for &(first, count, why) in KEPT {
            assert!(first.checked_add(count).is_some(), "{why}");
        }
    }
}
