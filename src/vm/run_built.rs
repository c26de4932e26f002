//! Running a VM that is built (booted or restored) until it stops: start the vCPU threads
//! and the event loop, each under its seccomp filter, wait for the stop, stop the vCPUs
//! and report.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::{StopReason, StopSignal};
use kvm_ioctls::{VcpuFd, VmFd};
use vmm_sys_util::signal::Killable;

use super::devices_setup::Devices;
use super::restore::FirstExitProbe;
use super::snapshot::{SaveSpec, SavedConfig, SnapshotSource};
use super::virtio_setup::AttachedVirtio;
use super::{
    event_loop, exit_counts, exit_stats, failure, memory, outcome, running, seccomp, signals, vcpu,
    RunOptions, VmError, VmOutcome,
};
use crate::terminal::RawModeGuard;

/// How long stopping may take before the VMM gives up on a vCPU thread and exits anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// A VM ready to run: its vCPUs set up (boot state or restored), devices wired.
pub struct BuiltVm {
    pub vm: Arc<VmFd>,
    /// Unmapped when the run is over and no thread holds it any more.
    pub mem: memory::GuestRam,
    pub devices: Devices,
    /// Dropped at the end of [`run_built`], after the vCPUs: that stops the device workers.
    pub virtio: AttachedVirtio,
    pub vcpus: Vec<VcpuFd>,
    pub pvm_host: bool,
    /// What a snapshot of this VM records of how it was built.
    pub config: SavedConfig,
    /// What its vCPUs need to read their state (when it has a control).
    pub save_spec: SaveSpec,
    /// Whether the vCPUs start parked (a restore that does not resume yet).
    pub start_paused: bool,
    /// `vmm bench restore`'s probe.
    pub first_exit: Option<Arc<FirstExitProbe>>,
}

/// Runs `built` until it stops, with the console, stop signal, control and reports of
/// `options`.
pub fn run_built(built: BuiltVm, options: RunOptions) -> Result<VmOutcome, VmError> {
    let BuiltVm {
        vm,
        mem,
        devices,
        virtio,
        vcpus,
        pvm_host,
        config,
        save_spec,
        start_paused,
        first_exit,
    } = built;
    let mem_mib = config.mem_mib;
    let owns_terminal = options.console.owns_terminal();
    signals::install_handlers(owns_terminal)?;
    let _raw_mode = owns_terminal.then(RawModeGuard::enter);
    #[cfg(debug_assertions)]
    let control = super::test_seam::control_for(options.control.clone())?;
    #[cfg(not(debug_assertions))]
    let control = options.control.clone();
    if let Some(control) = &control {
        let source = SnapshotSource {
            vm: vm.clone(),
            mem: mem.clone(),
            serial: devices.serial.clone(),
            config: Mutex::new(config),
            virtio: virtio.transports.clone(),
        };
        control.attach(
            vcpus.len(),
            devices.stop.clone(),
            Arc::new(source),
            start_paused,
        );
    }
    // Detaches on every way out of here; explicitly before the vCPU threads are joined.
    let attached = Attached(control.clone());
    // A controller watching the run (the API) gets the vCPUs' exits counted live.
    let watched = options.running.as_ref().map(|running| {
        (
            running.clone(),
            Arc::new(exit_counts::ExitCounts::new(vcpus.len() as u8)),
        )
    });
    let shared = vcpu::VcpuShared {
        io_bus: Arc::new(devices.io_bus),
        mmio_bus: Arc::new(devices.mmio_bus),
        stop: devices.stop.clone(),
        pvm_host,
        exit_counts: watched.as_ref().map(|(_, counts)| counts.clone()),
        control: control.clone(),
        save_spec: Arc::new(save_spec),
        first_exit,
    };
    let filters = match options.no_seccomp {
        true => None,
        false => {
            if needs_spawner(&virtio) {
                seccomp::start_spawner()?;
            }
            Some(ThreadFilters {
                vcpu: seccomp::program(seccomp::ThreadKind::Vcpu)?,
                events: seccomp::program(seccomp::ThreadKind::Events)?,
            })
        }
    };
    let threads = spawn_vcpus(
        vcpus,
        &shared,
        options.trace_exits,
        filters.as_ref().map(|f| f.vcpu.clone()),
    )?;
    if let Some(control) = &control {
        use std::os::unix::thread::JoinHandleExt;
        control.set_threads(threads.iter().map(|t| t.as_pthread_t()).collect());
    }
    #[cfg(debug_assertions)]
    super::test_seam::start(control.as_ref());
    // Marks the run ended when this function leaves, however it leaves.
    let _ended = watched.map(|(running, exit_counts)| {
        running.started(running::VmHandles {
            i8042: devices.i8042.clone(),
            balloon: virtio.balloon.clone(),
            device_metrics: virtio.metrics.clone(),
            exit_counts,
            boot_time: devices.boot_time.clone(),
            mem_mib,
        });
        running::EndGuard(running)
    });

    let console_input = owns_terminal.then(|| devices.serial.clone());
    let waited = run_event_loop(
        console_input,
        devices.stop.clone(),
        filters.map(|f| f.events),
    );
    if let Some(sig) = signals::termination_signal() {
        devices
            .stop
            .request(StopReason::Failed(format!("terminated by signal {sig}")));
    }
    if let Err(e) = &waited {
        // Only to stop the vCPUs: `waited?` below reports the error itself.
        devices.stop.request(StopReason::Failed(format!(
            "the VMM's event loop failed: {}",
            edge::error_chain(e)
        )));
    }
    // Before the vCPU threads are joined: parked ones leave, and no pause kicks them later.
    drop(attached);
    let stopped = stop_vcpus(threads);
    if options.trace_exits {
        let summary = exit_stats::ExitSummary::merge(&stopped.stats, &stopped.not_stopped);
        for line in summary.lines(&devices.names) {
            eprintln!("{line}");
        }
    }
    for line in virtio.metrics.summary_lines(options.trace_exits) {
        eprintln!("{line}");
    }
    waited?;

    if let Some(balloon) = virtio.balloon.as_ref().filter(|_| !options.quiet) {
        eprintln!("vmm: {}", super::virtio_setup::balloon_summary(balloon));
    }
    drop(virtio);
    if options.report_resident {
        eprintln!(
            "vmm: guest RAM resident: {} KiB",
            memory::resident_bytes(&mem) / 1024
        );
    }
    Ok(match signals::termination_signal() {
        Some(sig) => VmOutcome::Terminated(sig),
        None => outcome::outcome_of(devices.stop.reason(), stopped.failures),
    })
}

/// Whether the VM needs the thread that starts device workers: only virtio devices have
/// workers. (A VM without them used to start it anyway, and compile the five worker
/// filters for it: most of what the filters cost on `vmm bench start`.)
fn needs_spawner(virtio: &AttachedVirtio) -> bool {
    !virtio.transports.is_empty()
}

/// The control of a running VM, detached from it when dropped.
struct Attached(Option<Arc<super::VmControl>>);

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(control) = &self.0 {
            control.detach();
        }
    }
}

/// A vCPU thread hands back its exit counts (with `--trace-exits`) and its failure when
/// it ends.
type VcpuThread = JoinHandle<vcpu::VcpuEnd>;

/// What the vCPU threads handed back as they stopped.
struct StoppedVcpus {
    /// The exit counts of the threads that stopped (with `--trace-exits`).
    stats: Vec<exit_stats::VcpuExitStats>,
    /// The indices of the threads that did not stop in time.
    not_stopped: Vec<u8>,
    /// Why vCPUs stopped the VM, for [`outcome::outcome_of`].
    failures: Vec<failure::VcpuFailure>,
}

/// The seccomp filters of the threads this module starts (the workers' are the
/// spawner's business).
struct ThreadFilters {
    vcpu: Arc<seccompiler::BpfProgram>,
    events: Arc<seccompiler::BpfProgram>,
}

/// Starts the vCPU threads; with `filter`, each confines itself before its first KVM_RUN.
fn spawn_vcpus(
    vcpus: Vec<VcpuFd>,
    shared: &vcpu::VcpuShared,
    trace_exits: bool,
    filter: Option<Arc<seccompiler::BpfProgram>>,
) -> Result<Vec<VcpuThread>, VmError> {
    vcpus
        .into_iter()
        .enumerate()
        .map(|(i, fd)| {
            let shared = shared.clone();
            let index = i as u8;
            let filter = filter.clone();
            std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn(move || {
                    if let Some(filter) = &filter {
                        seccomp::confine_or_exit(seccomp::ThreadKind::Vcpu, filter);
                    }
                    vcpu::run_vcpu(fd, index, shared, trace_exits)
                })
                .map_err(|source| VmError::VcpuThread { index, source })
        })
        .collect()
}

/// Runs the event loop until the VM is asked to stop: with `filter`, on a thread of its
/// own that confines itself first (this thread goes on after the VM, unconfined).
fn run_event_loop(
    console_input: Option<Arc<Mutex<devices::Serial>>>,
    stop: Arc<StopSignal>,
    filter: Option<Arc<seccompiler::BpfProgram>>,
) -> Result<(), VmError> {
    let Some(filter) = filter else {
        return event_loop::run_until_stop(console_input, stop);
    };
    let thread = std::thread::Builder::new()
        .name(seccomp::ThreadKind::Events.name().into())
        .spawn(move || {
            seccomp::confine_or_exit(seccomp::ThreadKind::Events, &filter);
            event_loop::run_until_stop(console_input, stop)
        })
        .map_err(VmError::io("starting the event loop's thread"))?;
    thread.join().unwrap_or_else(|_| {
        Err(VmError::io("the event loop")(std::io::Error::other(
            "it panicked",
        )))
    })
}

/// Kicks each vCPU thread until it has left its loop (the stop flag is already set).
/// A thread that does not stop by the deadline is left behind: the process exits anyway.
fn stop_vcpus(threads: Vec<VcpuThread>) -> StoppedVcpus {
    let deadline = Instant::now() + STOP_DEADLINE;
    let mut stopped = StoppedVcpus {
        stats: Vec::new(),
        not_stopped: Vec::new(),
        failures: Vec::new(),
    };
    for (index, thread) in threads.into_iter().enumerate() {
        while !thread.is_finished() && Instant::now() < deadline {
            let _ = thread.kill(signals::kick_signal());
            std::thread::sleep(Duration::from_micros(200));
        }
        if thread.is_finished() {
            if let Ok(end) = thread.join() {
                stopped.stats.extend(end.stats);
                stopped.failures.extend(end.failure);
            }
        } else {
            eprintln!("vmm: vCPU {index} did not stop in time; exiting without it");
            stopped.not_stopped.push(index as u8);
        }
    }
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_without_virtio_devices_starts_no_spawner() {
        let none = AttachedVirtio {
            transports: Vec::new(),
            balloon: None,
            metrics: super::super::device_metrics::DeviceMetrics::default(),
        };
        assert!(!needs_spawner(&none));
    }
}
