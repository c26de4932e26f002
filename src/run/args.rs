//! `vmm run`'s command line, and how its options map onto each isolation level: the
//! workload's configuration (the runtime's own, used on the host and sent to the guest
//! agent alike), the size of the microVM, and the options a level does not apply.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use runtime::config::ContainerConfig;
use runtime::options::{
    baseline_config_from_options, config_from_options, parse_bytes, parse_cpus, parse_env,
    CpuFraction, NetMode, RunOptions,
};

use super::error::RunError;

/// Guest RAM of a microVM when neither `--vm-mem` nor (at the `vm` level) `--memory` says.
pub const DEFAULT_VM_MEM_MIB: u64 = 256;
/// The smallest microVM `vmm run` boots: the microVM kernel, the agent and a small
/// workload fit in it, with a tmpfs for the workload's writes (measured in the nested
/// tier: the kernel and agent use about 20 MiB).
pub const MIN_VM_MEM_MIB: u64 = 64;
/// At `vm+container`, RAM the guest keeps beyond the container's `--memory` limit, for
/// its kernel, the agent and the page cache.
pub const VM_CONTAINER_HEADROOM_MIB: u64 = 64;

/// Where the workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// On the host, chrooted into the rootfs, no isolation: the baseline. It shares the
    /// host's PID, network, IPC, UTS and user namespaces; its only namespace is a private
    /// mount namespace holding the host's /proc, /sys and /dev bound into the rootfs.
    Process,
    /// On the host, in a container: namespaces, pivot_root, a cgroup with the limits
    /// (what `vmm container run` does).
    Container,
    /// In a fresh microVM, as a plain process of the guest (the baseline, inside a VM):
    /// --memory and --cpus size the VM.
    Vm,
    /// In a fresh microVM, inside a container that the same runtime makes in the guest
    /// (cgroup v2 there): --memory, --pids and --cpus are the container's limits.
    #[value(name = "vm+container")]
    VmContainer,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Container => "container",
            Isolation::Vm => "vm",
            Isolation::VmContainer => "vm+container",
        }
    }

    pub fn in_vm(self) -> bool {
        matches!(self, Isolation::Vm | Isolation::VmContainer)
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Network of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetArg {
    /// Only a loopback interface (a new network namespace, or a VM without a NIC).
    None,
    /// The host's network (the process and container levels only).
    Host,
    /// A point-to-point link to the host: a veth pair at the container level, a TAP
    /// device and a virtio-net NIC at the vm level (at vm+container the NIC is moved into
    /// the container's network namespace): a free /30 of 10.231.0.0/16, its second
    /// address the workload's eth0, its first the host's end and the workload's default
    /// gateway. Not at the process level (it shares the host's network), not with
    /// --vm-socket.
    Link,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where the workload runs.
    #[arg(long, value_enum)]
    pub isolation: Isolation,
    /// Root filesystem of the workload, a directory. The VM levels pack it into a
    /// read-only ext4 image (cached, keyed by the tree's contents) that the guest mounts
    /// under an overlay, so the workload can write and its writes vanish with it.
    #[arg(long, value_name = "DIR", required_unless_present_any = ["bundle", "vm_socket"])]
    pub rootfs: Option<PathBuf>,
    /// Name of the workload: its container and cgroup, in the guest too [default:
    /// vmm-<pid>].
    #[arg(long, value_name = "ID")]
    pub name: Option<String>,
    // At the container level, where the run holds its name while it lives (as `vmm
    // container run` does).
    #[command(flatten)]
    pub state: crate::container::cli::StateRoot,
    /// An OCI bundle (config.json and its rootfs) instead of --rootfs and the options
    /// that shape the workload.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "rootfs", "hostname", "memory", "pids", "cpus", "env", "workdir", "net", "command",
    ])]
    pub bundle: Option<PathBuf>,
    /// Memory: a cgroup limit at the container levels, the VM's RAM at the vm level
    /// (at least 64m there). k, m, g suffixes (powers of 1024) [default: none; a VM gets
    /// 256 MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub memory: Option<i64>,
    /// Maximum number of processes and threads (a cgroup limit, in the guest at the VM
    /// levels) [default: none].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub pids: Option<i64>,
    /// CPU bandwidth in CPUs, e.g. 0.5: a cgroup quota at the container levels, the VM's
    /// vCPU count (rounded up) at the vm level [default: none; a VM gets 1 vCPU].
    #[arg(long, value_name = "FRACTION", value_parser = parse_cpus)]
    pub cpus: Option<CpuFraction>,
    /// Hostname: the container's, or the guest's at the vm level [default: the container
    /// name at the container levels; the host's at the process level].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Set an environment variable (PATH defaults to the usual system directories).
    #[arg(long, value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Working directory of the workload (absolute).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub workdir: PathBuf,
    /// Network: only loopback (none); the host's (host: not at the VM levels, a VM has
    /// its own network stack); or a point-to-point link to the host (link: at the
    /// container and vm levels; a TAP named vmm<pid> at the vm level, which needs
    /// CAP_NET_ADMIN) [default: none; the process level always has the host's].
    #[arg(long, value_enum, value_name = "MODE")]
    pub net: Option<NetArg>,
    /// Guest kernel for the VM levels (an ELF vmlinux or a bzImage) [default: the microVM
    /// kernel that resources/build-images.sh --kernel builds].
    #[arg(long, value_name = "VMLINUX")]
    pub kernel: Option<PathBuf>,
    /// Guest initramfs holding the agent, for the VM levels [default: the one that
    /// resources/build-images.sh builds].
    #[arg(long, value_name = "AGENT_INITRAMFS")]
    pub initrd: Option<PathBuf>,
    /// Guest RAM in MiB for the VM levels (at least 64) [default: --memory at the vm
    /// level, else 256; at vm+container at least --memory + 64].
    #[arg(long, value_name = "MIB")]
    pub vm_mem: Option<u64>,
    /// vCPUs of the VM levels [default: --cpus rounded up, else 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub vm_cpus: Option<u16>,
    /// Run in the microVM already serving this vsock socket (started with
    /// `vmm --initrd <agent initramfs> --vsock cid=N,uds=PATH --disk ROOTFS.ext4,ro`)
    /// instead of booting a fresh one; its first disk is the workload's rootfs.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["rootfs", "kernel", "initrd", "vm_mem", "vm_cpus"])]
    pub vm_socket: Option<PathBuf>,
    /// Start the microVM from a warm snapshot (a guest whose agent already waits) instead
    /// of booting it: the first run for a kernel, initramfs and VM size (with or without
    /// `--net link`'s NIC) boots once and keeps the snapshot in ~/.cache/vmm/snapshots;
    /// later runs restore it, swap the workload's rootfs in for its placeholder disk and
    /// put the NIC on their own TAP. For the vm and vm+container levels.
    #[arg(long, conflicts_with = "vm_socket")]
    pub from_snapshot: bool,
    /// Print on stderr, at the end, when each phase of the run ended (ms since start).
    #[arg(long)]
    pub timings: bool,
    /// Seconds the guest agent may take to answer after the VM starts.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub boot_timeout: u64,
    /// For vmm-runc: once the workload is created in the guest, write one byte to this
    /// descriptor and close it, then hold the workload until --hold-until's FIFO is
    /// opened for reading (an OCI runtime's `start`).
    #[arg(long, value_name = "FD", hide = true, requires = "hold_until")]
    pub ready_fd: Option<i32>,
    /// For vmm-runc: the exec FIFO whose opening by `start` lets the workload run.
    #[arg(long, value_name = "FIFO", hide = true)]
    pub hold_until: Option<PathBuf>,
    /// For vmm-runc's `exec` at the VM levels: instead of a new workload, run the process
    /// in --exec-process in the running workload ID of the VM at --vm-socket.
    #[arg(long, value_name = "ID", hide = true, requires_all = ["vm_socket", "exec_process"])]
    pub exec_in: Option<String>,
    /// For --exec-in: the process, as JSON of the runtime's process config.
    #[arg(long, value_name = "FILE", hide = true, requires = "exec_in")]
    pub exec_process: Option<PathBuf>,
    /// For --exec-in: the process gets a terminal in the guest, relayed on this run's
    /// stdin and stdout (vmm-runc makes them a terminal too).
    #[arg(long, hide = true, requires = "exec_in")]
    pub exec_terminal: bool,
    /// The command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The OCI `create` hold (vmm-runc), when asked for.
    pub fn hold(&self) -> Option<super::session::Hold> {
        self.hold_until.as_ref().map(|fifo| super::session::Hold {
            fifo: fifo.clone(),
            ready_fd: self.ready_fd,
        })
    }
}

/// The microVM's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    pub mem_mib: u64,
    pub cpus: u16,
}

/// The runtime's options for `--rootfs` runs.
fn run_options(args: &RunArgs) -> RunOptions {
    // With --vm-socket the rootfs is the VM's own disk, and the agent puts its root in
    // place of this one.
    let rootfs = match (&args.rootfs, &args.vm_socket) {
        (Some(dir), _) => dir.clone(),
        (None, Some(_)) => PathBuf::from("/"),
        (None, None) => PathBuf::new(),
    };
    let mut options = RunOptions::new(rootfs, args.command.clone());
    options.name = args.name.clone();
    options.hostname = args.hostname.clone();
    options.memory = args.memory;
    options.pids = args.pids;
    options.cpus = args.cpus;
    options.net = match args.net {
        Some(NetArg::Host) => NetMode::Host,
        // A VM's link is its NIC, which the host and the guest agent set up: the workload
        // itself only shares the guest's network (see `host_link`).
        Some(NetArg::Link) if args.isolation.in_vm() => NetMode::None,
        Some(NetArg::Link) => NetMode::Link,
        Some(NetArg::None) | None => NetMode::None,
    };
    options.env = args.env.clone();
    options.workdir = args.workdir.clone();
    options
}

/// The workload as it runs at `args.isolation`. For the VM levels its rootfs is the
/// host's directory; the guest agent puts its own root there.
pub fn workload_config(args: &RunArgs) -> Result<ContainerConfig, RunError> {
    check_level_options(args)?;
    let level = args.isolation;
    let container = match &args.bundle {
        Some(bundle) => {
            let mut config = runtime::spec::config_from_bundle(bundle)?;
            if let Some(name) = &args.name {
                runtime::options::check_id(name)?;
                config.id = name.clone();
            }
            config
        }
        None if matches!(level, Isolation::Process | Isolation::Vm) => {
            baseline_config_from_options(&run_options(args))?
        }
        None => config_from_options(&run_options(args))?,
    };
    let mut config = match level {
        Isolation::Process | Isolation::Vm if args.bundle.is_some() => {
            runtime::options::make_baseline(container)
        }
        _ => container,
    };
    if level == Isolation::Vm {
        // The VM is the boundary: its RAM and vCPUs are the limits. The workload still
        // gets a cgroup of its own in the guest, for --pids and to learn of an OOM kill.
        config.cgroup = true;
        config.resources = runtime::config::Resources {
            pids: config.resources.pids.or(args.pids),
            ..Default::default()
        };
        // The guest's own hostname (the agent sets it: the workload shares the guest's
        // UTS namespace).
        config.hostname = args.hostname.clone().or(config.hostname);
    }
    if level.in_vm() {
        super::vm_mounts::adapt(&mut config)?;
    }
    Ok(config)
}

/// Refuses options that cannot work at the chosen level.
fn check_level_options(args: &RunArgs) -> Result<(), RunError> {
    let level = args.isolation;
    if level.in_vm() && args.net == Some(NetArg::Host) {
        return Err(RunError::BadInput(format!(
            "--net host is not possible at the {} level: a VM has its own network stack \
             (use --net none, or --isolation container)",
            level.name()
        )));
    }
    if args.net == Some(NetArg::Link) {
        check_link(args)?;
    }
    if !level.in_vm() {
        for (given, flag) in [
            (args.kernel.is_some(), "--kernel"),
            (args.initrd.is_some(), "--initrd"),
            (args.vm_mem.is_some(), "--vm-mem"),
            (args.vm_cpus.is_some(), "--vm-cpus"),
            (args.vm_socket.is_some(), "--vm-socket"),
            (args.from_snapshot, "--from-snapshot"),
        ] {
            if given {
                return Err(RunError::BadInput(format!(
                    "{flag} applies to the vm and vm+container levels, not to {}",
                    level.name()
                )));
            }
        }
    }
    if args.vm_socket.is_some() && args.bundle.is_some() {
        return Err(RunError::BadInput(
            "--vm-socket runs in a VM whose first disk is the rootfs: --bundle cannot be used \
             with it"
                .into(),
        ));
    }
    Ok(())
}

/// Where `--net link` cannot work.
fn check_link(args: &RunArgs) -> Result<(), RunError> {
    let refusal = match args.isolation {
        Isolation::Process => {
            "--net link is not possible at the process level: the process level shares the \
             host's network (use --isolation container or vm)"
        }
        Isolation::Vm if args.vm_socket.is_some() => {
            "--net link cannot be used with --vm-socket: the link's NIC is a device the VM \
             gets when it boots (start that VM with `vmm --net tap=NAME` instead)"
        }
        Isolation::Container | Isolation::Vm | Isolation::VmContainer => return Ok(()),
    };
    Err(RunError::BadInput(refusal.into()))
}

/// Options given that the level does not apply, each with why: printed as warnings, so a
/// script can run one command line at every level and still be told.
pub fn ignored_options(args: &RunArgs) -> Vec<String> {
    let mut ignored = Vec::new();
    if args.isolation == Isolation::Process {
        for (given, flag) in [
            (args.memory.is_some(), "--memory"),
            (args.pids.is_some(), "--pids"),
            (args.cpus.is_some(), "--cpus"),
        ] {
            if given {
                ignored.push(format!(
                    "{flag} is not applied at the process level (no isolation: the baseline)"
                ));
            }
        }
        if args.hostname.is_some() {
            ignored.push(
                "--hostname is not applied at the process level (it shares the host's UTS \
                 namespace)"
                    .into(),
            );
        }
        if args.net == Some(NetArg::None) {
            ignored.push(
                "--net none is not applied at the process level (it shares the host's \
                 network)"
                    .into(),
            );
        }
    }
    if args.isolation == Isolation::Vm && args.vm_mem.is_some() && args.memory.is_some() {
        ignored.push("--memory is not applied: --vm-mem sizes the VM".into());
    }
    ignored
}

/// The microVM for a VM level: RAM and vCPUs from `--vm-mem`/`--vm-cpus`, else from
/// `--memory`/`--cpus` (the `vm` level) or sized around the container's limit
/// (`vm+container`).
pub fn vm_size(args: &RunArgs) -> Result<VmSize, RunError> {
    let memory_mib = args.memory.map(|bytes| (bytes as u64).div_ceil(1 << 20));
    let mem_mib = match (args.vm_mem, args.isolation, memory_mib) {
        (Some(mib), _, _) => mib,
        (None, Isolation::Vm, Some(mib)) => mib,
        (None, Isolation::VmContainer, Some(mib)) => {
            DEFAULT_VM_MEM_MIB.max(mib + VM_CONTAINER_HEADROOM_MIB)
        }
        (None, _, _) => DEFAULT_VM_MEM_MIB,
    };
    if mem_mib < MIN_VM_MEM_MIB {
        let source = if args.vm_mem.is_some() {
            "--vm-mem"
        } else {
            "--memory"
        };
        return Err(RunError::BadInput(format!(
            "{source} gives the VM {mem_mib} MiB, below the {MIN_VM_MEM_MIB} MiB that the \
             guest kernel, the agent and a workload need"
        )));
    }
    let cpus = match (args.vm_cpus, args.cpus) {
        (Some(n), _) => n,
        (None, Some(CpuFraction(c))) => c.ceil().clamp(1.0, f64::from(u16::MAX)) as u16,
        (None, None) => 1,
    };
    Ok(VmSize { mem_mib, cpus })
}

#[cfg(test)]
mod tests;
