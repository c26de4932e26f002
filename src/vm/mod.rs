//! Building and running one VM, top-down: check the input, map guest memory and start
//! copying the kernel into it, create the VM, wire the devices, write the boot structures
//! (`boot_sequence`, the only writer of guest memory before the guest runs), then
//! (`running`) start the vCPUs, wait for the VM to stop, and tear down. A VM restored from
//! a snapshot (`restore`) is built from its state instead and runs the same way. Details
//! live in the submodules, `boot/` and `devices/`.

mod boot_sequence;
pub mod config_file;
pub mod config_sections;
mod console_input;
pub mod console_log;
pub mod control;
pub mod device_metrics;
mod device_slots;
pub mod device_specs;
mod devices_setup;
mod disk_update;
pub mod error;
mod event_loop;
pub mod exit_counts;
pub mod exit_stats;
pub mod failure;
mod generation_id;
mod input;
mod kvm_setup;
pub mod loader;
pub mod memory;
mod outcome;
pub mod rate_limits;
pub mod restore;
mod run_built;
pub mod running;
pub mod seccomp;
mod signals;
pub mod snapshot;
pub mod spec_checks;
#[cfg(debug_assertions)]
mod test_seam;
mod vcpu;
mod virtio_setup;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use devices::StopSignal;
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;

pub use control::VmControl;
pub use device_metrics::DeviceMetrics;
pub use error::VmError;
pub use outcome::VmOutcome;
pub use restore::{restore_with, RestoreConfig};

/// A serial console on COM1, reboot through the i8042, and no reboot loop on panic.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";

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
    /// A control the caller keeps, to pause, resume and snapshot the VM from another
    /// thread ([`VmControl`]).
    pub control: Option<Arc<VmControl>>,
    /// Leave out the end-of-run lines on stderr that report no error (the balloon's
    /// summary), for a caller that runs VMs by the thousand (`vmm bench soak`).
    pub quiet: bool,
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
    let built = boot(config, &options)?;
    run_built::run_built(built, options)
}

/// Builds the VM of `config` in its boot state: guest RAM with the payload and boot
/// structures in it, the VM and its devices, and vCPUs at the kernel's entry.
fn boot(config: &VmConfig, options: &RunOptions) -> Result<run_built::BuiltVm, VmError> {
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
    let saved_cmdline = cmdline.clone();
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
    let mut devices =
        devices_setup::setup_devices(&vm, config.boot_timer, &options.console, stop, None)?;
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
    let save_spec = snapshot::SaveSpec::of(&kvm, &vm)?;
    Ok(run_built::BuiltVm {
        config: snapshot::SavedConfig {
            mem_mib: config.mem_mib,
            regions: snapshot::memory_file::layout(&mem),
            cpus: num_cpus,
            cmdline: saved_cmdline,
            boot_timer: config.boot_timer.is_some(),
            devices: config.devices.clone(),
        },
        vm: Arc::new(vm),
        mem,
        devices,
        virtio,
        vcpus,
        pvm_host,
        save_spec,
        start_paused: false,
        first_exit: None,
    })
}
