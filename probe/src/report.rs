//! What the probe prints: the types both sides share. `vmm compare` links this crate to
//! read the probe's JSON and to make the same observations of the host itself, so there is
//! one definition of every field.
//!
//! Versioned: a probe and a `vmm` of different [`PROBE_VERSION`]s refuse each other's
//! documents rather than misread them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped whenever a field changes meaning or goes away.
pub const PROBE_VERSION: u32 = 1;

/// The canaries the host planted before the run, by name, so the probe can look for them.
/// All of them belong to the comparison run and are removed when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canaries {
    /// `comm` of a host process (at most 15 bytes, the kernel's limit).
    pub process_name: String,
    /// Key of a SysV shared-memory segment on the host.
    pub shm_key: i32,
    /// Key of a SysV message queue on the host.
    pub msg_key: i32,
    /// Hostname of the comparison's own UTS namespace on the host.
    pub hostname: String,
    /// Absolute path of a file the host created under /tmp.
    pub tmp_file: String,
    /// Name of a listening abstract unix socket (without the leading NUL).
    pub abstract_socket: String,
    /// A TCP port listening on the host's 127.0.0.1.
    pub tcp_port: u16,
}

/// Whether something is possible from where the probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// It worked (the file was read, the call was accepted).
    Allowed,
    /// The kernel refused (EPERM, EACCES) or hid it (masked, zeroed addresses).
    Denied,
    /// It does not exist there (no such file, the kernel lacks the feature: ENOSYS).
    Absent,
}

/// Which of the host's canaries the probe could see or reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CanarySight {
    /// A process named [`Canaries::process_name`] is in /proc.
    pub process: bool,
    /// `shmget(shm_key, 0, 0)` found the segment.
    pub shm: bool,
    /// `msgget(msg_key, 0)` found the queue.
    pub msg_queue: bool,
    /// The probe's hostname is [`Canaries::hostname`].
    pub hostname: bool,
    /// The file opened, directly or as /proc/1/root/<path> (a chroot is not a wall).
    pub tmp_file: bool,
    /// `connect` to the abstract socket succeeded.
    pub abstract_socket: bool,
    /// `connect` to 127.0.0.1:tcp_port succeeded.
    pub tcp_port: bool,
}

/// The memory limit the probe is under, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLimit {
    /// None when there is no finite limit (cgroup "max" with no MemTotal fallback).
    pub bytes: Option<u64>,
    /// "cgroup2 memory.max", "cgroup1 memory.limit_in_bytes" or "MemTotal".
    pub source: String,
}

/// What happened when a child allocated (and touched) more than the memory limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ExceedOutcome {
    /// The child was killed by SIGKILL (the OOM killer).
    Killed,
    /// The child allocated past the limit and exited normally.
    Survived,
    /// The test did not run, and why (e.g. the limit is the host's own RAM).
    NotTested { reason: String },
}

/// Everything the isolation probe observed, in one document (`vmm-probe isolation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub probe_version: u32,
    /// `uname -r`.
    pub kernel_release: String,
    /// /proc/sys/kernel/random/boot_id: equal to the host's iff the kernel is shared.
    pub boot_id: Option<String>,
    /// Namespace type (cgroup, ipc, mnt, net, pid, time, user, uts) → inode of
    /// /proc/self/ns/<type>; None when it cannot be read.
    pub namespaces: BTreeMap<String, Option<u64>>,
    /// The probe's own PID, as it sees it.
    pub pid: u32,
    /// Number of numeric entries in /proc.
    pub visible_pids: u32,
    pub hostname: String,
    pub canaries: CanarySight,
    /// The root mount as "<fstype> <source>" from /proc/self/mountinfo.
    pub root_source: String,
    /// Names of the network interfaces (sorted).
    pub net_interfaces: Vec<String>,
    /// /proc/self/uid_map, one mapping per element, fields separated by single spaces.
    pub uid_map: Vec<String>,
    /// CapEff from /proc/self/status, as the kernel prints it (16 hex digits).
    pub cap_eff: String,
    /// Seccomp mode: 0 none, 1 strict, 2 filter.
    pub seccomp: u32,
    pub no_new_privs: bool,
    pub memory_limit: MemoryLimit,
    pub exceed_memory_limit: ExceedOutcome,
    /// syslog(SYSLOG_ACTION_READ_ALL): the kernel log, as dmesg reads it.
    pub kernel_log: Access,
    /// Opening and reading /dev/kmsg.
    pub dev_kmsg: Access,
    /// Opening and reading /proc/kcore.
    pub proc_kcore: Access,
    /// /proc/kallsyms shows real (non-zero) addresses.
    pub kallsyms_addresses: Access,
    /// init_module with an empty image: EPERM is Denied, ENOSYS Absent, any other error
    /// (the image is invalid) means the permission check passed: Allowed.
    pub module_loading: Access,
}

/// Network round trip and throughput to a host server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetResults {
    /// Median of 1-byte TCP ping-pongs.
    pub rtt_us: f64,
    /// Bulk TCP send to the host, until the host acknowledged every byte.
    pub throughput_mb_s: f64,
}

/// One benchmark run's results (`vmm-probe bench`). Rates are in decimal units (MB = 10^6
/// bytes); each figure is measured over a time budget, not a fixed count, so a slow level
/// still finishes in bounded time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    pub probe_version: u32,
    /// Mean time of one getppid(2), made with syscall(2) so no libc caching applies.
    pub null_syscall_ns: f64,
    /// Mean time of fork + execve(the probe, "true") + waitpid.
    pub fork_exec_us: f64,
    /// Time of the fixed compute kernel (the same work at every level).
    pub cpu_ms: f64,
    /// The compute kernel's result: equal at every level, or the kernel did other work.
    pub cpu_checksum: u64,
    /// memcpy between two buffers larger than the caches.
    pub mem_bandwidth_mb_s: f64,
    /// 4 KiB reads at random aligned offsets of a file in the workload's root.
    pub file_random_read_iops: f64,
    /// Whether those reads bypassed the page cache (O_DIRECT was accepted).
    pub file_direct_io: bool,
    /// Sequential 1 MiB writes of a file in the workload's root, then fsync.
    pub file_seq_write_mb_s: f64,
    /// None when no host server was given (`--net`).
    pub net: Option<NetResults>,
}
