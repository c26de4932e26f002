//! The duties of PID 1 in a guest whose initramfs holds nothing but the agent: leave the
//! initramfs root (pivot_root refuses to run from it), mount the kernel's file systems,
//! turn on the cgroup controllers, bring `lo` up, name the host, and power the guest off
//! when the agent is done (PID 1 must never exit: the kernel would panic).
//!
//! Each step that fails is reported and the agent serves anyway: a host that cannot run a
//! container learns why from the error reply, which beats a guest that powers off.
//!
//! The initramfs must hold the node /dev/console (char 5:1): the kernel opens it as
//! init's descriptors 0-2 (the console the agent reports on), and without them Rust's
//! start-up code reopens 0-2 on /dev/null or, with no /dev/null either, aborts — before
//! `main`, as PID 1, which panics the kernel.

use std::io;
use std::path::{Path, PathBuf};

use crate::sys;

/// The guest's hostname until a workload asks for another.
pub const DEFAULT_HOSTNAME: &str = "vmm-guest";

/// Where the new root tmpfs is mounted before it is moved onto `/`.
const NEW_ROOT: &str = "/.vmm-root";

/// `RAMFS_MAGIC` and `TMPFS_MAGIC` from linux/magic.h: the initramfs is one or the other.
const RAMFS_MAGIC: u64 = 0x8584_58f6;
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Controllers turned on for the root's children, when the kernel has them: the runtime's
/// groups need memory and pids for limits and for OOM accounting, cpu for quotas.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("leave the initramfs: {step}")]
    SwitchRoot {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("mount {fstype} on {target}")]
    Mount {
        fstype: &'static str,
        target: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("enable the cgroup {controller} controller in {path:?}")]
    Controller {
        controller: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bring the loopback interface up")]
    Loopback(#[source] io::Error),
    #[error("set the hostname to {name:?}")]
    Hostname {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// One of the file systems PID 1 mounts.
struct KernelMount {
    target: &'static str,
    fstype: &'static str,
    flags: libc::c_ulong,
    data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// In order: /sys before the cgroup2 mount inside it.
const KERNEL_MOUNTS: [KernelMount; 6] = [
    KernelMount {
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    KernelMount {
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    KernelMount {
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: Some("mode=0755"),
    },
    KernelMount {
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    KernelMount {
        target: "/tmp",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some("mode=1777"),
    },
    KernelMount {
        target: "/run",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: Some("mode=0755"),
    },
];

/// Sets the guest up for its workloads; returns the steps that failed.
pub fn init() -> Vec<InitError> {
    let mut failed = Vec::new();
    if let Err(e) = leave_initramfs() {
        failed.push(e);
    }
    for m in &KERNEL_MOUNTS {
        if let Err(e) = mount_kernel_fs(m) {
            failed.push(e);
        }
    }
    failed.extend(enable_cgroup_controllers(Path::new("/sys/fs/cgroup")));
    if let Err(e) = runtime::netif::set_up("lo") {
        failed.push(InitError::Loopback(e));
    }
    if let Err(e) = set_hostname(DEFAULT_HOSTNAME) {
        failed.push(e);
    }
    failed
}

/// Makes a tmpfs the root when the root is the initramfs, as switch_root does but without
/// an exec: the running agent stays in memory. pivot_root(2) fails with EINVAL when the
/// caller's root is the initramfs (a mount with no parent), and every container the
/// runtime starts inherits the agent's root.
fn leave_initramfs() -> Result<(), InitError> {
    let step = |step: &str| {
        let step = step.to_owned();
        move |source| InitError::SwitchRoot { step, source }
    };
    let magic = sys::fs_magic(Path::new("/")).map_err(step("statfs /"))?;
    if magic != RAMFS_MAGIC && magic != TMPFS_MAGIC {
        return Ok(());
    }
    let new_root = Path::new(NEW_ROOT);
    std::fs::create_dir_all(new_root).map_err(step("create /.vmm-root"))?;
    sys::mount("tmpfs", new_root, "tmpfs", 0, Some("mode=0755"))
        .map_err(step("mount a tmpfs on /.vmm-root"))?;
    sys::chdir(new_root).map_err(step("chdir /.vmm-root"))?;
    sys::move_mount(Path::new("."), Path::new("/")).map_err(step("move /.vmm-root onto /"))?;
    sys::chroot(Path::new(".")).map_err(step("chroot into the new root"))?;
    sys::chdir(Path::new("/")).map_err(step("chdir /"))
}

fn mount_kernel_fs(m: &KernelMount) -> Result<(), InitError> {
    let err = |source| InitError::Mount {
        fstype: m.fstype,
        target: m.target,
        source,
    };
    let target = Path::new(m.target);
    // The initramfs has none of these directories (/sys/fs/cgroup comes with sysfs).
    std::fs::create_dir_all(target).map_err(err)?;
    match sys::mount(m.fstype, target, m.fstype, m.flags, m.data) {
        // EBUSY: the kernel mounted it already (devtmpfs with CONFIG_DEVTMPFS_MOUNT).
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other.map_err(err),
    }
}

/// Turns on [`CONTROLLERS`] for the root's children where `cgroup.controllers` lists
/// them (the runtime's v2 code enables them again further down, under `vmm/`).
fn enable_cgroup_controllers(root: &Path) -> Vec<InitError> {
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let control = root.join("cgroup.subtree_control");
    CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter_map(|&controller| {
            std::fs::write(&control, format!("+{controller}"))
                .err()
                .map(|source| InitError::Controller {
                    controller,
                    path: control.clone(),
                    source,
                })
        })
        .collect()
}

pub fn set_hostname(name: &str) -> Result<(), InitError> {
    sys::sethostname(name).map_err(|source| InitError::Hostname {
        name: name.to_owned(),
        source,
    })
}

/// Syncs the file systems and powers the guest off. Never returns: if the kernel refuses,
/// PID 1 waits forever rather than exit (which would panic the kernel).
pub fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; RB_POWER_OFF is a valid command.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    sys::complain("vmm-agent: power off failed; halting here\n");
    loop {
        // SAFETY: pause has no preconditions; it returns only when a signal is handled.
        unsafe { libc::pause() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_the_kernel_lacks_are_not_enabled() {
        let root = std::env::temp_dir().join(format!("vmm-agent-cg-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpuset io pids\n").unwrap();
        let failed = enable_cgroup_controllers(&root);
        assert!(failed.is_empty(), "{failed:?}");
        let written = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap();
        assert_eq!(written, "+pids");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn kernel_mounts_put_sys_before_the_cgroup2_inside_it() {
        let position = |t: &str| KERNEL_MOUNTS.iter().position(|m| m.target == t);
        assert!(position("/sys") < position("/sys/fs/cgroup"));
        assert!(position("/sys/fs/cgroup").is_some());
    }
}
