//! `vmm run`: one workload at one of four isolation levels: on the host as a plain
//! chrooted process (the baseline) or in a container, and in a fresh microVM as a plain
//! process or in a container made there by the same runtime (through the guest agent).

pub mod agent_client;
pub mod args;
mod background_vm;
mod command_check;
pub mod error;
mod file_identity;
mod from_snapshot;
mod host_link;
pub mod images;
pub mod rootfs_image;
mod run_dir;
mod session;
mod signals;
mod timings;
mod vm_mounts;
mod warm_snapshot;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agent_protocol::protocol::{RootfsSource, WaitReply};
use edge::{error_chain, exit_code};
use runtime::config::ContainerConfig;

use crate::vm::device_specs::{DeviceSpecs, DiskSpec, VsockSpec};
use crate::vm::VmConfig;
use args::{Isolation, NetArg, RunArgs};
use background_vm::BackgroundVm;
use error::RunError;
use host_link::HostLink;
use session::{Interrupted, Watch};
use signals::ForwardedSignals;
use timings::Timings;

/// The vsock socket's name in the run's directory.
const VSOCK_SOCKET: &str = "vsock.sock";

/// Where the `vmm run` process `pid` (of this host, same temporary directory) serves its
/// VM's vsock: how vmm-runc's `exec` reaches the agent of a container's microVM.
pub(crate) fn vm_socket_of_run(pid: u32) -> PathBuf {
    run_dir::RunDir::path_of(pid).join(VSOCK_SOCKET)
}

/// The guest's CID on the run's vsock device.
const GUEST_CID: u64 = 3;
/// The device the workload's rootfs image is in the guest: the run's only disk.
const GUEST_ROOTFS_DEVICE: &str = "/dev/vda";
/// That disk's drive id (a warm snapshot's placeholder is swapped by it).
const ROOTFS_DRIVE: &str = "rootfs";
/// The guest kernel's command line: `quiet` because every console byte is a VM exit,
/// `panic=-1` so a guest that panics (or whose agent dies) ends the VM at once.
const GUEST_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet";
/// After the agent connection broke, how long the VM may take to end before the broken
/// connection is reported instead of the VM's end.
const VM_END_GRACE: Duration = Duration::from_secs(2);
/// How long a `--vm-socket` that does not exist yet may take to appear (a VMM started just
/// before binds it within milliseconds) before it counts as a wrong path.
const SOCKET_GRACE: Duration = Duration::from_secs(2);

pub fn run(args: &RunArgs, started: Instant) -> ExitCode {
    for warning in args::ignored_options(args) {
        eprintln!("vmm: warning: {warning}");
    }
    let timings = Timings::new(started, args.timings);
    let result = if args.hold_until.is_some()
        && (!args.isolation.in_vm() || args.vm_socket.is_some())
    {
        Err(RunError::BadInput(
            "--hold-until (vmm-runc's) is for the vm and vm+container levels in a microVM of this run".into(),
        ))
    } else if let (Some(target), Some(uds)) = (&args.exec_in, &args.vm_socket) {
        exec_in_running_vm(args, uds, target, &timings)
    } else if args.isolation.in_vm() {
        run_in_vm(args, &timings)
    } else {
        run_on_host(args, &timings)
    };
    timings.mark("done");
    if let Some(line) = timings.report() {
        eprintln!("{line}");
    }
    match result {
        Ok(ended) => {
            if ended.oom_killed {
                eprintln!(
                    "vmm: the workload was killed by the OOM killer{}",
                    match (args.isolation, args.memory) {
                        (Isolation::Vm, _) => " (the guest ran out of memory)".to_owned(),
                        (_, Some(bytes)) => format!(" (memory limit {bytes} bytes)"),
                        (_, None) => String::new(),
                    }
                );
            }
            ExitCode::from(ended.status)
        }
        Err(e) => {
            let message = error_chain(&e);
            if let Some(hold) = args.hold() {
                hold.report_failure(&message);
            }
            eprintln!("vmm: error: {message}");
            ExitCode::from(exit_code::of_error(e.is_bad_input()))
        }
    }
}

/// The process and container levels: the runtime, on this host.
fn run_on_host(args: &RunArgs, timings: &Timings) -> Result<WaitReply, RunError> {
    let config = args::workload_config(args)?;
    timings.mark("checked");
    // A cgroup on the host (the container level) is held by its name, as `vmm container
    // run` holds it; the process level makes none.
    let outcome = if config.cgroup {
        runtime::run_state::run(&args.state.dir, &config)?
    } else {
        runtime::launch::run(&config)?
    };
    timings.mark("ended");
    Ok(WaitReply {
        status: outcome.status,
        signal: outcome.signal,
        oom_killed: outcome.oom_killed,
    })
}

/// The vm and vm+container levels: a fresh microVM (or the one at `--vm-socket`), and the
/// workload run there by the guest agent.
fn run_in_vm(args: &RunArgs, timings: &Timings) -> Result<WaitReply, RunError> {
    let level = args.isolation.name();
    let mut config = args::workload_config(args)?;
    if let Some(uds) = &args.vm_socket {
        return run_in_running_vm(args, uds, config, timings);
    }
    let size = args::vm_size(args)?;
    command_check::check_command_in_rootfs(&config)?;
    // Only the vm level gets here with a link (args refuses it at vm+container).
    let link = match args.net {
        Some(NetArg::Link) => Some(HostLink::plan()?),
        _ => None,
    };
    if let (Some(link), true) = (&link, config.namespaces.net) {
        // At vm+container the VM's NIC is the container's link: the guest's runtime moves
        // it into the container's network namespace (no veth in the guest).
        config.net_link = Some(link.guest_nic_as_container_link());
    }
    check_can_boot_linux(level)?;
    let images = images::resolve(args.kernel.as_deref(), args.initrd.as_deref())?;
    crate::vm::loader::KernelImage::open(&images.kernel)?;
    timings.mark("checked");

    // Blocked before the VM's threads start, so that they inherit the mask.
    let signals = ForwardedSignals::block().map_err(RunError::io("block signals"))?;
    let dir = run_dir::RunDir::create().map_err(RunError::io("create the run directory"))?;
    let uds = dir.path().join(VSOCK_SOCKET);
    let image_of_rootfs = || {
        let image = rootfs_image::image_for(&config.rootfs, &|line| eprintln!("vmm: {line}"))?;
        timings.mark("rootfs image");
        Ok::<_, RunError>(image)
    };
    let (mut vm, swapped_bytes) = if args.from_snapshot {
        // The VM is restored on its thread while this one finds (or packs) the image.
        let nic = link.as_ref().map(HostLink::net_spec);
        let pending = from_snapshot::begin(&images, size, nic, &uds, args.boot_timeout, timings)?;
        let image = image_of_rootfs()?;
        let bytes = disk_bytes(&image)?;
        (pending.finish(&image, timings)?, Some(bytes))
    } else {
        let image = image_of_rootfs()?;
        let mut config = run_vm_config(images.kernel, images.initrd, size, image, &uds);
        // The link's TAP, created by the VM and deleted with it (see `host_link`).
        config.devices.nets = link.iter().map(HostLink::net_spec).collect();
        (BackgroundVm::start(config, None)?, None)
    };
    timings.mark("vm started");
    let workload = GuestWorkload {
        config,
        rootfs: guest_rootfs(swapped_bytes),
        link: link.as_ref(),
    };
    let result = connect_and_run(args, &uds, workload, &signals, &mut vm, timings);
    if result.is_ok() {
        // The workload's end is the run's: this process exits next, and its exit ends the
        // VM. A failed run stops the VM first, so that nothing of it outlives the error.
        vm.stop_at_exit();
        timings.mark("vm let go");
    } else {
        vm.stop();
        timings.mark("vm stopped");
    }
    result
}

/// What the guest agent runs: the workload, its rootfs there, and the link if any.
struct GuestWorkload<'a> {
    config: ContainerConfig,
    rootfs: RootfsSource,
    link: Option<&'a HostLink>,
}

fn connect_and_run(
    args: &RunArgs,
    uds: &Path,
    workload: GuestWorkload<'_>,
    signals: &ForwardedSignals,
    vm: &mut BackgroundVm,
    timings: &Timings,
) -> Result<WaitReply, RunError> {
    let control = match connect_agent(args, uds, signals, Some(vm), timings)? {
        Connected::Agent(control) => control,
        Connected::StoppedBy(sig) => return Ok(stopped_before_start(sig)),
    };
    let GuestWorkload {
        config,
        rootfs,
        link,
    } = workload;
    // The guest runs: the VM made its TAP before it booted.
    if let Some(link) = link {
        link.configure_host_end()?;
        timings.mark("link up");
    }
    let hold = args.hold();
    let watch = Watch {
        signals,
        vm_ended: Some(vm.ended_fd()),
        hold: hold.as_ref(),
    };
    // The agent configures the guest's own eth0 only for a workload that shares the
    // guest's network (vm); a container's (vm+container) is configured in its namespace.
    let link = link
        .filter(|_| config.net_link.is_none())
        .map(HostLink::addresses);
    match session::run_workload(uds, control, config, rootfs, link, &watch, timings) {
        Ok(ended) => Ok(ended),
        Err(Interrupted::VmEnded) => Err(vm.ended_error()),
        Err(Interrupted::Error(e)) => {
            // A broken agent connection is most often the VM going down: say why it did.
            let deadline = Instant::now() + VM_END_GRACE;
            while !vm.has_ended() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if vm.has_ended() && matches!(e, RunError::AgentGone { .. }) {
                Err(vm.ended_error())
            } else {
                Err(e)
            }
        }
    }
}

/// `--vm-socket`: the workload runs in a VM someone else started; its rootfs is that VM's
/// first disk.
fn run_in_running_vm(
    args: &RunArgs,
    uds: &Path,
    config: ContainerConfig,
    timings: &Timings,
) -> Result<WaitReply, RunError> {
    in_running_vm(args, uds, timings, |control, watch| {
        session::run_workload(
            uds,
            control,
            config,
            guest_rootfs(None),
            None,
            watch,
            timings,
        )
    })
}

/// `--exec-in` (vmm-runc's `exec`): the process in `--exec-process` runs in the workload
/// `target` of the VM at `uds`; its streams, signals and status are this run's.
fn exec_in_running_vm(
    args: &RunArgs,
    uds: &Path,
    target: &str,
    timings: &Timings,
) -> Result<WaitReply, RunError> {
    let process = match &args.exec_process {
        Some(path) => read_process(path)?,
        None => return Err(RunError::BadInput("--exec-in needs --exec-process".into())),
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("exec-{}", std::process::id()));
    in_running_vm(args, uds, timings, |control, watch| {
        let exec = session::Exec {
            name: &name,
            target,
            process,
            terminal: args.exec_terminal,
        };
        session::run_exec(uds, control, exec, watch, timings)
    })
}

/// Runs `session` against the agent of the VM at `uds`, which this run does not own: with
/// signals passed on, and the agent's going away as the end.
fn in_running_vm(
    args: &RunArgs,
    uds: &Path,
    timings: &Timings,
    session: impl FnOnce(agent_client::Control, &Watch) -> Result<WaitReply, Interrupted>,
) -> Result<WaitReply, RunError> {
    let signals = ForwardedSignals::block().map_err(RunError::io("block signals"))?;
    let control = match connect_running_vm(args, uds, &signals, timings)? {
        Connected::Agent(control) => control,
        Connected::StoppedBy(sig) => return Ok(stopped_before_start(sig)),
    };
    let watch = Watch {
        signals: &signals,
        vm_ended: None,
        hold: None,
    };
    // The agent's going away ends a run in a VM this run does not own.
    match session(control, &watch) {
        Ok(ended) => Ok(ended),
        Err(Interrupted::VmEnded) => Err(RunError::AgentGone {
            during: "the run",
            source: None,
        }),
        Err(Interrupted::Error(e)) => Err(e),
    }
}

/// The process of `--exec-process`: JSON of the runtime's process config, at most 1 MiB.
fn read_process(path: &Path) -> Result<runtime::config::ProcessConfig, RunError> {
    let bad = |why: String| RunError::BadInput(format!("--exec-process {path:?}: {why}"));
    // The error's text starts with the path. vmm-runc passes the process on a pipe.
    let file =
        devices::user_file::open(path, false, devices::user_file::Allowed::RegularFileOrPipe)
            .map_err(|e| RunError::BadInput(format!("--exec-process {e}")))?;
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, 1 << 20), &mut text)
        .map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| bad(format!("does not parse: {e}")))
}

/// The agent behind `--vm-socket`, once the socket exists (a VMM started just before this
/// command may not have bound it yet).
fn connect_running_vm(
    args: &RunArgs,
    uds: &Path,
    signals: &ForwardedSignals,
    timings: &Timings,
) -> Result<Connected, RunError> {
    let appear_by = Instant::now() + SOCKET_GRACE;
    while !uds.exists() && Instant::now() < appear_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !uds.exists() {
        return Err(RunError::BadInput(format!(
            "--vm-socket {uds:?}: no such socket (start the VM with `vmm --vsock cid=N,uds=PATH` first)"
        )));
    }
    connect_agent(args, uds, signals, None, timings)
}

enum Connected {
    Agent(agent_client::Control),
    /// SIGINT, SIGTERM, ... came before the agent answered.
    StoppedBy(i32),
}

/// The microVM of a VM-level run: `kernel` with the agent's `initrd`, `size`, the disk
/// `rootfs` read-only as drive [`ROOTFS_DRIVE`] and vsock at `uds`. A warm snapshot's
/// maker builds the same VM around its placeholder disk, so that a restore has the
/// devices a run expects.
fn run_vm_config(
    kernel: PathBuf,
    initrd: PathBuf,
    size: args::VmSize,
    rootfs: PathBuf,
    uds: &Path,
) -> VmConfig {
    VmConfig {
        kernel,
        mem_mib: size.mem_mib,
        cpus: size.cpus,
        cmdline: GUEST_CMDLINE.into(),
        initrd: Some(initrd),
        devices: DeviceSpecs {
            disks: vec![DiskSpec {
                path: rootfs,
                read_only: true,
                id: Some(ROOTFS_DRIVE.into()),
                rate_limiter: None,
            }],
            vsock: Some(VsockSpec {
                guest_cid: GUEST_CID,
                uds_path: uds.to_owned(),
            }),
            ..Default::default()
        },
        boot_timer: None,
    }
}

/// Connects to the agent behind `uds`, retrying while it does not listen yet (the guest
/// boots), until `--boot-timeout`, the end of our VM, or a signal that ends the run.
fn connect_agent(
    args: &RunArgs,
    uds: &Path,
    signals: &ForwardedSignals,
    mut vm: Option<&mut BackgroundVm>,
    timings: &Timings,
) -> Result<Connected, RunError> {
    let deadline = Instant::now() + Duration::from_secs(args.boot_timeout);
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(vm) = vm.as_deref_mut().filter(|vm| vm.has_ended()) {
            return Err(vm.ended_error());
        }
        if let Some(sig) = signals.take().filter(|&s| signals::ends_the_run(s)) {
            return Ok(Connected::StoppedBy(sig));
        }
        if let Some((control, _hello)) = agent_client::Control::connect(uds, Some(timings))? {
            timings.mark("agent answered");
            return Ok(Connected::Agent(control));
        }
        if Instant::now() >= deadline {
            let console = vm.as_deref().map_or(Vec::new(), BackgroundVm::console_tail);
            return Err(RunError::BootTimeout {
                secs: args.boot_timeout,
                console: error::console_suffix(&console),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn stopped_before_start(sig: i32) -> WaitReply {
    eprintln!("vmm: stopped by signal {sig} before the workload started");
    WaitReply {
        status: exit_code::signalled(sig),
        signal: Some(sig),
        oom_killed: false,
    }
}

/// The workload's rootfs in the guest: the run's only disk, the ext4 image packed here.
/// `swapped_bytes`: the image's size, when it was swapped in for a warm snapshot's
/// placeholder just before (the agent waits for the guest to see it).
fn guest_rootfs(swapped_bytes: Option<u64>) -> RootfsSource {
    RootfsSource::Disk {
        device: PathBuf::from(GUEST_ROOTFS_DEVICE),
        fstype: "ext4".into(),
        bytes: swapped_bytes,
    }
}

/// The size of the workload's image, which the agent waits to see after a swap.
fn disk_bytes(image: &Path) -> Result<u64, RunError> {
    std::fs::metadata(image)
        .map(|m| m.len())
        .map_err(RunError::io("read the size of the rootfs image"))
}

/// Refuses at once on a host whose KVM cannot boot unmodified Linux (PVM).
pub(crate) fn check_can_boot_linux(level: &'static str) -> Result<(), RunError> {
    let kvm = crate::host::open_kvm().map_err(|e| RunError::CannotBootLinux {
        level,
        reason: e.to_string(),
    })?;
    if crate::host::pvm_detected(Some(&kvm)) {
        return Err(RunError::CannotBootLinux {
            level,
            reason: "its KVM is PVM (kvm_pvm), a software virtualization whose instruction \
                     emulator cannot run unmodified Linux (see `vmm doctor`); the process and \
                     container levels work here"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::*;

    fn sample_process() -> runtime::config::ProcessConfig {
        let options = runtime::options::RunOptions::new(std::env::temp_dir(), vec!["true".into()]);
        runtime::options::config_from_options(&options)
            .unwrap()
            .process
    }

    #[test]
    fn exec_process_comes_from_a_pipe_as_vmm_runc_passes_it() {
        let mut fds = [0; 2];
        // SAFETY: a writable array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 made both; nothing else owns them.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let process = sample_process();
        std::fs::File::from(w)
            .write_all(&serde_json::to_vec(&process).unwrap())
            .unwrap();
        let path = PathBuf::from(format!("/proc/self/fd/{}", r.as_raw_fd()));
        assert_eq!(read_process(&path).unwrap(), process);
    }

    #[test]
    fn exec_process_from_a_fifo_without_a_writer_fails_at_once() {
        let fifo = std::env::temp_dir().join(format!("vmm-exec-fifo-{}", std::process::id()));
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let result = read_process(&fifo);
        let _ = std::fs::remove_file(&fifo);
        let message = edge::error_chain(&result.unwrap_err());
        assert!(message.contains("does not parse"), "{message}");
    }

    #[test]
    fn exec_process_that_is_a_directory_is_refused() {
        let message = edge::error_chain(&read_process(Path::new("/")).unwrap_err());
        assert!(message.contains("is a directory"), "{message}");
    }
}
