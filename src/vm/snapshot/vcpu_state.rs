//! One vCPU's state: read by its own thread while parked (KVM's vCPU ioctls belong to the
//! thread that runs the vCPU), written before its thread starts on restore.
//!
//! Reading order: MP state first, since KVM_GET_MP_STATE lets KVM take pending INIT/SIPI
//! into the LAPIC and vCPU state, which the later reads must then show; vCPU events last,
//! as the reads before may still move a pending event into them.
//!
//! Writing order, each step for a reason:
//! 1. CPUID: KVM decides from it which MSRs and XSAVE features exist.
//! 2. special registers, then general ones: KVM_SET_SREGS may requeue a pending interrupt
//!    and, for a BSP it finds at the reset vector, make it runnable; KVM_SET_REGS drops
//!    pending exceptions, which the events (7) bring back.
//! 3. FPU, XSAVE and XCRs (XSAVE supersedes the FPU's part where KVM has it).
//! 4. debug registers.
//! 5. LAPIC, after the special registers (they carry the APIC base, i.e. its mode).
//! 6. MSRs, after the LAPIC: a TSC deadline is only taken in TSC-deadline mode, and it is
//!    written after the TSC itself ([`super::msrs::write`]).
//! 7. vCPU events, then MP state last, so that nothing written after them changes them.

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Xsave, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

use super::error::SnapshotError;
use super::msrs;

/// What reading a vCPU's state needs to know about this host, found once per VM.
#[derive(Debug, Clone, Default)]
pub struct SaveSpec {
    /// The MSRs to save ([`msrs::to_save`]).
    pub msrs: Vec<u32>,
    /// Whether KVM has XSAVE (and XCRs) for this VM's vCPUs.
    pub xsave: bool,
    pub xcrs: bool,
    /// The XSAVE area's size in bytes when KVM_CAP_XSAVE2 says it is larger than
    /// `kvm_xsave` (AMX and other large state components).
    pub xsave2_size: Option<usize>,
}

impl SaveSpec {
    pub fn of(kvm: &Kvm, vm: &VmFd) -> Result<Self, SnapshotError> {
        Ok(SaveSpec {
            msrs: msrs::to_save(kvm)?,
            xsave: vm.check_extension(Cap::Xsave),
            xcrs: vm.check_extension(Cap::Xcrs),
            xsave2_size: xsave2_size(vm),
        })
    }
}

fn xsave2_size(vm: &VmFd) -> Option<usize> {
    let size = usize::try_from(vm.check_extension_int(Cap::Xsave2)).ok()?;
    (size > std::mem::size_of::<kvm_xsave>()).then_some(size)
}

/// A vCPU's state, as KVM gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VcpuState {
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub msrs: Vec<kvm_msr_entry>,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: SavedFpu,
    pub xsave: Option<SavedXsave>,
    pub xcrs: Option<kvm_xcrs>,
    pub debug_regs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub mp_state: kvm_mp_state,
    pub events: kvm_vcpu_events,
    /// The guest TSC's frequency, where KVM says (for a restore on another host).
    pub tsc_khz: Option<u32>,
}

#[cfg(test)]
impl VcpuState {
    /// A state with zeros everywhere but `rip`, for tests that only pass states around.
    pub fn for_tests(rip: u64) -> Self {
        VcpuState {
            cpuid: Vec::new(),
            msrs: Vec::new(),
            regs: kvm_regs {
                rip,
                ..Default::default()
            },
            sregs: Default::default(),
            fpu: kvm_fpu::default().into(),
            xsave: None,
            xcrs: None,
            debug_regs: Default::default(),
            lapic: Default::default(),
            mp_state: Default::default(),
            events: Default::default(),
            tsc_khz: None,
        }
    }
}

/// The XSAVE area: `kvm_xsave`'s 4 KiB (its `region`), and what KVM_CAP_XSAVE2 adds
/// beyond it. As words rather than `kvm_xsave`, which cannot be cloned (its flexible
/// array member).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedXsave {
    pub region: Vec<u32>,
    pub extra: Vec<u32>,
}

impl SavedXsave {
    fn region(&self) -> kvm_xsave {
        let mut xsave = kvm_xsave::default();
        let n = self.region.len().min(xsave.region.len());
        xsave.region[..n].copy_from_slice(&self.region[..n]);
        xsave
    }
}

/// Reads vCPU `index`'s state (see the module's note on the order).
pub fn save(vcpu: &VcpuFd, index: u8, spec: &SaveSpec) -> Result<VcpuState, SnapshotError> {
    let read = |what| SnapshotError::vcpu(index, "reading", what);
    let mp_state = vcpu.get_mp_state().map_err(read("the MP state"))?;
    let regs = vcpu.get_regs().map_err(read("the registers"))?;
    let sregs = vcpu.get_sregs().map_err(read("the special registers"))?;
    let fpu = vcpu.get_fpu().map_err(read("the FPU state"))?.into();
    let xsave = match spec.xsave {
        true => Some(read_xsave(vcpu, index, spec.xsave2_size)?),
        false => None,
    };
    let xcrs = match spec.xcrs {
        true => Some(vcpu.get_xcrs().map_err(read("the XCRs"))?),
        false => None,
    };
    let debug_regs = vcpu.get_debug_regs().map_err(read("the debug registers"))?;
    let lapic = vcpu.get_lapic().map_err(read("the LAPIC"))?;
    let cpuid = vcpu
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(read("the CPUID"))?
        .as_slice()
        .to_vec();
    let msrs = msrs::read(vcpu, index, &spec.msrs)?;
    let events = vcpu.get_vcpu_events().map_err(read("the pending events"))?;
    Ok(VcpuState {
        cpuid,
        msrs,
        regs,
        sregs,
        fpu,
        xsave,
        xcrs,
        debug_regs,
        lapic,
        mp_state,
        events,
        tsc_khz: vcpu.get_tsc_khz().ok(),
    })
}

fn read_xsave(vcpu: &VcpuFd, index: u8, size: Option<usize>) -> Result<SavedXsave, SnapshotError> {
    let failed = SnapshotError::vcpu(index, "reading", "the XSAVE area");
    let Some(size) = size else {
        let xsave = vcpu.get_xsave().map_err(failed)?;
        return Ok(SavedXsave {
            region: xsave.region.to_vec(),
            extra: Vec::new(),
        });
    };
    let mut xsave = Xsave::new(extra_words(size))?;
    // SAFETY: `xsave` holds `size` bytes, what KVM_CAP_XSAVE2 says KVM_GET_XSAVE2 writes.
    unsafe { vcpu.get_xsave2(&mut xsave) }.map_err(failed)?;
    Ok(SavedXsave {
        region: xsave.as_fam_struct_ref().xsave.region.to_vec(),
        extra: xsave.as_slice().to_vec(),
    })
}

/// How many u32 words of an XSAVE area of `size` bytes lie beyond `kvm_xsave`.
fn extra_words(size: usize) -> usize {
    size.saturating_sub(std::mem::size_of::<kvm_xsave>())
        .div_ceil(std::mem::size_of::<u32>())
}

/// Writes `state` into vCPU `index`, which has not run (see the module's note on the
/// order). `xsave2_size` is this host's, as [`SaveSpec::xsave2_size`].
pub fn restore(
    vcpu: &VcpuFd,
    index: u8,
    state: &VcpuState,
    xsave2_size: Option<usize>,
) -> Result<(), SnapshotError> {
    let set = |what| SnapshotError::vcpu(index, "restoring", what);
    if let Some(khz) = state.tsc_khz {
        if tsc_scaling_needed(vcpu.get_tsc_khz().ok(), khz) {
            vcpu.set_tsc_khz(khz).map_err(set("the TSC frequency"))?;
        }
    }
    vcpu.set_cpuid2(&CpuId::from_entries(&state.cpuid)?)
        .map_err(set("the CPUID"))?;
    vcpu.set_sregs(&state.sregs)
        .map_err(set("the special registers"))?;
    vcpu.set_regs(&state.regs).map_err(set("the registers"))?;
    vcpu.set_fpu(&state.fpu.clone().into())
        .map_err(set("the FPU state"))?;
    if let Some(xsave) = &state.xsave {
        write_xsave(vcpu, xsave, xsave2_size).map_err(set("the XSAVE area"))?;
    }
    if let Some(xcrs) = &state.xcrs {
        vcpu.set_xcrs(xcrs).map_err(set("the XCRs"))?;
    }
    vcpu.set_debug_regs(&state.debug_regs)
        .map_err(set("the debug registers"))?;
    vcpu.set_lapic(&state.lapic).map_err(set("the LAPIC"))?;
    msrs::write(vcpu, index, &state.msrs)?;
    vcpu.set_vcpu_events(&state.events)
        .map_err(set("the pending events"))?;
    vcpu.set_mp_state(state.mp_state)
        .map_err(set("the MP state"))?;
    Ok(())
}

fn write_xsave(
    vcpu: &VcpuFd,
    saved: &SavedXsave,
    host_size: Option<usize>,
) -> Result<(), kvm_ioctls::Error> {
    let Some(size) = host_size else {
        // SAFETY: without KVM_CAP_XSAVE2 beyond 4 KiB, KVM reads `kvm_xsave`'s size.
        return unsafe { vcpu.set_xsave(&saved.region()) };
    };
    // KVM reads as many bytes as its own XSAVE size: the buffer has at least that many,
    // zeros where the saved area was smaller.
    let mut extra = saved.extra.clone();
    extra.resize(extra.len().max(extra_words(size)), 0);
    let mut xsave = Xsave::from_entries(&extra).map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))?;
    // SAFETY: only the fixed-size `xsave` field is written, not the entry count.
    unsafe { xsave.as_mut_fam_struct() }.xsave.region = saved.region().region;
    // SAFETY: `xsave` holds at least `size` bytes, what KVM_SET_XSAVE reads on this host.
    unsafe { vcpu.set_xsave2(&xsave) }
}

/// Whether a guest whose TSC ran at `saved` kHz needs KVM to scale this host's (`host`):
/// only beyond the drift of two calibrations of one clock (250 ppm, as QEMU allows).
fn tsc_scaling_needed(host: Option<u32>, saved: u32) -> bool {
    let Some(host) = host else { return false };
    u64::from(host.abs_diff(saved)) * 1_000_000 > u64::from(saved) * 250
}

/// `kvm_fpu` (which kvm-bindings does not serialize), field by field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedFpu {
    fpr: [[u8; 16]; 8],
    fcw: u16,
    fsw: u16,
    ftwx: u8,
    last_opcode: u16,
    last_ip: u64,
    last_dp: u64,
    xmm: [[u8; 16]; 16],
    mxcsr: u32,
}

impl From<kvm_fpu> for SavedFpu {
    fn from(f: kvm_fpu) -> Self {
        SavedFpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
        }
    }
}

impl From<SavedFpu> for kvm_fpu {
    fn from(f: SavedFpu) -> Self {
        kvm_fpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fpu_round_trips_through_its_mirror() {
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            last_ip: 0x1234,
            xmm: [[7; 16]; 16],
            ..Default::default()
        };
        let back: kvm_fpu = SavedFpu::from(fpu).into();
        assert_eq!(back, fpu);
    }

    #[test]
    fn a_tsc_within_calibration_drift_is_not_scaled() {
        assert!(!tsc_scaling_needed(Some(2_000_000), 2_000_400));
        assert!(tsc_scaling_needed(Some(2_000_000), 2_100_000));
        assert!(
            !tsc_scaling_needed(None, 2_100_000),
            "a host that does not say cannot scale"
        );
    }

    #[test]
    fn an_xsave_area_of_4k_or_less_has_no_extra_words() {
        assert_eq!(extra_words(4096), 0);
        assert_eq!(extra_words(4096 + 8192), 2048);
        assert_eq!(extra_words(4097), 1);
    }
}
