//! The runtime's own description of a container, built from the command line
//! ([`super::args`]) or from an OCI bundle ([`super::spec`]). Everything after parsing works
//! on this type only, so the setup code does not care where a setting came from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::netif::LinkAddresses;

/// A fully resolved container: what to run, how to isolate it, which limits apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Name of the container's cgroup (unique per run).
    pub id: String,
    /// Absolute path of the root filesystem on the host.
    pub rootfs: PathBuf,
    /// How the process's root becomes `rootfs`.
    pub root_switch: RootSwitch,
    pub readonly_root: bool,
    pub hostname: Option<String>,
    pub process: ProcessConfig,
    pub namespaces: Namespaces,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    /// Mounts in the order they are made, destinations inside the container.
    pub mounts: Vec<MountSpec>,
    /// Create the minimal /dev (null, zero, full, random, urandom, tty, ptmx, symlinks).
    pub default_devices: bool,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    /// Put the workload in a cgroup of its own: for `resources`, and to learn whether the
    /// OOM killer ended it. Off only for the unisolated baseline (`vmm run --isolation
    /// process` on the host).
    pub cgroup: bool,
    pub resources: Resources,
    pub seccomp: Option<SeccompProfile>,
    /// A point-to-point link to the host (`--net link`); needs `namespaces.net`. Absent in
    /// the JSON of older senders (the guest agent's protocol carries this type).
    #[serde(default)]
    pub net_link: Option<NetLink>,
    /// Kernel parameters set in the container's namespaces (`linux.sysctl`), e.g.
    /// `net.ipv4.ping_group_range`.
    #[serde(default)]
    pub sysctl: Vec<(String, String)>,
    /// The workload's `/proc/self/oom_score_adj` (`process.oomScoreAdj`).
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    /// The workload gets a terminal: its stdio is the secondary of a pty whose primary
    /// goes to the caller through a console socket (`process.terminal`).
    #[serde(default)]
    pub terminal: bool,
    /// The terminal's size in characters, set before the workload runs
    /// (`process.consoleSize`); none leaves the kernel's 0x0, which programs read as
    /// "unknown".
    #[serde(default)]
    pub console_size: Option<ConsoleSize>,
    /// Where the container's cgroup goes (`linux.cgroupsPath`): relative to the
    /// hierarchy's root when absolute, to the runtime's own group otherwise. None: a group
    /// named `id` in the runtime's default place.
    #[serde(default)]
    pub cgroup_path: Option<PathBuf>,
    /// The lifecycle hooks of the OCI runtime spec.
    #[serde(default)]
    pub hooks: Hooks,
    /// Existing namespaces the container joins instead of making its own (an OCI
    /// namespace with a `path`, such as the network namespace Podman prepares).
    #[serde(default)]
    pub join_namespaces: Vec<JoinNamespace>,
    /// Device cgroup rules of the bundle (`linux.resources.devices`), in order; applied
    /// after denying everything and before the runtime's own allowlist (runc's order).
    #[serde(default)]
    pub device_rules: Vec<DeviceRule>,
}

/// A terminal's size in characters (`struct winsize`'s rows and columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSize {
    pub rows: u16,
    pub cols: u16,
}

/// One device cgroup rule: `allow` or deny, and the rule as the v1 `devices.allow` file
/// takes it (`c 1:3 rwm`, `a *:* rwm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    pub rule: String,
}

/// A namespace to join: its kind (`CLONE_NEW*` flag) and a path to it (`/proc/PID/ns/net`,
/// `/run/netns/NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinNamespace {
    pub flag: i32,
    pub path: PathBuf,
}

/// One hook: a program run with the container's state on its stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// Absolute path of the program.
    pub path: PathBuf,
    /// argv, `args[0]` included; empty means `[path]`.
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Killed and failed after this many seconds.
    pub timeout_secs: Option<u32>,
}

/// The OCI lifecycle hooks, by the point at which they run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Hooks {
    /// Deprecated by the spec, run with `create_runtime`, before it.
    pub prestart: Vec<Hook>,
    /// In the runtime's namespaces, once the container's namespaces exist.
    pub create_runtime: Vec<Hook>,
    /// In the container's namespaces, before `create` returns.
    pub create_container: Vec<Hook>,
    /// In the container, by its first process, after `start` and before the workload.
    pub start_container: Vec<Hook>,
    /// In the runtime's namespaces, once `start` has let the workload go.
    pub poststart: Vec<Hook>,
    /// In the runtime's namespaces, when `delete` removes the container.
    pub poststop: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The container's end of a [`NetLink`], in its own network namespace.
pub const LINK_INTERFACE: &str = "eth0";

/// The container's link to the host: its [`LINK_INTERFACE`] with `addresses.workload`,
/// whose default gateway is `addresses.host`.
///
/// By default a veth pair: `host_interface` is made and stays in the runtime's network
/// namespace with `addresses.host`; the peer is the container's end. With
/// `existing_interface` (a container in a microVM, whose NIC is its link), the interface
/// `host_interface` already exists in the runtime's namespace and is moved into the
/// container's as its end; the host's end is across the VM's TAP, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLink {
    /// At most 15 bytes (IFNAMSIZ); unique among the runs on this host.
    pub host_interface: String,
    pub addresses: LinkAddresses,
    #[serde(default)]
    pub existing_interface: bool,
}

/// How the process's root becomes the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootSwitch {
    /// pivot_root, and the old root detached: nothing of the host's tree stays reachable.
    #[default]
    PivotRoot,
    /// chroot: the baseline of `vmm run --isolation process` (and of the `vm` level inside
    /// a guest), where the host's /proc, /sys and /dev are bound into the rootfs first.
    Chroot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// argv; `args[0]` is looked up in `PATH` inside the container when it has no `/`.
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Working directory inside the container (absolute).
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    pub capabilities: CapabilitySets,
    /// Leave the capabilities as the runtime has them (`capabilities` is not applied): the
    /// unisolated baseline. A switch to a non-root `uid` still clears them, as for any
    /// process that changes user.
    #[serde(default)]
    pub inherit_capabilities: bool,
    pub no_new_privileges: bool,
    pub rlimits: Vec<Rlimit>,
}

/// Capability sets as bit masks (bit N = capability number N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CapabilitySets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapabilitySets {
    /// The same mask in every set but ambient (what root gets by default).
    pub fn uniform(mask: u64) -> Self {
        Self {
            bounding: mask,
            effective: mask,
            permitted: mask,
            inheritable: mask,
            ambient: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `libc::RLIMIT_*` number.
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Which new namespaces the container gets (joining existing ones is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub pid: bool,
    pub mount: bool,
    pub uts: bool,
    pub ipc: bool,
    pub net: bool,
    pub user: bool,
    pub cgroup: bool,
}

impl Namespaces {
    /// Every namespace but the user namespace: what runc's default spec asks for.
    pub const DEFAULT: Self = Self {
        pid: true,
        mount: true,
        uts: true,
        ipc: true,
        net: true,
        user: false,
        cgroup: true,
    };

    /// The `CLONE_NEW*` flags for the namespaces created at clone time. The cgroup
    /// namespace is left out: it is unshared by the child once it sits in its cgroup.
    pub fn clone_flags(&self) -> u64 {
        let mut flags = 0u64;
        for (on, flag) in [
            (self.pid, libc::CLONE_NEWPID),
            (self.mount, libc::CLONE_NEWNS),
            (self.uts, libc::CLONE_NEWUTS),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.net, libc::CLONE_NEWNET),
            (self.user, libc::CLONE_NEWUSER),
        ] {
            if on {
                flags |= flag as u64;
            }
        }
        flags
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// One mount, already split into `mount(2)` flags and filesystem data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub destination: PathBuf,
    /// Filesystem type: "proc", "tmpfs", "bind", "cgroup", ...
    pub fstype: String,
    /// Host path for bind mounts, a label otherwise.
    pub source: PathBuf,
    /// `MS_*` flags (without propagation flags).
    pub flags: u64,
    /// Propagation flags applied after the mount (`MS_PRIVATE`, `MS_SLAVE`, ...).
    pub propagation: u64,
    /// Filesystem-specific options, comma separated.
    pub data: String,
}

impl MountSpec {
    pub fn is_bind(&self) -> bool {
        self.fstype == "bind" || self.flags & libc::MS_BIND != 0
    }
}

/// cgroup limits. `None` leaves the limit unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes (swap is limited to the same total unless `memory_swap`).
    pub memory: Option<i64>,
    /// Maximum number of tasks.
    pub pids: Option<i64>,
    /// CPU bandwidth: `quota` µs of CPU time every `period` µs.
    pub cpu: Option<CpuQuota>,
    /// Relative CPU weight, as cgroup v1's `cpu.shares` (2–262144; 1024 is the default).
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// With `memory`: the limit of memory plus swap in bytes (at least `memory`), or -1
    /// for no swap limit (v1 `memory.memsw.limit_in_bytes`; v2 `memory.swap.max` is this
    /// less `memory`).
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// Soft memory limit in bytes, kept under memory pressure (v1
    /// `memory.soft_limit_in_bytes`, v2 `memory.low`).
    #[serde(default)]
    pub memory_reservation: Option<i64>,
    /// v1 `memory.swappiness`, 0–100 (cgroup v2 has no per-group swappiness: refused).
    #[serde(default)]
    pub memory_swappiness: Option<u64>,
    /// CPU time in µs a group may bank and burst above its quota, at most the quota (v1
    /// `cpu.cfs_burst_us`, v2 `cpu.max.burst`; Linux 5.14+).
    #[serde(default)]
    pub cpu_burst: Option<u64>,
}

impl Resources {
    /// True when a limit needs the memory controller.
    pub fn uses_memory(&self) -> bool {
        self.memory.is_some()
            || self.memory_swap.is_some()
            || self.memory_reservation.is_some()
            || self.memory_swappiness.is_some()
    }

    /// True when a limit needs the cpu controller.
    pub fn uses_cpu(&self) -> bool {
        self.cpu.is_some() || self.cpu_shares.is_some() || self.cpu_burst.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuQuota {
    /// µs per period, or [`CpuQuota::UNLIMITED`] (a period set without a quota).
    pub quota: i64,
    pub period: u64,
}

impl CpuQuota {
    /// No quota (v1's -1, v2's `max`).
    pub const UNLIMITED: i64 = -1;
}

/// A seccomp policy, as an OCI profile states it: a call that no rule matches gets `default`;
/// a call that rules match gets the action of highest precedence among theirs (the kernel's
/// order: KillProcess, KillThread, Trap, Errno, Log, Allow). Rules whose action is `default`
/// change nothing and are left out, as runc does. [`super::seccomp`] explains how this
/// becomes BPF and where it differs from libseccomp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProfile {
    pub default: SeccompVerdict,
    pub rules: Vec<SeccompRule>,
}

/// `action` for calls to any of `names` whose arguments meet every condition of `args`
/// (none: every call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompRule {
    /// Syscall names as the kernel headers spell them (`kexec_load`, `unshare`, ...). Names
    /// this architecture does not have are ignored, so one profile serves several.
    pub names: Vec<String>,
    pub action: SeccompVerdict,
    #[serde(default)]
    pub args: Vec<SeccompArg>,
}

/// A condition on argument `index` (0 to 5): `arg op value`, or for
/// [`SeccompOp::MaskedEqual`] `(arg & value) == value_two`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompArg {
    pub index: u8,
    pub value: u64,
    /// Only read by [`SeccompOp::MaskedEqual`].
    #[serde(default)]
    pub value_two: u64,
    pub op: SeccompOp,
}

/// Unsigned comparisons, as libseccomp's `SCMP_CMP_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompOp {
    NotEqual,
    LessThan,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    GreaterThan,
    MaskedEqual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompVerdict {
    Allow,
    /// The call fails with this errno without running (the kernel caps it at 4095).
    Errno(u32),
    /// Kill the calling thread (OCI `SCMP_ACT_KILL` and `SCMP_ACT_KILL_THREAD`).
    KillThread,
    KillProcess,
    /// Deliver SIGSYS.
    Trap,
    /// Allow and log to the audit log.
    Log,
}
