//! The container's file system view, made inside its new mount namespace: private
//! propagation, the rootfs bound on itself, the configured mounts, a minimal /dev, then
//! pivot_root (or chroot, for the unisolated baseline) and the masked and read-only paths
//! (the order of runc's `prepareRootfs`).

use std::path::{Path, PathBuf};

use super::config::{ContainerConfig, MountSpec, RootSwitch};
use super::error::{ContainerError, Result};
use super::paths::secure_join;
use super::sys::{FileKind, Syscall};

/// What the mounts need to know about the host.
#[derive(Debug, Clone, Copy)]
pub struct HostInfo {
    /// The host's cgroup hierarchy is cgroup v2 only (a guest, or a v2 host).
    pub cgroup2: bool,
}

/// Character devices of the minimal /dev: (name, major, minor).
pub const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_SYMLINKS: [(&str, &str); 6] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
    ("/proc/kcore", "core"),
];

fn sys_err(action: String) -> impl FnOnce(std::io::Error) -> ContainerError {
    move |e| ContainerError::sys(action, e)
}

/// Build the file system and switch into it. On return the process's root is the
/// container's rootfs and its working directory is `/`.
pub fn prepare_rootfs<S: Syscall>(sys: &S, cfg: &ContainerConfig, host: HostInfo) -> Result<()> {
    let root = cfg.rootfs.as_path();
    if !cfg.namespaces.mount {
        sys.chroot(root)
            .map_err(sys_err(format!("chroot into {root:?}")))?;
        return sys.chdir(Path::new("/")).map_err(sys_err("chdir /".into()));
    }
    sys.mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(sys_err("make / private".into()))?;
    sys.mount(Some(root), root, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(sys_err(format!("bind the rootfs {root:?} on itself")))?;
    for m in &cfg.mounts {
        mount_one(sys, cfg, m, host)?;
    }
    if cfg.default_devices {
        create_devices(sys, root, cfg.namespaces.user)?;
    }
    match cfg.root_switch {
        RootSwitch::PivotRoot => pivot(sys, root)?,
        RootSwitch::Chroot => {
            sys.chroot(root)
                .map_err(sys_err(format!("chroot into {root:?}")))?;
            sys.chdir(Path::new("/"))
                .map_err(sys_err("chdir /".into()))?;
        }
    }
    for path in &cfg.masked_paths {
        mask(sys, path)?;
    }
    for path in &cfg.readonly_paths {
        make_readonly(sys, path)?;
    }
    if cfg.readonly_root {
        remount_readonly(sys, Path::new("/"), 0)?;
    }
    Ok(())
}

/// Where a mount lands on the host, creating the mount point when it is missing.
fn mount_point<S: Syscall>(sys: &S, root: &Path, m: &MountSpec) -> Result<PathBuf> {
    let target = secure_join(root, &m.destination);
    if sys.kind(&target).is_none() {
        let source_is_file = m.is_bind() && sys.kind(&m.source) == Some(FileKind::File);
        let made = if source_is_file {
            match target.parent() {
                Some(parent) => sys.mkdir_all(parent),
                None => Ok(()),
            }
            .and_then(|()| sys.create_file(&target))
        } else {
            sys.mkdir_all(&target)
        };
        made.map_err(sys_err(format!(
            "create the mount point {:?}",
            m.destination
        )))?;
    }
    Ok(target)
}

fn mount_one<S: Syscall>(
    sys: &S,
    cfg: &ContainerConfig,
    m: &MountSpec,
    host: HostInfo,
) -> Result<()> {
    let target = mount_point(sys, &cfg.rootfs, m)?;
    let what = format!("mount {} on {:?}", m.fstype, m.destination);
    if m.is_bind() {
        sys.mount(
            Some(&m.source),
            &target,
            None,
            libc::MS_BIND | (m.flags & libc::MS_REC),
            None,
        )
        .map_err(sys_err(format!(
            "bind {:?} on {:?}",
            m.source, m.destination
        )))?;
        let extra = m.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            remount_readonly(sys, &target, extra)?;
        }
    } else if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        // cgroup v2: the container's own subtree (it is in a cgroup namespace). On v1 and
        // hybrid hosts an empty read-only tmpfs stands in for the per-controller mounts.
        let (fstype, data) = if host.cgroup2 {
            ("cgroup2", None)
        } else {
            ("tmpfs", Some("mode=755,size=0"))
        };
        sys.mount(
            Some(Path::new(fstype)),
            &target,
            Some(fstype),
            m.flags,
            data,
        )
        .map_err(sys_err(what))?;
    } else {
        let source = if m.source.as_os_str().is_empty() {
            PathBuf::from(&m.fstype)
        } else {
            m.source.clone()
        };
        let mut result = sys.mount(
            Some(&source),
            &target,
            Some(&m.fstype),
            m.flags,
            Some(&m.data),
        );
        if result.is_err() && m.fstype == "devpts" && m.data.contains("gid=") {
            // gid 5 (tty) may not be mapped in a user namespace.
            let data: Vec<&str> = m
                .data
                .split(',')
                .filter(|o| !o.starts_with("gid="))
                .collect();
            result = sys.mount(
                Some(&source),
                &target,
                Some(&m.fstype),
                m.flags,
                Some(&data.join(",")),
            );
        }
        if result.is_err() && m.fstype == "sysfs" {
            // A user namespace without its own network namespace may not mount sysfs:
            // bind the host's instead, read-only.
            result = sys
                .mount(
                    Some(Path::new("/sys")),
                    &target,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .and_then(|()| {
                    let flags = m.flags | libc::MS_RDONLY;
                    remount_readonly(sys, &target, flags)
                        .map_err(|_| std::io::Error::from_raw_os_error(libc::EPERM))
                });
        }
        result.map_err(sys_err(what))?;
    }
    if m.propagation != 0 {
        sys.mount(None, &target, None, m.propagation, None)
            .map_err(sys_err(format!("set propagation of {:?}", m.destination)))?;
    }
    Ok(())
}

/// Remount a bind mount with `flags` (read-only unless `flags` says otherwise), keeping the
/// flags the kernel locks.
fn remount_readonly<S: Syscall>(sys: &S, target: &Path, flags: u64) -> Result<()> {
    let flags = if flags == 0 { libc::MS_RDONLY } else { flags };
    let locked = sys.locked_mount_flags(target).unwrap_or(0);
    sys.mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | flags | locked,
        None,
    )
    .map_err(sys_err(format!("remount {target:?} read-only")))
}

fn create_devices<S: Syscall>(sys: &S, root: &Path, userns: bool) -> Result<()> {
    let dev = secure_join(root, Path::new("/dev"));
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        if userns {
            // No mknod in a user namespace: bind the host's node.
            sys.create_file(&path)
                .and_then(|()| {
                    let host = Path::new("/dev").join(name);
                    sys.mount(Some(&host), &path, None, libc::MS_BIND, None)
                })
                .map_err(sys_err(format!("bind /dev/{name}")))?;
        } else {
            sys.mknod(&path, libc::S_IFCHR | 0o666, libc::makedev(major, minor))
                .map_err(sys_err(format!("mknod /dev/{name}")))?;
        }
    }
    for (target, link) in DEV_SYMLINKS {
        sys.symlink(Path::new(target), &dev.join(link))
            .map_err(sys_err(format!("symlink /dev/{link}")))?;
    }
    Ok(())
}

/// pivot_root into `root` without a directory for the old root: stack the old root under
/// the new one, then detach it (runc's `pivotRoot`).
fn pivot<S: Syscall>(sys: &S, root: &Path) -> Result<()> {
    sys.chdir(root)
        .map_err(sys_err(format!("chdir into {root:?}")))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(sys_err(format!("pivot_root into {root:?}")))?;
    sys.umount2(Path::new("."), libc::MNT_DETACH)
        .map_err(sys_err("detach the old root".into()))?;
    sys.chdir(Path::new("/")).map_err(sys_err("chdir /".into()))
}

/// Hide a path: an empty read-only tmpfs over a directory, /dev/null over anything else.
fn mask<S: Syscall>(sys: &S, path: &Path) -> Result<()> {
    let result = match sys.kind(path) {
        None => return Ok(()),
        Some(FileKind::Dir) => sys.mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            libc::MS_RDONLY,
            Some("size=0"),
        ),
        Some(_) => sys.mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            libc::MS_BIND,
            None,
        ),
    };
    result.map_err(sys_err(format!("mask {path:?}")))
}

fn make_readonly<S: Syscall>(sys: &S, path: &Path) -> Result<()> {
    if sys.kind(path).is_none() {
        return Ok(());
    }
    sys.mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(sys_err(format!("bind {path:?} on itself")))?;
    remount_readonly(sys, path, libc::MS_RDONLY | libc::MS_REC)
}
