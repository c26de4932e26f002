//! The container's file system view, made inside its new mount namespace: private
//! propagation, the rootfs bound on itself, the configured mounts, a minimal /dev, then
//! pivot_root (or chroot, for the unisolated baseline) and the masked and read-only paths
//! (the order of runc's `prepareRootfs`).

use std::path::{Path, PathBuf};

use super::cgroup::v1::Hierarchy;
use super::config::{ContainerConfig, MountSpec, RootSwitch};
use super::error::{ContainerError, Result};
use super::paths::secure_join;
use super::sys::{FileKind, Syscall};

/// What the mounts need to know about the host.
#[derive(Debug, Clone, Default)]
pub struct HostInfo {
    /// The host's cgroup hierarchy is cgroup v2 only (a guest, or a v2 host).
    pub cgroup2: bool,
    /// On v1 and hybrid hosts, the v1 hierarchies in which the container has a group of
    /// its own: what its /sys/fs/cgroup shows.
    pub cgroup_v1: Vec<V1Hierarchy>,
}

/// A cgroup v1 hierarchy as the container sees it: a directory of /sys/fs/cgroup holding
/// the container's own group, read-only (runc's `mountCgroupV1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// The directory, named as on the host ("memory", "cpu,cpuacct").
    pub name: String,
    /// The data of a `cgroup` mount of the hierarchy: its controllers ("cpu,cpuacct").
    pub options: String,
    /// The container's group on the host, bound when the hierarchy cannot be mounted.
    pub group: PathBuf,
}

impl V1Hierarchy {
    /// The hierarchies among the host's `mounted` ones that hold one of `groups`, the
    /// directories of the container's groups (one hierarchy each). The others would show
    /// the runtime's group, often the host's root, so they stay hidden.
    pub fn of_groups<'a>(
        mounted: &[Hierarchy],
        groups: impl IntoIterator<Item = &'a Path>,
    ) -> Vec<Self> {
        let mut found: Vec<Self> = Vec::new();
        for group in groups {
            let Some(h) = mounted.iter().find(|h| group.starts_with(&h.mount_point)) else {
                continue;
            };
            let Some(name) = h.mount_point.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if h.controllers.is_empty() || found.iter().any(|f| f.name == name) {
                continue;
            }
            found.push(Self {
                name: name.to_owned(),
                options: h.controllers.join(","),
                group: group.to_owned(),
            });
        }
        found
    }
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
/// container's rootfs and its working directory is `/`; [`finalize_rootfs`] then masks and
/// write-protects what the configuration asks for (sysctls and the console come between).
/// `before_switch` runs just before the root changes: in the container's namespaces, with
/// the runtime's file system still in view (where the OCI createContainer hooks run).
pub fn prepare_rootfs<S: Syscall>(
    sys: &S,
    cfg: &ContainerConfig,
    host: HostInfo,
    before_switch: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let root = cfg.rootfs.as_path();
    if !cfg.namespaces.mount {
        before_switch()?;
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
        mount_one(sys, cfg, m, &host)?;
    }
    if cfg.default_devices {
        create_devices(sys, root, cfg.namespaces.user)?;
    }
    before_switch()?;
    match cfg.root_switch {
        RootSwitch::PivotRoot => pivot(sys, root)?,
        RootSwitch::Chroot => {
            sys.chroot(root)
                .map_err(sys_err(format!("chroot into {root:?}")))?;
            sys.chdir(Path::new("/"))
                .map_err(sys_err("chdir /".into()))?;
        }
    }
    Ok(())
}

/// The masked and read-only paths, and a read-only root: after [`prepare_rootfs`] and the
/// writes that need /proc/sys still writable.
pub fn finalize_rootfs<S: Syscall>(sys: &S, cfg: &ContainerConfig) -> Result<()> {
    if !cfg.namespaces.mount {
        return Ok(());
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
    host: &HostInfo,
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
    } else if (m.fstype == "cgroup" || m.fstype == "cgroup2") && host.cgroup2 {
        // The container's own subtree: it is in a cgroup namespace.
        sys.mount(
            Some(Path::new("cgroup2")),
            &target,
            Some("cgroup2"),
            m.flags,
            None,
        )
        .map_err(sys_err(what))?;
    } else if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        mount_cgroup_v1(sys, cfg, m, host, &target)?;
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

/// /sys/fs/cgroup on a v1 or hybrid host, as runc makes it: a tmpfs holding one directory
/// per hierarchy of [`HostInfo::cgroup_v1`] with the container's group mounted on it,
/// links from each controller of a combined hierarchy (cpu -> cpu,cpuacct), then the
/// tmpfs made read-only. A hierarchy that cannot be shown is left out, never an error.
fn mount_cgroup_v1<S: Syscall>(
    sys: &S,
    cfg: &ContainerConfig,
    m: &MountSpec,
    host: &HostInfo,
    target: &Path,
) -> Result<()> {
    sys.mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        m.flags & !libc::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(sys_err(format!("mount tmpfs on {:?}", m.destination)))?;
    let mut shown: Vec<&V1Hierarchy> = Vec::new();
    for h in host.cgroup_v1.iter().filter(|h| is_plain_name(&h.name)) {
        if mount_hierarchy(sys, cfg.namespaces.cgroup, m.flags, h, target)? {
            shown.push(h);
        }
    }
    for h in &shown {
        for controller in h.name.split(',') {
            let taken = controller == h.name || shown.iter().any(|o| o.name == controller);
            if is_plain_name(controller) && !taken {
                // A missing link only costs a name: the hierarchy is there under its own.
                let _ = sys.symlink(Path::new(&h.name), &target.join(controller));
            }
        }
    }
    if m.flags & libc::MS_RDONLY != 0 {
        remount_readonly(sys, target, m.flags)?;
    }
    Ok(())
}

/// Shows one hierarchy at `<target>/<name>`: in a cgroup namespace a mount of the
/// hierarchy has the container's group as its root; without one, or where the mount is
/// refused, the group is bound instead. `Ok(true)` when it is shown; an error only when
/// a bind that should be read-only can neither be made so nor removed.
fn mount_hierarchy<S: Syscall>(
    sys: &S,
    cgroupns: bool,
    flags: u64,
    h: &V1Hierarchy,
    target: &Path,
) -> Result<bool> {
    let dir = target.join(&h.name);
    if sys.mkdir_all(&dir).is_err() {
        return Ok(false);
    }
    let cgroup = Path::new("cgroup");
    if cgroupns
        && sys
            .mount(Some(cgroup), &dir, Some("cgroup"), flags, Some(&h.options))
            .is_ok()
    {
        return Ok(true);
    }
    if sys
        .mount(Some(&h.group), &dir, None, libc::MS_BIND, None)
        .is_err()
    {
        return Ok(false);
    }
    let extra = flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    if extra == 0 || remount_readonly(sys, &dir, extra).is_ok() {
        return Ok(true);
    }
    // Never leave the host's group writable when it was asked for read-only.
    sys.umount2(&dir, libc::MNT_DETACH)
        .map_err(sys_err(format!(
            "detach the writable bind of {:?}",
            h.group
        )))?;
    Ok(false)
}

/// A single path component: not empty, not `.` or `..`, and without a `/`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
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
/// the new one, then detach it (runc's `pivotRoot`). Public for `vmm --jail`.
pub fn pivot<S: Syscall>(sys: &S, root: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::super::cgroup::v1::hierarchies;
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    fn shown(groups: &[&str]) -> Vec<V1Hierarchy> {
        V1Hierarchy::of_groups(&hierarchies(MOUNTINFO), groups.iter().map(Path::new))
    }

    #[test]
    fn hierarchies_holding_the_containers_groups_are_shown_under_the_host_names() {
        let found = shown(&[
            "/sys/fs/cgroup/devices/user/c1",
            "/sys/fs/cgroup/memory/user/c1",
            "/sys/fs/cgroup/cpu,cpuacct/c1",
        ]);
        assert_eq!(
            found,
            [
                ("devices", "devices", "/sys/fs/cgroup/devices/user/c1"),
                ("memory", "memory", "/sys/fs/cgroup/memory/user/c1"),
                (
                    "cpu,cpuacct",
                    "cpu,cpuacct",
                    "/sys/fs/cgroup/cpu,cpuacct/c1"
                ),
            ]
            .map(|(name, options, group)| V1Hierarchy {
                name: name.into(),
                options: options.into(),
                group: group.into(),
            })
        );
    }

    #[test]
    fn hierarchies_without_a_container_group_stay_hidden() {
        let names: Vec<String> = shown(&["/sys/fs/cgroup/memory/c1"])
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(
            names,
            ["memory"],
            "pids, systemd and unified hold no group of it"
        );
    }

    #[test]
    fn group_outside_every_hierarchy_is_ignored() {
        assert!(shown(&["/sys/fs/cgroup/cpu/c1", "/elsewhere/c1"]).is_empty());
    }
}
