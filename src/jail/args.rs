//! The jail's command-line options, flattened into `vmm`'s VM options. Values are taken as
//! text and checked by [`super::JailSpec::from_args`], so that each mistake gets one line.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Jail (as Firecracker's jailer; needs root)")]
pub struct JailArgs {
    /// Run the VMM jailed, its root a fresh tmpfs mounted on DIR in a private mount
    /// namespace, holding only the kernel, initrd and disks (bound from their host paths;
    /// the VM options are rewritten to /NAME), the vsock socket's directory (at /vsock)
    /// and the device nodes /dev/kvm, /dev/urandom and, with --net, /dev/net/tun. New
    /// mount, PID and IPC namespaces; rlimits; the cgroup of --cgroup; then the VMM drops
    /// to --uid:--gid with no capabilities (every set, bounding and ambient) and
    /// no_new_privs, and runs the VM. DIR on the host is left as it was. The files must be
    /// readable (disks writable) by --uid, and the vsock directory writable.
    #[arg(long, value_name = "DIR")]
    pub jail: Option<PathBuf>,

    /// The user id the jailed VMM runs as (a number). Required with --jail.
    #[arg(long, value_name = "UID", allow_hyphen_values = true)]
    pub uid: Option<String>,

    /// The group id the jailed VMM runs as (a number). Required with --jail.
    #[arg(long, value_name = "GID", allow_hyphen_values = true)]
    pub gid: Option<String>,

    /// Join this network namespace (e.g. /var/run/netns/NAME) before building the jail;
    /// default: the host's.
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,

    /// Write VALUE to the file KEY of a cgroup made for this VM, which the jailed VMM
    /// joins: `memory.limit_in_bytes=...`, `cpu.cfs_quota_us=...` on cgroup v1 (and
    /// hybrid), `memory.max=...`, `pids.max=...` on v2. A key of a controller that is not
    /// mounted, or not in its group, is refused. The group is removed when the VM ends.
    /// Repeatable.
    #[arg(long = "cgroup", value_name = "KEY=VALUE")]
    pub cgroup: Vec<String>,

    /// A resource limit of the jailed VMM, as the jailer's: `no-file=N` (open files,
    /// default 2048) or `fsize=BYTES` (largest file it may write; default: inherited).
    /// Repeatable.
    #[arg(long = "resource-limit", value_name = "no-file=N|fsize=BYTES")]
    pub resource_limit: Vec<String>,
}

impl JailArgs {
    /// The jail options given besides --jail, by name (each needs --jail).
    pub fn given_without_dir(&self) -> Option<&'static str> {
        [
            ("--uid", self.uid.is_some()),
            ("--gid", self.gid.is_some()),
            ("--netns", self.netns.is_some()),
            ("--cgroup", !self.cgroup.is_empty()),
            ("--resource-limit", !self.resource_limit.is_empty()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }
}
