//! vCPUs: boot-state setup (through `boot/`) and the exit loop, one thread each.
//!
//! Setting up a vCPU only loads its registers: the structures they point at were written
//! once for the VM by `boot_sequence`, so no guest memory is written here.
//!
//! Every vCPU gets the 64-bit boot state, but only the BSP is runnable: with the in-kernel
//! LAPIC, KVM keeps APs waiting for INIT/SIPI, which Linux (and the test guest) send, and
//! INIT resets whatever state an AP had.
//!
//! Stopping: the main thread sets the stop flag (`StopSignal::request`) and then kicks
//! every vCPU thread with `SIGRTMIN` until it has left its loop. A vCPU blocked in
//! KVM_RUN (e.g. in `hlt`, which the in-kernel irqchip handles without exiting) returns
//! EINTR; one between two KVM_RUN calls sees the flag before re-entering. Repeating the
//! kick closes the window between the flag check and KVM_RUN.
//!
//! Pausing (`super::control`) kicks the same way; a vCPU that sees the pause flag runs
//! KVM_RUN once more with `immediate_exit` set, to complete the I/O exit it just handled
//! (see `control`'s note), and parks when that returns EINTR.

use std::sync::Arc;

use devices::{Bus, StopReason, StopSignal};
use kvm_bindings::{CpuId, KVM_SYSTEM_EVENT_CRASH};
use kvm_bindings::{KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use super::boot_sequence::BootEntry;
use super::control::VmControl;
use super::error::VmError;
use super::exit_counts::ExitCounts;
use super::exit_stats::VcpuExitStats;
use super::failure::{VcpuFailure, VcpuFault};
use super::restore::FirstExitProbe;
use super::snapshot::{vcpu_state, SaveSpec};

/// What every vCPU needs to be put in its boot state.
pub struct BootState<'a> {
    pub supported_cpuid: &'a CpuId,
    /// Where the boot sequence put the entry point, zero page and tables.
    pub entry: BootEntry,
    pub num_cpus: u8,
}

pub fn create_vcpu(vm: &VmFd, index: u8, boot: &BootState) -> Result<VcpuFd, VmError> {
    let failed = |op| VmError::vcpu(index, op);
    let vcpu = vm
        .create_vcpu(u64::from(index))
        .map_err(failed("creating"))?;

    let mut cpuid = boot.supported_cpuid.clone();
    boot::cpuid::normalize(&mut cpuid, index, boot.num_cpus);
    vcpu.set_cpuid2(&cpuid)
        .map_err(failed("setting the CPUID of"))?;

    let msrs = boot::msr::boot_msrs()?;
    let written = vcpu
        .set_msrs(&msrs)
        .map_err(failed("setting the boot MSRs of"))?;
    if written != msrs.as_slice().len() {
        // KVM stops at the first MSR it refuses; name it.
        return Err(VmError::MsrRefused {
            vcpu: index,
            msr: msrs.as_slice()[written].index,
        });
    }

    let entry = &boot.entry;
    vcpu.set_regs(&boot::regs::boot_regs(entry.rip, entry.zero_page))
        .map_err(failed("setting the boot registers of"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(failed("reading the special registers of"))?;
    boot::regs::setup_sregs(&entry.tables, &mut sregs);
    vcpu.set_sregs(&sregs)
        .map_err(failed("setting the special registers of"))?;
    vcpu.set_fpu(&boot::regs::boot_fpu())
        .map_err(failed("setting the FPU state of"))?;

    let mut lapic = vcpu.get_lapic().map_err(failed("reading the LAPIC of"))?;
    boot::lapic::set_lint(&mut lapic);
    vcpu.set_lapic(&lapic)
        .map_err(failed("setting LAPIC LINT0/LINT1 of"))?;

    Ok(vcpu)
}

/// What a vCPU thread shares with the rest of the VM.
#[derive(Clone)]
pub struct VcpuShared {
    pub io_bus: Arc<Bus>,
    pub mmio_bus: Arc<Bus>,
    pub stop: Arc<StopSignal>,
    /// The host is PVM: failures of the guest's instructions are most likely its emulator's.
    pub pvm_host: bool,
    /// Live exit counts for a controller that reads them while the VM runs (the API's
    /// metrics); `None`: nobody asked.
    pub exit_counts: Option<Arc<ExitCounts>>,
    /// The VM's control, when another thread may pause or snapshot it.
    pub control: Option<Arc<VmControl>>,
    /// What reading a vCPU's state for a snapshot needs (with `control`).
    pub save_spec: Arc<SaveSpec>,
    /// `vmm bench restore`: report the first exit after a restore, then stop.
    pub first_exit: Option<Arc<FirstExitProbe>>,
}

/// What a vCPU thread hands back when it ends.
pub struct VcpuEnd {
    /// Its exit counts, with `--trace-exits`.
    pub stats: Option<VcpuExitStats>,
    /// Why it stopped the VM, if it did: the typed error behind the text it requested on
    /// the stop signal (see `outcome::outcome_of`).
    pub failure: Option<VcpuFailure>,
}

/// Runs the vCPU until the VM is asked to stop. With `trace_exits`, counts every return
/// of KVM_RUN and hands the counts back; without it, counts nothing.
pub fn run_vcpu(mut vcpu: VcpuFd, index: u8, shared: VcpuShared, trace_exits: bool) -> VcpuEnd {
    #[cfg(debug_assertions)]
    panic_if_asked();
    let mut stats = trace_exits.then(|| VcpuExitStats::new(index));
    if let Some(stats) = &mut stats {
        stats.start();
    }
    let mut failure = None;
    while !shared.stop.is_requested() {
        // Set while a pause is pending (the next turn clears it again once resumed).
        let pausing = shared.control.as_ref().filter(|c| c.pause_requested());
        vcpu.set_kvm_immediate_exit(u8::from(pausing.is_some()));
        let outcome = match vcpu.run() {
            Ok(exit) => {
                if let Some(stats) = &mut stats {
                    stats.record(&exit);
                }
                if let Some(counts) = &shared.exit_counts {
                    counts.record(index, &exit);
                }
                let flow = handle_exit(exit, &shared);
                if let Some(probe) = &shared.first_exit {
                    probe.observe(&shared.stop);
                }
                flow
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                match pausing {
                    // Whatever KVM had in hand is complete: park until resumed or stopped.
                    Some(control) => control.park(usize::from(index), &shared.stop, || {
                        vcpu_state::save(&vcpu, index, &shared.save_spec)
                    }),
                    None => {
                        if let Some(stats) = &mut stats {
                            stats.record_interrupted();
                        }
                    }
                }
                if let Some(counts) = &shared.exit_counts {
                    counts.record_interrupted(index);
                }
                Flow::Continue
            }
            Err(e) => Flow::Fail(VcpuFault::Run(e)),
        };
        match outcome {
            Flow::Continue => {}
            Flow::Stop(reason) => shared.stop.request(reason),
            Flow::Fail(fault) => {
                // Where the guest was, for the message; KVM may no longer say.
                let rip = vcpu.get_regs().ok().map(|r| r.rip);
                let failed = VcpuFailure::new(index, fault, rip, shared.pvm_host);
                shared.stop.request(StopReason::Failed(failed.to_string()));
                failure = Some(failed);
            }
        }
    }
    if let Some(stats) = &mut stats {
        stats.finish();
    }
    VcpuEnd { stats, failure }
}

enum Flow {
    Continue,
    /// A clean end the guest asked for (reset, power-off).
    Stop(StopReason),
    /// The vCPU cannot go on.
    Fail(VcpuFault),
}

fn handle_exit(exit: VcpuExit, shared: &VcpuShared) -> Flow {
    match exit {
        VcpuExit::IoIn(port, data) => {
            // A port nobody decodes reads as all ones, as on a PC's floating bus (and in
            // QEMU). Zeros would fake hardware: Linux's PCI probe reads 0 back from 0xcf8
            // and 0xcfa as a "type 2" host bridge and scans its bus, ~1.3k port exits.
            if !shared.io_bus.read(u64::from(port), data) {
                data.fill(0xff);
            }
            Flow::Continue
        }
        VcpuExit::IoOut(port, data) => {
            shared.io_bus.write(u64::from(port), data);
            Flow::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            if !shared.mmio_bus.read(addr, data) {
                data.fill(0);
            }
            Flow::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            shared.mmio_bus.write(addr, data);
            Flow::Continue
        }
        // Without an in-kernel LAPIC `hlt` would exit here; with it, KVM handles it.
        VcpuExit::Hlt | VcpuExit::IrqWindowOpen | VcpuExit::Intr => Flow::Continue,
        VcpuExit::Shutdown => Flow::Fail(VcpuFault::TripleFault),
        VcpuExit::InternalError => Flow::Fail(VcpuFault::InternalError),
        VcpuExit::FailEntry(reason, cpu) => Flow::Fail(VcpuFault::FailEntry { reason, cpu }),
        VcpuExit::SystemEvent(kind, _) => match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN | KVM_SYSTEM_EVENT_RESET => Flow::Stop(StopReason::Reset),
            KVM_SYSTEM_EVENT_CRASH => Flow::Fail(VcpuFault::GuestCrash),
            other => Flow::Fail(VcpuFault::UnexpectedSystemEvent(other)),
        },
        other => Flow::Fail(VcpuFault::UnexpectedExit(format!("{other:?}"))),
    }
}

/// Test seam, debug builds only (integration tests run the debug build; release has no
/// such code): `VMM_TEST_PANIC_IN=vcpu0` makes the vCPU thread of that name panic as it
/// starts, after the console is in raw mode. `tests/terminal_panic.rs` uses it to check that
/// the panic hook in `terminal` restores the terminal.
///
/// Release builds abort on panic; a debug build unwinds, and the VM would go on without the
/// vCPU until something ends it through the orderly path, whose `RawModeGuard` Drop would
/// restore the terminal and hide a missing hook. So, as release does, the process aborts:
/// `AbortOnUnwind` is dropped by the unwind, after the hook has run and before any other
/// thread's destructors can.
#[cfg(debug_assertions)]
fn panic_if_asked() {
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            std::process::abort();
        }
    }

    let Some(wanted) = std::env::var_os("VMM_TEST_PANIC_IN") else {
        return;
    };
    let thread = std::thread::current();
    let Some(name) = thread.name().filter(|name| wanted == *name) else {
        return;
    };
    let _abort = AbortOnUnwind;
    panic!(
        "VMM_TEST_PANIC_IN: forced panic in {name} (raw mode on: {})",
        crate::terminal::raw_mode_is_on()
    );
}
