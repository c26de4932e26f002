//! cgroup v2 (a v2-only host or a guest): one directory `<root>/vmm/<id>`, with the
//! controllers it needs enabled on the way down (a group with processes cannot enable
//! controllers for its children, so the runtime's own group is not used as the parent).

use std::path::{Path, PathBuf};

use super::super::config::Resources;
use super::super::error::{ContainerError, Result};
use super::{mkdir, remove_dir, require, stat_value, write};

/// The directory under the hierarchy root that holds the containers' groups.
pub const PARENT: &str = "vmm";

/// Controllers enabled for every group when available, for what they count.
const ACCOUNTING: [&str; 2] = ["memory", "pids"];

/// cgroup v1 `cpu.shares` (2–262144) as v2 `cpu.weight` (1–10000), the mapping runc and
/// crun use: 2 → 1, 1024 → 39, 262144 → 10000.
pub fn weight_of_shares(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

#[derive(Debug)]
pub struct V2Cgroup {
    dir: PathBuf,
}

impl V2Cgroup {
    /// Create `<root>/vmm/<id>` (or `<root>/<path>` for an absolute OCI cgroupsPath,
    /// `<root>/vmm/<path>` for a relative one) with `resources` applied.
    pub fn create(
        root: &Path,
        id: &str,
        path: Option<&Path>,
        resources: &Resources,
    ) -> Result<Self> {
        let dir = match path.map(super::checked_path).transpose()? {
            Some((p, true)) => root.join(p),
            Some((p, false)) => root.join(PARENT).join(p),
            None => root.join(PARENT).join(id),
        };
        if resources.memory_swappiness.is_some() {
            return Err(ContainerError::Unsupported(
                "linux.resources.memory.swappiness: cgroup v2 has no per-group swappiness".into(),
            ));
        }
        let mut needed = Vec::new();
        if resources.uses_memory() {
            needed.push("memory");
        }
        if resources.pids.is_some() {
            needed.push("pids");
        }
        if resources.uses_cpu() {
            needed.push("cpu");
        }
        let available =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if let Some(missing) = needed
            .iter()
            .find(|c| !available.split_whitespace().any(|a| a == **c))
        {
            return Err(ContainerError::Setup(format!(
                "the cgroup v2 {missing} controller is not available in {root:?}"
            )));
        }
        // memory and pids are on whenever the kernel has them, limits or not: only with the
        // memory controller does memory.events count the group's OOM kills (a guest-wide
        // OOM kill of a workload without a limit included).
        let turned_on: Vec<&str> = ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|c| {
                needed.contains(c)
                    || (ACCOUNTING.contains(c) && available.split_whitespace().any(|a| a == *c))
            })
            .collect();
        // Each group from the root down to the container's parent enables the controllers
        // for the group below it.
        let mut ancestors: Vec<PathBuf> = dir
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(root))
            .map(Path::to_path_buf)
            .collect();
        ancestors.reverse();
        let plus = |list: &[&str]| list.iter().map(|c| format!("+{c}")).collect::<Vec<_>>();
        for dir in &ancestors {
            mkdir(dir)?;
            let control = dir.join("cgroup.subtree_control");
            let current = std::fs::read_to_string(&control).unwrap_or_default();
            let lacks = |list: &[&str]| {
                list.iter()
                    .any(|c| !current.split_whitespace().any(|e| e == *c))
            };
            if !lacks(&turned_on) {
                continue;
            }
            // The accounting controllers are best effort (a cgroup namespace's root that
            // holds processes refuses them; the group works without): on failure, only
            // the controllers the limits need are insisted on.
            if std::fs::write(&control, plus(&turned_on).join(" ")).is_err() && lacks(&needed) {
                write(&control, &plus(&needed).join(" "))?;
            }
        }
        mkdir(&dir)?;
        let cgroup = Self { dir };
        cgroup.apply(resources)?;
        Ok(cgroup)
    }

    fn apply(&self, r: &Resources) -> Result<()> {
        if let Some(bytes) = r.memory {
            write(&self.dir.join("memory.max"), &bytes.to_string())?;
        }
        let swap = self.dir.join("memory.swap.max");
        let swap_max = match (r.memory_swap, r.memory) {
            (Some(total), memory) => {
                require(
                    &swap,
                    "linux.resources.memory.swap",
                    "this host does not account swap (no memory.swap.max)",
                )?;
                // v1's memory-plus-swap total, as v2's swap alone (runc's conversion).
                Some(match memory {
                    Some(bytes) if total >= 0 => (total - bytes).max(0).to_string(),
                    _ => "max".to_owned(),
                })
            }
            // No swapping past the memory limit.
            (None, Some(_)) if swap.exists() => Some("0".to_owned()),
            (None, _) => None,
        };
        if let Some(value) = swap_max {
            write(&swap, &value)?;
        }
        if let Some(bytes) = r.memory_reservation {
            write(&self.dir.join("memory.low"), &bytes.to_string())?;
        }
        if let Some(n) = r.pids {
            write(&self.dir.join("pids.max"), &n.to_string())?;
        }
        if let Some(shares) = r.cpu_shares {
            write(
                &self.dir.join("cpu.weight"),
                &weight_of_shares(shares).to_string(),
            )?;
        }
        if let Some(cpu) = r.cpu {
            let quota = if cpu.quota < 0 {
                "max".to_owned()
            } else {
                cpu.quota.to_string()
            };
            write(
                &self.dir.join("cpu.max"),
                &format!("{quota} {}", cpu.period),
            )?;
        }
        if let Some(burst) = r.cpu_burst {
            let file = self.dir.join("cpu.max.burst");
            require(
                &file,
                "linux.resources.cpu.burst",
                "this kernel has no CFS burst (Linux 5.14+)",
            )?;
            write(&file, &burst.to_string())?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn oom_killed(&self) -> bool {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .ok()
            .and_then(|t| stat_value(&t, "oom_kill"))
            .is_some_and(|n| n > 0)
    }
}

impl Drop for V2Cgroup {
    fn drop(&mut self) {
        remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_map_to_weights_as_runc_maps_them() {
        assert_eq!(super::weight_of_shares(2), 1);
        assert_eq!(super::weight_of_shares(1024), 39);
        assert_eq!(super::weight_of_shares(262_144), 10_000);
        assert_eq!(super::weight_of_shares(0), 1, "clamped");
    }

    use super::super::super::config::CpuQuota;
    use super::*;

    fn fake_root(name: &str, controllers: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("vmm-v2-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), controllers).unwrap();
        root
    }

    #[test]
    fn limits_and_controllers_are_written_to_v2_files() {
        let root = fake_root("limits", "cpuset cpu io memory pids");
        let r = Resources {
            memory: Some(64 << 20),
            pids: Some(32),
            cpu: Some(CpuQuota {
                quota: 25_000,
                period: 100_000,
            }),
            ..Resources::default()
        };
        let cg = V2Cgroup::create(&root, "c1", None, &r).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(cg.dir(), root.join("vmm/c1"));
        assert_eq!(read(&cg.dir().join("memory.max")), "67108864");
        assert_eq!(read(&cg.dir().join("pids.max")), "32");
        assert_eq!(read(&cg.dir().join("cpu.max")), "25000 100000");
        assert_eq!(
            read(&root.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        assert_eq!(
            read(&root.join("vmm/cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        std::fs::write(cg.dir().join("memory.events"), "low 0\noom 1\noom_kill 1\n").unwrap();
        assert!(cg.oom_killed());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn memory_and_pids_are_enabled_without_limits_for_oom_accounting() {
        let root = fake_root("accounting", "cpu memory pids");
        let cg = V2Cgroup::create(&root, "c3", None, &Resources::default()).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&root.join("cgroup.subtree_control")), "+memory +pids");
        assert_eq!(
            read(&root.join("vmm/cgroup.subtree_control")),
            "+memory +pids"
        );
        drop(cg);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn swap_reservation_burst_and_a_period_alone_are_written_to_v2_files() {
        let root = fake_root("more", "cpu memory pids");
        // The files a real group has from its creation.
        let group = root.join("vmm/c4");
        std::fs::create_dir_all(&group).unwrap();
        for f in ["memory.swap.max", "cpu.max.burst"] {
            std::fs::write(group.join(f), "").unwrap();
        }
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            memory_reservation: Some(16 << 20),
            cpu: Some(CpuQuota {
                quota: CpuQuota::UNLIMITED,
                period: 50_000,
            }),
            ..Resources::default()
        };
        let cg = V2Cgroup::create(&root, "c4", None, &r).unwrap();
        let read = |f: &str| std::fs::read_to_string(cg.dir().join(f)).unwrap();
        assert_eq!(read("memory.swap.max"), (32u64 << 20).to_string());
        assert_eq!(read("memory.low"), (16u64 << 20).to_string());
        assert_eq!(read("cpu.max"), "max 50000");
        let burst = Resources {
            cpu: Some(CpuQuota {
                quota: 40_000,
                period: 100_000,
            }),
            cpu_burst: Some(10_000),
            memory_swap: None,
            ..r
        };
        cg.apply(&burst).unwrap();
        assert_eq!(read("cpu.max.burst"), "10000");
        // The group (a plain directory with files here) goes with the root.
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn swappiness_is_refused_on_v2_before_anything_is_made() {
        let root = fake_root("swappiness", "cpu memory pids");
        let r = Resources {
            memory_swappiness: Some(10),
            ..Resources::default()
        };
        let err = V2Cgroup::create(&root, "c5", None, &r).unwrap_err();
        assert!(
            err.is_bad_input() && err.to_string().contains("swappiness"),
            "{err}"
        );
        assert!(!root.join("vmm").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_controller_is_reported() {
        let root = fake_root("missing", "cpu io");
        let r = Resources {
            pids: Some(5),
            ..Resources::default()
        };
        let err = V2Cgroup::create(&root, "c2", None, &r).unwrap_err();
        assert!(err.to_string().contains("pids"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
