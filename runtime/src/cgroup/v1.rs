//! cgroup v1 (and hybrid hosts): one directory per controller hierarchy, under the
//! caller's own group in each, so the container stays inside whatever contains its runtime.

use std::path::{Path, PathBuf};

use super::super::config::{DeviceRule, Resources};
use super::super::error::{ContainerError, Result};
use super::{mkdir, mkdir_all, remove_dir, require, stat_value, write};

/// A mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The hierarchy path mounted there (`/` unless the mount is a bind of a subtree).
    pub root: String,
}

/// The device rules of runc's default allowlist: mknod of anything, and access to the
/// nodes of the minimal /dev, ptys and /dev/net/tun.
pub const DEVICE_ALLOW: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// The v1 hierarchies in `/proc/self/mountinfo` text.
pub fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut post = post.split(' ');
            if post.next()? != "cgroup" {
                return None;
            }
            let super_opts = post.nth(1)?;
            let pre: Vec<&str> = pre.split(' ').collect();
            Some(Hierarchy {
                controllers: super_opts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                    .map(str::to_owned)
                    .collect(),
                mount_point: PathBuf::from(pre.get(4)?),
                root: (*pre.get(3)?).to_owned(),
            })
        })
        .collect()
}

/// The caller's group in the hierarchy holding `controller`, from `/proc/self/cgroup` text.
pub fn own_group<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        list.split(',').any(|c| c == controller).then_some(path)
    })
}

#[derive(Debug, Default)]
pub struct V1Cgroup {
    /// (controller, directory), in creation order.
    dirs: Vec<(String, PathBuf)>,
}

impl V1Cgroup {
    pub fn create(
        hierarchies: &[Hierarchy],
        proc_cgroup: &str,
        id: &str,
        path: Option<&Path>,
        resources: &Resources,
        device_rules: &[DeviceRule],
    ) -> Result<Self> {
        let path = path.map(super::checked_path).transpose()?;
        let mut wanted = vec!["devices"];
        if resources.uses_memory() {
            wanted.push("memory");
        }
        if resources.pids.is_some() {
            wanted.push("pids");
        }
        if resources.uses_cpu() {
            wanted.push("cpu");
        }
        if path.is_some() {
            // An OCI bundle's container joins every hierarchy, as runc's do: its clients
            // read the container's statistics there (containerd's metrics, memory).
            for h in hierarchies {
                if let Some(c) = h.controllers.first() {
                    if !wanted.contains(&c.as_str()) {
                        wanted.push(c.as_str());
                    }
                }
            }
        }
        let mut cgroup = Self::default();
        for controller in wanted {
            let Some(h) = hierarchies
                .iter()
                .find(|h| h.controllers.iter().any(|c| c == controller))
            else {
                if controller == "devices" {
                    continue;
                }
                return Err(ContainerError::Setup(format!(
                    "the cgroup v1 {controller} controller is not mounted"
                )));
            };
            let own = own_group(proc_cgroup, controller).unwrap_or("/");
            let relative = own.strip_prefix(h.root.as_str()).unwrap_or(own);
            let under_own = h.mount_point.join(relative.trim_start_matches('/'));
            let dir = match &path {
                // An absolute cgroupsPath is relative to the hierarchy's root.
                Some((p, true)) => h.mount_point.join(p),
                Some((p, false)) => under_own.join(p),
                None => under_own.join(id),
            };
            if cgroup.dirs.iter().any(|(_, d)| *d == dir) {
                continue;
            }
            if let Some(parent) = dir.parent() {
                mkdir_all(parent)?;
            }
            mkdir(&dir)?;
            cgroup.dirs.push((controller.to_owned(), dir.clone()));
            apply(controller, &dir, resources)?;
            if controller == "devices" {
                apply_device_rules(&dir, device_rules);
            }
        }
        Ok(cgroup)
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    pub fn has_controller(&self, controller: &str) -> bool {
        self.dir_of(controller).is_some()
    }

    fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.as_path())
    }

    pub fn oom_killed(&self) -> bool {
        self.dir_of("memory")
            .and_then(|d| std::fs::read_to_string(d.join("memory.oom_control")).ok())
            .and_then(|t| stat_value(&t, "oom_kill"))
            .is_some_and(|n| n > 0)
    }
}

impl Drop for V1Cgroup {
    fn drop(&mut self) {
        for (_, dir) in self.dirs.iter().rev() {
            remove_dir(dir);
        }
    }
}

/// A new cpuset group starts with no CPUs and no memory nodes, and refuses tasks until it
/// has some: it takes its parent's, the parent first when it is new too (`depth` bounds
/// the walk up; the hierarchy's root always has both).
fn inherit_cpuset(dir: &Path, file: &str, depth: u32) -> Result<()> {
    let own = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    if !own.trim().is_empty() || depth == 0 {
        return Ok(());
    }
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    inherit_cpuset(parent, file, depth - 1)?;
    let theirs = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
    write(&dir.join(file), theirs.trim())
}

fn allow_defaults(dir: &Path) {
    for rule in DEVICE_ALLOW {
        // A parent group may itself refuse some rules (when nested): keep going.
        let _ = write(&dir.join("devices.allow"), rule);
    }
}

/// The bundle's device rules in order, then the runtime's allowlist again (runc's order:
/// a bundle's deny-all must not take away /dev/null).
fn apply_device_rules(dir: &Path, rules: &[DeviceRule]) {
    if rules.is_empty() {
        return;
    }
    for r in rules {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        // As for the defaults: a rule the parent group refuses is left out.
        let _ = write(&dir.join(file), &r.rule);
    }
    allow_defaults(dir);
}

/// Write the limits `controller` is responsible for.
pub fn apply(controller: &str, dir: &Path, r: &Resources) -> Result<()> {
    match controller {
        "memory" => apply_memory(dir, r)?,
        "pids" => {
            if let Some(n) = r.pids {
                write(&dir.join("pids.max"), &n.to_string())?;
            }
        }
        "cpu" => {
            if let Some(shares) = r.cpu_shares {
                write(&dir.join("cpu.shares"), &shares.to_string())?;
            }
            if let Some(cpu) = r.cpu {
                write(&dir.join("cpu.cfs_period_us"), &cpu.period.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &cpu.quota.to_string())?;
            }
            if let Some(burst) = r.cpu_burst {
                let file = dir.join("cpu.cfs_burst_us");
                require(
                    &file,
                    "linux.resources.cpu.burst",
                    "this kernel has no CFS burst (Linux 5.14+)",
                )?;
                write(&file, &burst.to_string())?;
            }
        }
        "cpuset" => {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                inherit_cpuset(dir, file, 16)?;
            }
        }
        "devices" => {
            write(&dir.join("devices.deny"), "a")?;
            allow_defaults(dir);
        }
        _ => {}
    }
    Ok(())
}

/// The memory controller's limits; the limit before memory plus swap, which may not be
/// below it.
fn apply_memory(dir: &Path, r: &Resources) -> Result<()> {
    if let Some(bytes) = r.memory {
        write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
    }
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    match (r.memory_swap, r.memory) {
        (Some(total), _) => {
            require(
                &memsw,
                "linux.resources.memory.swap",
                "this host does not account swap (no memory.memsw files: boot with swapaccount=1)",
            )?;
            write(&memsw, &total.to_string())?;
        }
        // Memory plus swap limited to the same total: no swapping past the limit.
        (None, Some(bytes)) if memsw.exists() => write(&memsw, &bytes.to_string())?,
        (None, _) => {}
    }
    if let Some(bytes) = r.memory_reservation {
        write(&dir.join("memory.soft_limit_in_bytes"), &bytes.to_string())?;
    }
    if let Some(swappiness) = r.memory_swappiness {
        write(&dir.join("memory.swappiness"), &swappiness.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::config::CpuQuota;
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
36 31 0:33 /outer /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
41 31 0:38 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd";

    #[test]
    fn hierarchies_come_from_mountinfo() {
        let h = hierarchies(MOUNTINFO);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h[1].root, "/outer");
        assert!(
            h[2].controllers.is_empty(),
            "named hierarchy has no controller"
        );
    }

    #[test]
    fn own_group_is_found_by_controller() {
        let text = "4:memory:/a/b\n1:cpu,cpuacct:/\n0::/";
        assert_eq!(own_group(text, "memory"), Some("/a/b"));
        assert_eq!(own_group(text, "cpuacct"), Some("/"));
        assert_eq!(own_group(text, "pids"), None);
    }

    #[test]
    fn limits_are_written_to_v1_files() {
        let dir = std::env::temp_dir().join(format!("vmm-v1-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = Resources {
            memory: Some(1 << 20),
            pids: Some(7),
            cpu: Some(CpuQuota {
                quota: 50_000,
                period: 100_000,
            }),
            cpu_shares: Some(512),
            ..Resources::default()
        };
        for c in ["memory", "pids", "cpu"] {
            apply(c, &dir, &r).unwrap();
        }
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.limit_in_bytes"), "1048576");
        assert_eq!(read("pids.max"), "7");
        assert_eq!(read("cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu.cfs_period_us"), "100000");
        assert_eq!(read("cpu.shares"), "512");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_group(name: &str, files: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmm-v1-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), "").unwrap();
        }
        dir
    }

    #[test]
    fn swap_reservation_swappiness_and_burst_are_written_to_v1_files() {
        let dir = temp_group("more", &["memory.memsw.limit_in_bytes", "cpu.cfs_burst_us"]);
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            memory_reservation: Some(32 << 20),
            memory_swappiness: Some(10),
            cpu: Some(CpuQuota {
                quota: 50_000,
                period: 100_000,
            }),
            cpu_burst: Some(20_000),
            ..Resources::default()
        };
        apply("memory", &dir, &r).unwrap();
        apply("cpu", &dir, &r).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.limit_in_bytes"), "67108864");
        assert_eq!(read("memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(read("memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(read("memory.swappiness"), "10");
        assert_eq!(read("cpu.cfs_burst_us"), "20000");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_period_alone_leaves_the_quota_unlimited() {
        let dir = temp_group("period", &[]);
        let r = Resources {
            cpu: Some(CpuQuota {
                quota: CpuQuota::UNLIMITED,
                period: 50_000,
            }),
            ..Resources::default()
        };
        apply("cpu", &dir, &r).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("cpu.cfs_period_us"), "50000");
        assert_eq!(read("cpu.cfs_quota_us"), "-1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn swap_on_a_host_without_swap_accounting_is_refused() {
        let dir = temp_group("nomemsw", &[]);
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            ..Resources::default()
        };
        let err = apply("memory", &dir, &r).unwrap_err();
        assert!(
            err.is_bad_input() && err.to_string().contains("swap"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
