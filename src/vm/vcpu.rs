//! vCPUs: boot-state setup (through `boot/`) and the exit loop, one thread each.
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

use std::sync::Arc;

use devices::{Bus, StopReason, StopSignal};
use kvm_bindings::{CpuId, KVM_SYSTEM_EVENT_CRASH};
use kvm_bindings::{KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use super::error::VmError;
use super::exit_stats::VcpuExitStats;

/// What every vCPU needs to be put in its boot state.
pub struct BootState<'a> {
    pub mem: &'a GuestMemoryMmap,
    pub supported_cpuid: &'a CpuId,
    pub entry: u64,
    pub num_cpus: u8,
}

pub fn create_vcpu(vm: &VmFd, index: u8, boot: &BootState) -> Result<VcpuFd, VmError> {
    let vcpu = vm
        .create_vcpu(u64::from(index))
        .map_err(VmError::kvm("creating a vCPU"))?;

    let mut cpuid = boot.supported_cpuid.clone();
    boot::cpuid::normalize(&mut cpuid, index, boot.num_cpus);
    vcpu.set_cpuid2(&cpuid)
        .map_err(VmError::kvm("setting the vCPU's CPUID"))?;

    let msrs = boot::msr::boot_msrs()?;
    let written = vcpu
        .set_msrs(&msrs)
        .map_err(VmError::kvm("setting boot MSRs"))?;
    if written != msrs.as_slice().len() {
        // KVM stops at the first MSR it refuses; name it.
        return Err(VmError::MsrRefused {
            index: msrs.as_slice()[written].index,
        });
    }

    vcpu.set_regs(&boot::regs::boot_regs(boot.entry))
        .map_err(VmError::kvm("setting boot registers"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(VmError::kvm("reading special registers"))?;
    boot::regs::setup_sregs(boot.mem, &mut sregs)?;
    vcpu.set_sregs(&sregs)
        .map_err(VmError::kvm("setting special registers"))?;
    vcpu.set_fpu(&boot::regs::boot_fpu())
        .map_err(VmError::kvm("setting the FPU state"))?;

    let mut lapic = vcpu
        .get_lapic()
        .map_err(VmError::kvm("reading the LAPIC"))?;
    boot::lapic::set_lint(&mut lapic);
    vcpu.set_lapic(&lapic)
        .map_err(VmError::kvm("setting LAPIC LINT0/LINT1"))?;

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
}

/// Runs the vCPU until the VM is asked to stop. With `trace_exits`, counts every return
/// of KVM_RUN and hands the counts back; without it, counts nothing.
pub fn run_vcpu(
    mut vcpu: VcpuFd,
    index: u8,
    shared: VcpuShared,
    trace_exits: bool,
) -> Option<VcpuExitStats> {
    #[cfg(debug_assertions)]
    panic_if_asked();
    let mut stats = trace_exits.then(|| VcpuExitStats::new(index));
    if let Some(stats) = &mut stats {
        stats.start();
    }
    while !shared.stop.is_requested() {
        let outcome = match vcpu.run() {
            Ok(exit) => {
                if let Some(stats) = &mut stats {
                    stats.record(&exit);
                }
                handle_exit(exit, &shared)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                if let Some(stats) = &mut stats {
                    stats.record_interrupted();
                }
                Flow::Continue
            }
            Err(e) => Flow::Stop(StopReason::Failed(format!(
                "vCPU {index}: KVM_RUN failed: {e}"
            ))),
        };
        if let Flow::Stop(reason) = outcome {
            let reason = match reason {
                StopReason::Failed(msg) => {
                    StopReason::Failed(describe_failure(&vcpu, index, msg, shared.pvm_host))
                }
                other => other,
            };
            shared.stop.request(reason);
        }
    }
    if let Some(stats) = &mut stats {
        stats.finish();
    }
    stats
}

enum Flow {
    Continue,
    Stop(StopReason),
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
        VcpuExit::Shutdown => Flow::Stop(StopReason::Failed(
            "the guest triple-faulted (KVM_EXIT_SHUTDOWN)".into(),
        )),
        VcpuExit::InternalError => Flow::Stop(StopReason::Failed(
            "KVM could not run the guest's instruction (KVM_EXIT_INTERNAL_ERROR)".into(),
        )),
        VcpuExit::FailEntry(reason, cpu) => Flow::Stop(StopReason::Failed(format!(
            "KVM failed to enter the guest (KVM_EXIT_FAIL_ENTRY, hardware reason {reason:#x}, host cpu {cpu})"
        ))),
        VcpuExit::SystemEvent(kind, _) => match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN | KVM_SYSTEM_EVENT_RESET => Flow::Stop(StopReason::Reset),
            KVM_SYSTEM_EVENT_CRASH => {
                Flow::Stop(StopReason::Failed("the guest reported a crash".into()))
            }
            other => Flow::Stop(StopReason::Failed(format!(
                "unexpected KVM system event {other}"
            ))),
        },
        other => Flow::Stop(StopReason::Failed(format!(
            "unexpected vCPU exit: {other:?}"
        ))),
    }
}

/// Adds where the guest was, and on a PVM host the likely cause, to a failure message.
fn describe_failure(vcpu: &VcpuFd, index: u8, msg: String, pvm_host: bool) -> String {
    let rip = vcpu
        .get_regs()
        .map(|r| format!(" at rip={:#x}", r.rip))
        .unwrap_or_default();
    let mut text = format!("vCPU {index}: {msg}{rip}");
    if pvm_host && msg.contains("INTERNAL_ERROR") {
        text.push_str(
            "; this host's KVM is PVM, whose instruction emulator cannot run some \
             instructions (xsave/xrstor, popcnt, int3, SSE …): unmodified Linux guests \
             die this way here — see `vmm doctor`",
        );
    }
    text
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
