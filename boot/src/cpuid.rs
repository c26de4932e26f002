//! Per-vCPU CPUID normalization: KVM's supported CPUID describes the host; each vCPU must
//! instead report its own APIC ID and a topology of `num_cpus` single-threaded cores in
//! one package, and must not advertise a PMU or host power-management knobs.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// Leaf 1: version and feature information.
pub const LEAF_FEATURES: u32 = 0x1;
/// Leaf 4: Intel deterministic cache parameters.
pub const LEAF_CACHE_PARAMS: u32 = 0x4;
/// Leaf 6: thermal and power management.
pub const LEAF_POWER: u32 = 0x6;
/// Leaf 0xA: architectural performance monitoring.
pub const LEAF_PMU: u32 = 0xa;
/// Leaf 0xB: extended topology enumeration.
pub const LEAF_TOPOLOGY: u32 = 0xb;
/// Leaf 0x1F: V2 extended topology enumeration.
pub const LEAF_TOPOLOGY_V2: u32 = 0x1f;
/// Leaf 0x8000_0008: AMD address sizes and core count.
pub const LEAF_AMD_SIZES: u32 = 0x8000_0008;
/// Leaf 0x8000_001E: AMD extended APIC ID and core/node IDs.
pub const LEAF_AMD_TOPOLOGY: u32 = 0x8000_001e;

/// Leaf 1 ECX: running under a hypervisor.
pub const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX: the LAPIC timer has a TSC-deadline mode.
pub const ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 EDX: the logical-processor count in `EBX[23:16]` is valid.
pub const EDX_HTT: u32 = 1 << 28;
/// Leaf 1 `EBX[15:8]`: CLFLUSH line size in 8-byte units (8 = 64 bytes).
const CLFLUSH_LINE_QWORDS: u32 = 8;
/// Leaf 6 EAX bit 1: Intel Turbo Boost.
const EAX_TURBO_BOOST: u32 = 1 << 1;
/// Leaf 6 ECX bit 3: energy/performance bias preference (IA32_ENERGY_PERF_BIAS MSR).
const ECX_EPB: u32 = 1 << 3;
/// Leaf 0xB/0x1F `ECX[15:8]` level types.
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Rewrites `cpuid` (as returned by `KVM_GET_SUPPORTED_CPUID`) for vCPU `vcpu_index` of
/// `num_cpus`: APIC ID = `vcpu_index`, one package of `num_cpus` cores with one thread
/// each. Only leaves already present are changed; the KVM paravirtual leaves
/// 0x4000_0000..=0x4000_00ff and all others pass through untouched.
pub fn normalize(cpuid: &mut CpuId, vcpu_index: u8, num_cpus: u8) {
    let topo = Topology {
        apic_id: u32::from(vcpu_index),
        cpus: u32::from(num_cpus.max(1)),
    };
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => topo.features(entry),
            LEAF_CACHE_PARAMS => topo.cache_params(entry),
            LEAF_POWER => {
                entry.eax &= !EAX_TURBO_BOOST;
                entry.ecx &= !ECX_EPB;
            }
            LEAF_PMU => (entry.eax, entry.ebx, entry.ecx, entry.edx) = (0, 0, 0, 0),
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => topo.extended_topology(entry),
            LEAF_AMD_SIZES => topo.amd_sizes(entry),
            LEAF_AMD_TOPOLOGY => topo.amd_topology(entry),
            _ => {}
        }
    }
}

/// Announces the LAPIC's TSC-deadline timer mode. KVM emulates it when it has
/// KVM_CAP_TSC_DEADLINE_TIMER but leaves the bit out of KVM_GET_SUPPORTED_CPUID
/// (Documentation/virt/kvm/api.rst), so the VMM sets it; Linux then uses the deadline
/// timer as its clock-event device instead of programming the LAPIC's own counter.
pub fn advertise_tsc_deadline(cpuid: &mut CpuId) {
    for entry in cpuid.as_mut_slice() {
        if entry.function == LEAF_FEATURES {
            entry.ecx |= ECX_TSC_DEADLINE;
        }
    }
}

struct Topology {
    apic_id: u32,
    cpus: u32,
}

impl Topology {
    /// Bits of APIC ID needed to number every core of the package.
    fn core_bits(&self) -> u32 {
        u32::BITS - (self.cpus - 1).leading_zeros()
    }

    fn features(&self, entry: &mut kvm_cpuid_entry2) {
        // EBX: [31:24] initial APIC ID, [23:16] logical processors, [15:8] CLFLUSH size;
        // the brand index in [7:0] is kept.
        entry.ebx = (entry.ebx & 0xff)
            | (self.apic_id << 24)
            | ((self.cpus & 0xff) << 16)
            | (CLFLUSH_LINE_QWORDS << 8);
        entry.ecx |= ECX_HYPERVISOR;
        if self.cpus > 1 {
            entry.edx |= EDX_HTT;
        } else {
            entry.edx &= !EDX_HTT;
        }
    }

    fn cache_params(&self, entry: &mut kvm_cpuid_entry2) {
        if entry.eax & 0x1f == 0 {
            return; // Cache type "null": no more caches, leave the terminator alone.
        }
        // EAX[25:14]: logical processors sharing this cache, minus one. L1 and L2 belong to
        // one single-threaded core; L3 and beyond are shared by the package.
        let level = (entry.eax >> 5) & 0x7;
        let sharing = if level >= 3 { self.cpus - 1 } else { 0 };
        // EAX[31:26]: cores per package minus one (6 bits wide).
        let cores = (self.cpus - 1).min(0x3f);
        entry.eax = (entry.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (cores << 26);
    }

    fn extended_topology(&self, entry: &mut kvm_cpuid_entry2) {
        // EAX[4:0]: APIC ID shift to the next level; EBX[15:0]: logical processors at this
        // level; ECX: level type << 8 | level number; EDX: x2APIC ID.
        let subleaf = entry.index;
        (entry.eax, entry.ebx, entry.ecx) = match subleaf {
            0 => (0, 1, (LEVEL_TYPE_SMT << 8) | subleaf),
            1 => (
                self.core_bits(),
                self.cpus,
                (LEVEL_TYPE_CORE << 8) | subleaf,
            ),
            _ => (0, 0, subleaf), // Level type 0: no further levels.
        };
        entry.edx = self.apic_id;
    }

    fn amd_sizes(&self, entry: &mut kvm_cpuid_entry2) {
        // ECX[7:0]: cores in the package minus one; ECX[15:12]: APIC ID bits for them.
        entry.ecx = (entry.ecx & !0xf0ff) | (self.core_bits() << 12) | ((self.cpus - 1) & 0xff);
    }

    fn amd_topology(&self, entry: &mut kvm_cpuid_entry2) {
        // EAX: extended APIC ID; EBX[7:0] core ID, [15:8] threads per core minus one;
        // ECX: node 0, one node per package.
        entry.eax = self.apic_id;
        entry.ebx = self.apic_id & 0xff;
        entry.ecx = 0;
        entry.edx = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        let [eax, ebx, ecx, edx] = regs;
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn find(cpuid: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .expect("leaf present")
    }

    fn host_cpuid() -> CpuId {
        CpuId::from_entries(&[
            leaf(
                LEAF_FEATURES,
                0,
                [0x000a_06a4, 0x1234_0803, 0x7ed8_3203, 0x0f8b_fbff],
            ),
            leaf(LEAF_CACHE_PARAMS, 0, [0x1c00_4121, 0, 0, 0]),
            leaf(LEAF_CACHE_PARAMS, 3, [0x1c03_c163, 0, 0, 0]),
            leaf(LEAF_CACHE_PARAMS, 4, [0, 0, 0, 0]),
            leaf(LEAF_POWER, 0, [0x0000_0077, 0x2, 0x0000_0009, 0]),
            leaf(LEAF_PMU, 0, [0x0730_0805, 0, 0, 0x8603]),
            leaf(LEAF_TOPOLOGY, 0, [1, 2, 0x100, 7]),
            leaf(LEAF_TOPOLOGY, 1, [4, 16, 0x201, 7]),
            leaf(LEAF_TOPOLOGY, 2, [0, 0, 2, 7]),
            leaf(LEAF_TOPOLOGY_V2, 1, [4, 16, 0x201, 7]),
            leaf(
                0x4000_0000,
                0,
                [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d],
            ),
            leaf(0x4000_0001, 0, [0x0100_7afb, 0, 0, 0]),
            leaf(LEAF_AMD_SIZES, 0, [0x3030, 0, 0x700f, 0]),
            leaf(LEAF_AMD_TOPOLOGY, 0, [9, 0x0107, 0x0100, 0]),
        ])
        .unwrap()
    }

    fn normalized(vcpu_index: u8, num_cpus: u8) -> CpuId {
        let mut cpuid = host_cpuid();
        normalize(&mut cpuid, vcpu_index, num_cpus);
        cpuid
    }

    #[test]
    fn tsc_deadline_is_announced_in_leaf1_only() {
        let mut cpuid = host_cpuid();
        let before = cpuid.as_slice().to_vec();
        advertise_tsc_deadline(&mut cpuid);
        for (old, new) in before.iter().zip(cpuid.as_slice()) {
            if old.function == LEAF_FEATURES {
                assert_eq!(new.ecx, old.ecx | ECX_TSC_DEADLINE);
                assert_eq!((new.eax, new.ebx, new.edx), (old.eax, old.ebx, old.edx));
            } else {
                assert_eq!(new, old, "leaf 0x{:x}.{} changed", old.function, old.index);
            }
        }
    }

    #[test]
    fn cpuid_leaf1_carries_apic_id_and_hypervisor_bit() {
        let l1 = find(&normalized(3, 4), LEAF_FEATURES, 0);
        assert_eq!(l1.ebx >> 24, 3, "APIC ID");
        assert_eq!((l1.ebx >> 16) & 0xff, 4, "logical processors");
        assert_eq!((l1.ebx >> 8) & 0xff, 8, "CLFLUSH size");
        assert_eq!(l1.ebx & 0xff, 0x03, "brand index kept");
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(l1.edx & EDX_HTT, 0);
    }

    #[test]
    fn cpuid_leaf1_keeps_tsc_deadline_as_reported() {
        let host = find(&host_cpuid(), LEAF_FEATURES, 0);
        let l1 = find(&normalized(0, 1), LEAF_FEATURES, 0);
        assert_eq!(l1.ecx & (1 << 24), host.ecx & (1 << 24));
        assert_eq!(l1.edx & EDX_HTT, 0, "no HTT with one vCPU");
    }

    #[test]
    fn cpuid_leaf4_counts_cores_per_package() {
        let cpuid = normalized(1, 4);
        let l1d = find(&cpuid, LEAF_CACHE_PARAMS, 0);
        assert_eq!(l1d.eax >> 26, 3);
        assert_eq!((l1d.eax >> 14) & 0xfff, 0, "L1 is per core");
        assert_eq!(l1d.eax & 0x3fff, 0x0121, "cache type and level kept");
        let l3 = find(&cpuid, LEAF_CACHE_PARAMS, 3);
        assert_eq!((l3.eax >> 14) & 0xfff, 3, "L3 shared by the package");
        assert_eq!(
            find(&cpuid, LEAF_CACHE_PARAMS, 4).eax,
            0,
            "terminator untouched"
        );
    }

    #[test]
    fn cpuid_extended_topology_describes_one_thread_per_core() {
        let cpuid = normalized(2, 3);
        for function in [LEAF_TOPOLOGY, LEAF_TOPOLOGY_V2] {
            let core = find(&cpuid, function, 1);
            assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 3, 0x201, 2));
        }
        let smt = find(&cpuid, LEAF_TOPOLOGY, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 2));
        let end = find(&cpuid, LEAF_TOPOLOGY, 2);
        assert_eq!((end.eax, end.ebx, end.ecx, end.edx), (0, 0, 2, 2));
    }

    #[test]
    fn cpuid_pmu_is_hidden_and_turbo_and_epb_are_cleared() {
        let cpuid = normalized(0, 2);
        let pmu = find(&cpuid, LEAF_PMU, 0);
        assert_eq!((pmu.eax, pmu.ebx, pmu.ecx, pmu.edx), (0, 0, 0, 0));
        let power = find(&cpuid, LEAF_POWER, 0);
        assert_eq!((power.eax, power.ecx), (0x75, 0x1));
    }

    #[test]
    fn cpuid_amd_leaves_carry_core_count_and_apic_id() {
        let cpuid = normalized(5, 8);
        let sizes = find(&cpuid, LEAF_AMD_SIZES, 0);
        assert_eq!(sizes.ecx & 0xff, 7);
        assert_eq!((sizes.ecx >> 12) & 0xf, 3);
        assert_eq!(sizes.eax, 0x3030, "address sizes kept");
        let topo = find(&cpuid, LEAF_AMD_TOPOLOGY, 0);
        assert_eq!((topo.eax, topo.ebx, topo.ecx), (5, 5, 0));
    }

    #[test]
    fn cpuid_kvm_leaves_pass_through() {
        let host = host_cpuid();
        let cpuid = normalized(1, 2);
        for function in [0x4000_0000, 0x4000_0001] {
            assert_eq!(find(&cpuid, function, 0), find(&host, function, 0));
        }
    }
}
