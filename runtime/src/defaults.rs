//! Defaults shared by the command line and the bundle reader: the ones runc and Docker use,
//! so a container here looks like a container there.

use std::path::PathBuf;

use super::config::{MountSpec, SeccompProfile, SeccompVerdict};
use super::mount_opts::mount_spec;

/// Docker's default capability set (moby `oci/caps.DefaultCapabilities`), which it hands to
/// runc for every container that does not ask for more or less.
pub const CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// runc's default masked paths: files get /dev/null bound over them, directories an empty
/// read-only tmpfs.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `PATH` when the environment does not set one.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn masked_paths() -> Vec<PathBuf> {
    MASKED_PATHS.iter().map(PathBuf::from).collect()
}

pub fn readonly_paths() -> Vec<PathBuf> {
    READONLY_PATHS.iter().map(PathBuf::from).collect()
}

/// The mounts of `runc spec` (destination, type, source, options): proc, a tmpfs /dev with
/// devpts, shm and mqueue, read-only sysfs and the cgroup filesystem.
pub const MOUNTS: [(&str, &str, &str, &[&str]); 7] = [
    ("/proc", "proc", "proc", &[]),
    (
        "/dev",
        "tmpfs",
        "tmpfs",
        &["nosuid", "strictatime", "mode=755", "size=65536k"],
    ),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
    ),
    (
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ),
    (
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ),
    (
        "/sys",
        "sysfs",
        "sysfs",
        &["nosuid", "noexec", "nodev", "ro"],
    ),
    (
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    ),
];

pub fn mounts() -> Vec<MountSpec> {
    MOUNTS
        .iter()
        .map(|(dst, fstype, src, opts)| mount_spec(dst, fstype, src, opts))
        .collect()
}

/// Syscalls Docker's default profile refuses to containers (kernel modules, kexec, reboot,
/// clock setting, swap, mount and namespace changes, tracing, keyrings, BPF, NUMA policy,
/// accounting): answered with `EPERM`, everything else allowed.
pub const SECCOMP_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
];

pub fn seccomp_profile() -> SeccompProfile {
    let denied = super::config::SeccompRule {
        names: SECCOMP_DENIED.iter().map(|s| (*s).to_owned()).collect(),
        action: SeccompVerdict::Errno(libc::EPERM as u32),
        args: Vec::new(),
    };
    SeccompProfile {
        default: SeccompVerdict::Allow,
        rules: vec![denied],
    }
}
