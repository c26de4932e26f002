//! Command-line arguments of `vmm container`. Values are parsed here (clap reports a bad
//! one with exit status 2) into the runtime's [`RunOptions`], which
//! [`runtime::options::config_from_options`] turns into a container configuration.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use runtime::options::{parse_bytes, parse_cpus, parse_env, parse_mount, parse_rlimit, parse_user};
use runtime::options::{BindMount, CpuFraction, RlimitArg, RunOptions, UserArg};
use runtime::run_state;

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Run a command in a new container and return its exit status (128+N when killed by
    /// signal N). Either --rootfs with the options below, or --bundle with an OCI
    /// config.json.
    Run(Box<RunArgs>),
    /// Remove what a run of container ID left behind when it was killed (its cgroups and
    /// its state); refused while a run holds the ID. The next run of the ID does the same.
    Delete {
        #[command(flatten)]
        state: StateRoot,
        /// The container's name (`--name` of its run).
        id: String,
    },
    /// Benchmark container start against crun and runc (what `vmm bench container-start`
    /// runs).
    #[command(hide = true)]
    BenchStart {
        /// Number of measured runs per runtime.
        #[arg(long, default_value_t = 30)]
        runs: u32,
    },
}

/// Where each run holds its container ID while it lives (a locked directory per ID).
#[derive(Debug, Args)]
pub struct StateRoot {
    /// Directory of the running containers' state.
    #[arg(long = "state-root", value_name = "DIR", default_value = run_state::DEFAULT_ROOT, hide = true)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetMode {
    /// A new network namespace with only the loopback interface (up).
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with a veth link to the host: a free /30 of 10.231.0.0/16,
    /// its second address the container's eth0, its first the host's end and the default
    /// gateway.
    Link,
}

impl From<NetMode> for runtime::options::NetMode {
    fn from(mode: NetMode) -> Self {
        match mode {
            NetMode::None => Self::None,
            NetMode::Host => Self::Host,
            NetMode::Link => Self::Link,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Root filesystem directory of the container.
    #[arg(long, value_name = "DIR", required_unless_present = "bundle")]
    pub rootfs: Option<PathBuf>,
    /// OCI bundle directory: config.json, and the rootfs it names. Cannot be combined with
    /// the other options.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "rootfs", "hostname", "memory", "pids", "cpus", "net", "userns", "read_only",
        "mounts", "env", "workdir", "user", "cap_add", "cap_drop", "rlimits", "command",
    ])]
    pub bundle: Option<PathBuf>,
    /// Container name, used for its cgroup [default: vmm-<pid>]. A name is held by one
    /// run at a time.
    #[arg(long, value_name = "ID")]
    pub name: Option<String>,
    #[command(flatten)]
    pub state: StateRoot,
    /// Hostname inside the container [default: the container name].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Memory limit in bytes; k, m, g suffixes (powers of 1024) [default: none].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub memory: Option<i64>,
    /// Maximum number of processes and threads [default: none].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub pids: Option<i64>,
    /// CPU bandwidth in CPUs, e.g. 0.5 [default: none].
    #[arg(long, value_name = "FRACTION", value_parser = parse_cpus)]
    pub cpus: Option<CpuFraction>,
    /// Network: a new namespace with only `lo`, or the host's.
    #[arg(long, value_enum, default_value_t = NetMode::None)]
    pub net: NetMode,
    /// Run in a new user namespace: container root is host uid/gid 100000 (65536 ids).
    #[arg(long)]
    pub userns: bool,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Bind-mount a host path into the container; `:ro` makes it read-only.
    #[arg(long = "mount", value_name = "SRC:DST[:ro]", value_parser = parse_mount)]
    pub mounts: Vec<BindMount>,
    /// Set an environment variable (PATH defaults to the usual system directories).
    #[arg(long, value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub workdir: PathBuf,
    /// User to run as inside the container.
    #[arg(long, value_name = "UID[:GID]", value_parser = parse_user)]
    pub user: Option<UserArg>,
    /// Add a capability to Docker's default set (or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Resource limit, e.g. nofile=1024 or nproc=64:128.
    #[arg(long = "rlimit", value_name = "NAME=SOFT[:HARD]", value_parser = parse_rlimit)]
    pub rlimits: Vec<RlimitArg>,
    /// Install the built-in seccomp profile (Docker's denied syscalls answer EPERM).
    #[arg(long)]
    pub seccomp: bool,
    /// The command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl RunArgs {
    /// The runtime's options for `--rootfs` runs (`--bundle` runs read config.json instead).
    pub fn to_options(&self) -> RunOptions {
        RunOptions {
            rootfs: self.rootfs.clone().unwrap_or_default(),
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            memory: self.memory,
            pids: self.pids,
            cpus: self.cpus,
            net: self.net.into(),
            userns: self.userns,
            read_only: self.read_only,
            mounts: self.mounts.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            rlimits: self.rlimits.clone(),
            seccomp: self.seccomp,
            command: self.command.clone(),
        }
    }
}
