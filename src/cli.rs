//! Command-line interface. Every option documents its default, so `vmm --help` teaches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A micro-VM monitor on KVM.
///
/// Boots a Linux kernel (ELF vmlinux or bzImage) with a serial console on stdin/stdout.
/// The VM ends when the guest resets (exit status 0), writes a byte to the debug-exit
/// port 0xf4 (that byte is the exit status), or fails (exit status 1). Bad input: 2.
#[derive(Debug, Parser)]
#[command(
    name = "vmm",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(flatten)]
    pub vm: VmArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this host can do: KVM access, capabilities, PVM, cgroups, namespaces.
    Doctor {
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Boot the built-in test guest and print its conformance report.
    Demo(DemoArgs),
    /// Run one workload at an isolation level: a plain process or a container, on this
    /// host or in a fresh microVM.
    ///
    /// The same command line works at every level, so one workload can be compared
    /// across them: stdout and stderr arrive apart and byte-exact, stdin is passed
    /// through, SIGINT and SIGTERM reach the workload, and the exit status is the
    /// workload's (128+N when killed by signal N; an OOM kill is reported as such).
    /// The VM levels need a host that can boot Linux guests (`vmm doctor` says), the
    /// microVM kernel and the agent initramfs (resources/build-images.sh builds both).
    Run(Box<crate::run::args::RunArgs>),
    /// Compare isolation and cost at every level: one probe program run as a process, in
    /// a container, in a microVM and in a container in a microVM, side by side.
    ///
    /// Before the runs, the host plants canaries (a process, SysV shared memory and a
    /// message queue, a hostname, a file in /tmp, an abstract unix socket, a TCP port);
    /// the probe reports which it can see, its kernel and namespaces, privileges, memory
    /// limit, and kernel leaks. Each result has an expected value per level (`--list`);
    /// any other result is reported and makes the exit status 1. Benchmarks (start-up,
    /// memory, syscalls, fork+exec, CPU, memory bandwidth, file I/O, network) are
    /// medians of --runs fresh `vmm run`s. Needs root. On a host that cannot boot Linux
    /// guests the VM columns say why they are empty.
    Compare(Box<crate::compare::args::CompareArgs>),
    /// Teaching labs: guided exercises on namespaces, cgroups, VMs and containers, each
    /// step checked (`list`, `show N`, `check N|all`, `run N`).
    Lab(crate::lab::args::LabArgs),
    /// Run a process in a container: namespaces, pivot_root, cgroups, OCI bundles.
    Container {
        #[command(subcommand)]
        command: crate::container::cli::ContainerCommand,
    },
    /// Measure the VMM: start-up time and memory, with measured numbers.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of vCPUs for the demo VM.
    #[arg(long, default_value_t = 2)]
    pub cpus: u8,
    /// Write the built-in test guest (an ELF) to this file and exit, so it can be run with
    /// `vmm --kernel FILE`.
    #[arg(long, value_name = "FILE")]
    pub export_guest: Option<PathBuf>,
    /// Used by `vmm bench`: run no test, end at once, and report timings on stderr.
    #[arg(long, hide = true)]
    pub bench_run: bool,
    /// Guest memory in MiB (with --bench-run).
    #[arg(long, hide = true, default_value_t = 128)]
    pub mem: u64,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Start the built-in guest N times (process start → first guest instruction → exit)
    /// and report median/p95 wall time and peak RSS.
    Start {
        /// Number of measured runs.
        #[arg(long, default_value_t = 30)]
        runs: u32,
        /// Guest memory in MiB for each run.
        #[arg(long, default_value_t = 128)]
        mem: u32,
        /// Instead: what the seccomp filters and the jail cost. `vmm --kernel` of the
        /// built-in guest with its filters, with --no-seccomp and jailed (as root: --jail,
        /// uid and gid 65534), interleaved in one run; the median differences against the
        /// 1 ms budget.
        #[arg(long)]
        hardening: bool,
    },
    /// The virtio-blk path in-process: 4 KiB requests through the virtio-mmio transport
    /// and the block backend, against the host's own pread/pwrite on the same file.
    Blk {
        /// Number of requests per measurement.
        #[arg(long, default_value_t = 100_000)]
        requests: u32,
        /// Image to read (reads only); default: a 64 MiB temporary file, removed after.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Instead: limit the disk to this many bytes per second (as `--disk ...,bw=`) and
        /// measure the rate its reads get, against the limit.
        #[arg(long, value_name = "BYTES_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
        bw: Option<u64>,
        /// With --bw: how long to read at the limit, after the first second's worth (the
        /// full bucket) has gone.
        #[arg(long, default_value_t = 3, requires = "bw")]
        seconds: u32,
    },
    /// Container start: run → /bin/true → exit with our runtime and, when installed, crun
    /// and runc, on the same busybox rootfs, side by side.
    ContainerStart {
        /// Number of measured runs per runtime.
        #[arg(long, default_value_t = 40)]
        runs: u32,
    },
    /// One workload, /bin/true, at each isolation level: `vmm run` start → exit over N
    /// fresh processes per level, with medians and the ratios between levels.
    Run(crate::bench_run::BenchRunArgs),
    /// Restore from a snapshot N times (each a fresh `vmm --restore` process) and report
    /// process start → the restored guest's first exit, beside cold starts of the same
    /// guest (process start → its first instruction's write).
    Restore {
        /// Number of measured runs of each.
        #[arg(long, default_value_t = 30)]
        runs: u32,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 128)]
        mem: u32,
        /// Used by the bench itself: take the snapshot into DIR and exit (in a process of
        /// its own, so that the measuring process stays small: a child's peak RSS counts
        /// its parent's from before its exec).
        #[arg(long, hide = true, value_name = "DIR")]
        snapshot_to: Option<PathBuf>,
    },
    /// Leaks over a long run: N start/stop cycles of the built-in guest with every virtio
    /// device, and N container runs, in this process; open fds, threads, RSS, heap,
    /// mappings, mounts, and the cgroups, taps and state directories they made must be the
    /// same before and after (exit status 1 if anything grew). Needs root for the
    /// containers and the tap.
    Soak(crate::bench_soak::SoakArgs),
    /// The virtio-net path in-process: 1514-byte frames through the transport and the
    /// net device, over a socketpair standing in for the tap.
    Net {
        /// Number of frames per direction.
        #[arg(long, default_value_t = 200_000)]
        frames: u32,
    },
}

#[derive(Debug, Args)]
pub struct VmArgs {
    /// Kernel image to boot: an ELF vmlinux or a bzImage.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present_any = ["config_file", "api_sock", "restore"]
    )]
    pub kernel: Option<PathBuf>,

    /// Serve Firecracker's API (HTTP/1.1, JSON) on a unix socket at PATH. Without
    /// --kernel or --config-file the VMM waits for its configuration there and boots on
    /// `PUT /actions {"action_type": "InstanceStart"}`; with either, the VM boots at once
    /// and the API serves alongside. --mem, --cpus and --cmdline are the defaults of
    /// machine-config and boot-source. A stale socket at PATH is replaced; anything else
    /// there is refused. docs/api.md lists the endpoints.
    #[arg(long, value_name = "PATH")]
    pub api_sock: Option<PathBuf>,

    /// Restore a VM from a snapshot's state file instead of booting one (with
    /// --mem-file). The VM's memory size, vCPUs, command line and devices are the
    /// snapshot's; disks and TAPs are reopened by path. It runs on from where it was
    /// paused. A state file from another format version, truncated or corrupt, or a
    /// memory file of the wrong size is refused (exit status 2) before anything runs.
    #[arg(
        long,
        value_name = "STATE",
        requires = "mem_file",
        conflicts_with_all = ["kernel", "config_file", "mem", "cpus", "cmdline", "initrd", "rootfs", "disk", "net", "vsock", "rng", "balloon", "boot_timer"]
    )]
    pub restore: Option<PathBuf>,

    /// The snapshot's memory file (with --restore): guest RAM, mapped privately, so pages
    /// are read when the guest first touches them and its writes never reach the file.
    #[arg(long, value_name = "MEM", requires = "restore")]
    pub mem_file: Option<PathBuf>,

    /// Used by `vmm bench restore`: report the restored guest's first exit and stop.
    #[arg(long, hide = true, requires = "restore")]
    pub bench_first_exit: bool,

    /// Boot from a Firecracker JSON config file (boot-source, drives, machine-config,
    /// network-interfaces, vsock, entropy, balloon) instead of the options below.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["kernel", "mem", "cpus", "cmdline", "initrd", "rootfs", "disk", "net", "vsock", "rng", "balloon"]
    )]
    pub config_file: Option<PathBuf>,

    /// Guest memory in MiB. RAM above 3 GiB is placed above 4 GiB, past the MMIO gap.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub mem: u64,

    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u16,

    /// Kernel command line.
    #[arg(long, value_name = "STR", default_value = crate::vm::DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Initial ramdisk, loaded page aligned at the top of low memory.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Root disk image (raw): the first virtio-blk device, /dev/vda in the guest. Adds
    /// `root=/dev/vda rw` to the command line unless it already has a root=.
    #[arg(long, value_name = "IMG")]
    pub rootfs: Option<PathBuf>,

    /// Another virtio-blk disk (raw file), `ro` for read-only, `id=` for its serial
    /// (GET_ID). Repeat for more disks; they follow the root disk (/dev/vdb, …).
    /// `bw=` (bytes per second) and `ops=` (requests per second) rate limit it: token buckets
    /// holding one second's worth, refilled over a second; a request beyond them waits.
    /// Default: no limit.
    #[arg(long, value_name = "PATH[,ro][,id=NAME][,bw=N][,ops=N]", value_parser = parse_disk)]
    pub disk: Vec<crate::vm::device_specs::DiskSpec>,

    /// A virtio-net NIC on a TAP device (opened, or created when missing: that needs
    /// CAP_NET_ADMIN). The MAC defaults to one the guest driver picks. Repeatable.
    /// `rx_bw=`/`tx_bw=` (bytes per second) and `rx_ops=`/`tx_ops=` (frames per second)
    /// rate limit receive and transmit apart, as `--disk`'s `bw=`/`ops=`. Default: no limit.
    #[arg(
        long,
        value_name = "tap=NAME[,mac=MAC][,rx_bw=N][,rx_ops=N][,tx_bw=N][,tx_ops=N]",
        value_parser = parse_net
    )]
    pub net: Vec<crate::vm::device_specs::NetSpec>,

    /// A virtio-vsock device with Firecracker's host side: connect to PATH and write
    /// `CONNECT <port>\n` to reach a guest listener; guest connections to host port P
    /// reach a Unix listener at PATH_P.
    #[arg(long, value_name = "cid=N,uds=PATH", value_parser = parse_vsock)]
    pub vsock: Option<crate::vm::device_specs::VsockSpec>,

    /// A virtio-rng device fed by the host's getrandom(2). `bw=` (bytes per second) and
    /// `ops=` (requests per second) rate limit it, as `--disk`'s. Default: no limit.
    #[arg(
        long,
        value_name = "bw=N,ops=N",
        num_args = 0..=1,
        default_missing_value = "",
        value_parser = parse_rng
    )]
    pub rng: Option<crate::vm::device_specs::RngSpec>,

    /// A virtio-balloon device: the guest returns `amount_mib` of its RAM to the host.
    /// stats_interval (seconds) > 0 enables memory statistics.
    #[arg(long, value_name = "amount_mib=N[,deflate_on_oom][,stats_interval=S]", value_parser = parse_balloon)]
    pub balloon: Option<crate::vm::device_specs::BalloonSpec>,

    /// Print the time since the VMM process started when the guest writes 123 to MMIO
    /// 0xC000_0000 (the Firecracker boot-timer convention).
    #[arg(long)]
    pub boot_timer: bool,

    /// At the end, print on stderr a summary of the vCPUs' KVM exits: the total and the
    /// time from the first KVM_RUN, counts by exit reason, and the ports and MMIO
    /// addresses that exited most, with the device the VMM has there.
    #[arg(long)]
    pub trace_exits: bool,

    /// Run the VMM's threads without their seccomp filters. By default each vCPU, the
    /// event loop and each device worker may make only the system calls it needs, and any
    /// other call stops the VMM with a report naming the thread and the call; this turns
    /// that off, for debugging only.
    #[arg(long)]
    pub no_seccomp: bool,

    #[command(flatten)]
    pub jail: crate::jail::JailArgs,
}

fn parse_disk(s: &str) -> Result<crate::vm::device_specs::DiskSpec, String> {
    crate::vm::device_specs::parse_disk(s).map_err(|e| e.reason)
}

fn parse_net(s: &str) -> Result<crate::vm::device_specs::NetSpec, String> {
    crate::vm::device_specs::parse_net(s).map_err(|e| e.reason)
}

fn parse_rng(s: &str) -> Result<crate::vm::device_specs::RngSpec, String> {
    crate::vm::device_specs::parse_rng(s).map_err(|e| e.reason)
}

fn parse_vsock(s: &str) -> Result<crate::vm::device_specs::VsockSpec, String> {
    crate::vm::device_specs::parse_vsock(s).map_err(|e| e.reason)
}

fn parse_balloon(s: &str) -> Result<crate::vm::device_specs::BalloonSpec, String> {
    crate::vm::device_specs::parse_balloon(s).map_err(|e| e.reason)
}
