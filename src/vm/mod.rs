//! Building and running one VM, top-down: check the input, map guest memory and start
//! copying the kernel into it, create the VM, wire the devices, write the boot structures
//! (`boot_sequence`, the only writer of guest memory before the guest runs), start the
//! vCPUs, wait for the VM to stop, and tear down. Details live in the submodules, `boot/`
//! and `devices/`.

mod boot_sequence;
pub mod config_file;
pub mod config_sections;
mod console_input;
pub mod console_log;
pub mod device_metrics;
mod device_slots;
pub mod device_specs;
mod devices_setup;
pub mod error;
mod event_loop;
pub mod exit_counts;
pub mod exit_stats;
pub mod failure;
mod input;
mod kvm_setup;
pub mod loader;
pub mod memory;
mod outcome;
pub mod rate_limits;
pub mod running;
pub mod seccomp;
mod signals;
pub mod spec_checks;
mod vcpu;
mod virtio_setup;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::{StopReason, StopSignal};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use vmm_sys_util::signal::Killable;

pub use device_metrics::DeviceMetrics;
pub use error::VmError;
pub use outcome::VmOutcome;

use crate::terminal::RawModeGuard;

/// A serial console on COM1, reboot through the i8042, and no reboot loop on panic.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";

/// How long stopping may take before the VMM gives up on a vCPU thread and exits anyway.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// The VM to build: its kernel, memory, vCPUs and devices. How a run of it is watched and
/// ended is the caller's, in [`RunOptions`].
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub mem_mib: u64,
    pub cpus: u16,
    pub cmdline: String,
    pub initrd: Option<PathBuf>,
    pub devices: device_specs::DeviceSpecs,
    /// `Some(process start)` when `--boot-timer` was given.
    pub boot_timer: Option<Instant>,
}

/// What the caller brings to a run, apart from what to build ([`VmConfig`]): where the
/// console goes, how to stop the VM, and what to report.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where the guest's console goes, and whether the VM owns the terminal.
    pub console: Console,
    /// A stop signal the caller keeps, to end the VM from another thread
    /// ([`StopReason::Requested`]); `None` makes a private one.
    pub stop: Option<Arc<StopSignal>>,
    /// Print guest RAM residency at exit (for `vmm bench start`).
    pub report_resident: bool,
    /// Count the vCPUs' KVM exits and print a summary on stderr at the end
    /// (`--trace-exits`, [`exit_stats`]); the devices' error counts follow it.
    pub trace_exits: bool,
    /// A handle the caller keeps to read the devices' error counts
    /// ([`DeviceMetrics::snapshot`]) during and after the run.
    pub device_metrics: Option<DeviceMetrics>,
    /// Leave the VMM's threads without seccomp filters (`--no-seccomp`, for debugging);
    /// by default each confines itself ([`seccomp`]).
    pub no_seccomp: bool,
    /// A handle a controller on another thread (the API socket) keeps: the VM fills it in
    /// once it runs ([`running::VmHandles`]) and marks it ended as it stops.
    pub running: Option<Arc<running::RunningVm>>,
}

/// Where the guest's console goes.
#[derive(Debug, Clone, Default)]
pub enum Console {
    /// The terminal: output to stdout, stdin to the serial port (raw mode on a tty), and
    /// SIGINT, SIGTERM and SIGHUP end the VM. What `vmm --kernel` does.
    #[default]
    Terminal,
    /// The terminal as above, and a copy of the output (`vmm demo` reads the guest's
    /// report from it).
    TerminalWithCopy(Arc<Mutex<Vec<u8>>>),
    /// Output into this log only, no input; the terminal and the process's signal
    /// dispositions are left alone. For a VM run behind another command (`vmm run`),
    /// which ends it through [`RunOptions::stop`].
    Log(Arc<Mutex<console_log::ConsoleLog>>),
}

impl Console {
    fn owns_terminal(&self) -> bool {
        !matches!(self, Console::Log(_))
    }
}

/// Builds the VM of `config` and runs it until it stops, with the console, stop signal and
/// reports of `options`.
pub fn run_with(config: &VmConfig, options: RunOptions) -> Result<VmOutcome, VmError> {
    let mem_bytes = memory::check_mem_size(config.mem_mib, memory::host_ram_mib())?;
    if config.cpus == 0 {
        return Err(VmError::CpusZero);
    }
    spec_checks::whole_vm(&config.devices, config.mem_mib)?;
    let mut kernel = loader::KernelImage::open(&config.kernel)?;
    let virtio_devices = virtio_setup::plan(&config.devices)?;
    let cmdline = virtio_setup::guest_cmdline(
        &config.cmdline,
        config.devices.rootfs.is_some(),
        &virtio_devices,
    );
    let cmdline_limit = loader::cmdline_limit_of(&mut kernel);
    loader::check_cmdline(&cmdline, cmdline_limit)?;
    let initrd = match &config.initrd {
        Some(path) => Some(loader::InitrdImage::open(path, mem_bytes)?),
        None => None,
    };

    // Guest RAM is mapped first, and the payload (step 1 of `boot_sequence`) is copied into
    // it while the VM and its devices are created: those need the mapping but not its
    // contents.
    let mem = memory::create_guest_memory(mem_bytes)?;
    let payload = loader::Payload {
        kernel,
        cmdline,
        cmdline_limit,
        initrd,
    }
    .load_in_background(&mem)?;

    let kvm = kvm_setup::open_checked_kvm()?;
    let num_cpus = kvm_setup::check_cpu_count(&kvm, config.cpus)?;
    let pvm_host = crate::host::pvm_detected(Some(&kvm));
    let vm = kvm_setup::create_vm(&kvm)?;
    memory::register_with_kvm(&vm, &mem)?;
    kvm_setup::create_interrupt_controllers(&vm)?;

    let stop = match &options.stop {
        Some(stop) => stop.clone(),
        None => Arc::new(StopSignal::new().map_err(VmError::io("creating the stop event"))?),
    };
    let mut devices = devices_setup::setup_devices(&vm, config.boot_timer, &options.console, stop)?;
    // Dropped at the end of `run`, after the vCPUs: that stops the device workers.
    let virtio = virtio_setup::attach(
        &vm,
        &mem,
        &mut devices.mmio_bus,
        &mut devices.names,
        &virtio_devices,
    )?;
    if let Some(handle) = &options.device_metrics {
        virtio.metrics.share_with(handle);
    }

    let mut supported_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmError::kvm("reading the supported CPUID"))?;
    if kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer) {
        boot::cpuid::advertise_tsc_deadline(&mut supported_cpuid);
    }

    let boot_plan = boot_sequence::BootPlan {
        mem_bytes,
        num_cpus,
        virtio_windows: virtio_devices
            .iter()
            .map(|d| (d.slot.base, d.slot.len, d.slot.irq))
            .collect(),
    };
    let entry = boot_sequence::write_boot_structures(&mem, payload, &boot_plan)?;
    let boot_state = vcpu::BootState {
        supported_cpuid: &supported_cpuid,
        entry,
        num_cpus,
    };
    let vcpus = (0..num_cpus)
        .map(|i| vcpu::create_vcpu(&vm, i, &boot_state))
        .collect::<Result<Vec<_>, _>>()?;

    let owns_terminal = options.console.owns_terminal();
    signals::install_handlers(owns_terminal)?;
    let _raw_mode = owns_terminal.then(RawModeGuard::enter);
    // A controller watching the run (the API) gets the vCPUs' exits counted live.
    let watched = options.running.as_ref().map(|running| {
        (
            running.clone(),
            Arc::new(exit_counts::ExitCounts::new(num_cpus)),
        )
    });
    let shared = vcpu::VcpuShared {
        io_bus: Arc::new(devices.io_bus),
        mmio_bus: Arc::new(devices.mmio_bus),
        stop: devices.stop.clone(),
        pvm_host,
        exit_counts: watched.as_ref().map(|(_, counts)| counts.clone()),
    };
    let filters = match options.no_seccomp {
        true => None,
        false => {
            seccomp::start_spawner()?;
            Some(ThreadFilters {
                vcpu: Arc::new(seccomp::compile(seccomp::ThreadKind::Vcpu)?),
                events: seccomp::compile(seccomp::ThreadKind::Events)?,
            })
        }
    };
    let threads = spawn_vcpus(
        vcpus,
        &shared,
        options.trace_exits,
        filters.as_ref().map(|f| f.vcpu.clone()),
    )?;
    // Marks the run ended when this function leaves, however it leaves.
    let _ended = watched.map(|(running, exit_counts)| {
        running.started(running::VmHandles {
            i8042: devices.i8042.clone(),
            balloon: virtio.balloon.clone(),
            device_metrics: virtio.metrics.clone(),
            exit_counts,
            boot_time: devices.boot_time.clone(),
            mem_mib: config.mem_mib,
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

    if let Some(balloon) = &virtio.balloon {
        eprintln!("vmm: {}", virtio_setup::balloon_summary(balloon));
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
    events: seccompiler::BpfProgram,
}

/// Starts the vCPU threads; with `filter`, each confines itself before its first KVM_RUN.
fn spawn_vcpus(
    vcpus: Vec<kvm_ioctls::VcpuFd>,
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
    filter: Option<seccompiler::BpfProgram>,
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
