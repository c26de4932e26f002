//! The container's cgroup: detect how the host mounts cgroups (statfs of /sys/fs/cgroup, as
//! youki and crun do), create the container's group, apply memory/pids/cpu limits, put the
//! process in it, report an OOM kill and remove the group afterwards.
//!
//! On a hybrid host (v1 controllers, an empty v2 tree at /sys/fs/cgroup/unified) the limits
//! live in the v1 controllers, so hybrid is handled as v1.

mod mode;
pub mod v1;
pub mod v2;

pub use mode::{classify_mode, detect_mode, CgroupMode};

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::config::{DeviceRule, Resources};
use super::error::{ContainerError, Result};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A container's cgroup; removed when dropped.
#[derive(Debug)]
pub enum Cgroup {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

impl Cgroup {
    /// Create the group named `id` (or at `path`, an OCI `cgroupsPath`) with
    /// `resources` applied.
    pub fn create(
        mode: CgroupMode,
        id: &str,
        path: Option<&Path>,
        resources: &Resources,
        device_rules: &[DeviceRule],
    ) -> Result<Self> {
        match mode {
            CgroupMode::V2 => {
                v2::V2Cgroup::create(Path::new(CGROUP_ROOT), id, path, resources).map(Self::V2)
            }
            CgroupMode::None => Err(ContainerError::Cgroup {
                path: CGROUP_ROOT.into(),
                action: "find a cgroup file system (neither cgroup2 nor a tmpfs of v1 hierarchies is mounted there)",
                source: io::Error::from(io::ErrorKind::NotFound),
            }),
            CgroupMode::V1 | CgroupMode::Hybrid => {
                let mounts = v1::hierarchies(&read("/proc/self/mountinfo")?);
                let own = read("/proc/self/cgroup")?;
                v1::V1Cgroup::create(&mounts, &own, id, path, resources, device_rules)
                    .map(Self::V1)
            }
        }
    }

    /// The group's directories: one per v1 hierarchy, one on v2.
    pub fn dirs(&self) -> Vec<std::path::PathBuf> {
        match self {
            Self::V1(c) => c.dirs().map(Path::to_path_buf).collect(),
            Self::V2(c) => vec![c.dir().to_path_buf()],
        }
    }

    /// Leaves the group in place for whoever records its directories (an OCI `delete`).
    pub fn keep(self) {
        std::mem::forget(self);
    }

    /// Move process `pid` (all its threads) into the group.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let dirs: Vec<&Path> = match self {
            Self::V1(c) => c.dirs().collect(),
            Self::V2(c) => vec![c.dir()],
        };
        for dir in dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// True when the group enforces a device allowlist (v1 `devices`; v2 would need an eBPF
    /// program, which this runtime does not load).
    pub fn restricts_devices(&self) -> bool {
        match self {
            Self::V1(c) => c.has_controller("devices"),
            Self::V2(_) => false,
        }
    }

    /// The processes in the group directory `dir` (its `cgroup.procs`).
    pub fn procs_of(dir: &Path) -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Kills every process in the group (SIGKILL): `cgroup.kill` on v2 (Linux 5.14+),
    /// each listed process otherwise.
    pub fn kill_all(&self) {
        let dirs: Vec<&Path> = match self {
            Self::V1(c) => c.dirs().take(1).collect(),
            Self::V2(c) => {
                if std::fs::write(c.dir().join("cgroup.kill"), "1").is_ok() {
                    return;
                }
                vec![c.dir()]
            }
        };
        for dir in dirs {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) with plain integers; a pid that already exited is ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// True when the kernel's OOM killer killed a process of the group.
    pub fn oom_killed(&self) -> bool {
        match self {
            Self::V1(c) => c.oom_killed(),
            Self::V2(c) => c.oom_killed(),
        }
    }
}

pub(crate) fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ContainerError::Cgroup {
        path: path.into(),
        action: "read",
        source,
    })
}

pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| ContainerError::Cgroup {
        path: path.to_owned(),
        action: "write",
        source,
    })
}

/// Refuses `field` (a bundle's, by its OCI name) when this host's group lacks `path`, the
/// file that would apply it, saying `why`.
pub(crate) fn require(path: &Path, field: &str, why: &str) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(ContainerError::Unsupported(format!("{field}: {why}")))
    }
}

pub(crate) fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(ContainerError::Cgroup {
            path: path.to_owned(),
            action: "create",
            source: e,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn mkdir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| ContainerError::Cgroup {
        path: path.to_owned(),
        action: "create",
        source,
    })
}

/// An OCI `cgroupsPath` made relative (with whether it was absolute), refused when it has
/// `..` or nothing but `/`: it must name a group below the hierarchy's root.
pub(crate) fn checked_path(path: &Path) -> Result<(std::path::PathBuf, bool)> {
    use std::path::Component;
    let mut relative = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => relative.push(n),
            _ => {
                return Err(ContainerError::InvalidValue {
                    what: "cgroupsPath",
                    value: path.display().to_string(),
                    reason: "must not contain '..'".into(),
                })
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(ContainerError::InvalidValue {
            what: "cgroupsPath",
            value: path.display().to_string(),
            reason: "names no group below the root".into(),
        });
    }
    Ok((relative, path.is_absolute()))
}

/// Remove a cgroup directory, retrying while its last tasks finish exiting (EBUSY).
pub fn remove_dir(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_micros(100);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                eprintln!("vmm: warning: cannot remove cgroup {path:?}: {e}");
                return;
            }
        }
    }
}

/// Removes the group directories a dead runtime left behind: whatever still runs in them
/// is killed first (SIGKILL, again while new ones appear, for at most two seconds).
pub fn remove_leftovers(dirs: &[std::path::PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    for dir in dirs {
        loop {
            let procs = Cgroup::procs_of(dir);
            if procs.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in procs {
                // SAFETY: kill(2) with plain integers; a pid that already exited is ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        remove_dir(dir);
    }
}

/// The `N` of a `key N` line in a cgroup stat file.
pub(crate) fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}
