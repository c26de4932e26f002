//! The VM's own cgroup for `--cgroup KEY=VALUE`: one group per controller named by a key
//! (cgroup v1 and hybrid hosts, under the VMM's own group in that hierarchy, as the
//! container runtime places its groups) or one group `<root>/vmm/<name>` with those
//! controllers enabled on the way down (v2). The parent VMM makes it and writes the values
//! before the fork, so a bad key is refused before anything is jailed; the jailed VMM joins
//! it; the parent removes it when the VM has ended. Host detection and the v1 mount table
//! come from the runtime crate.

use std::io;
use std::path::{Path, PathBuf};

use runtime::cgroup::{self, v1, CgroupMode, CGROUP_ROOT};

use super::error::JailError;

/// One `--cgroup KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSetting {
    /// A file of a controller: `memory.limit_in_bytes`.
    pub key: String,
    pub value: String,
}

impl CgroupSetting {
    /// Parses `KEY=VALUE`: the key a plain `CONTROLLER.FILE` name (no `/`), not one of the
    /// cgroup core's own files (`cgroup.procs`: joining is the jail's business).
    pub fn parse(text: &str) -> Result<Self, JailError> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| JailError::CgroupSyntax {
                value: text.to_owned(),
            })?;
        let key = key.trim();
        let bad_key = || JailError::CgroupKey {
            key: key.to_owned(),
        };
        let (controller, file) = key.split_once('.').ok_or_else(bad_key)?;
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if !plain(controller) || !plain(file) || controller == "cgroup" {
            return Err(bad_key());
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }

    /// The controller whose file the key names: `memory` of `memory.max`.
    pub fn controller(&self) -> &str {
        self.key.split('.').next().unwrap_or_default()
    }
}

/// The VM's groups, removed when dropped (the parent keeps this; the jailed VMM forgets
/// its copy after joining).
#[derive(Debug)]
pub struct VmCgroup {
    dirs: Vec<PathBuf>,
}

impl VmCgroup {
    /// Creates the group `name` for `settings` and writes them; `None` without settings.
    pub fn create(settings: &[CgroupSetting], name: &str) -> Result<Option<Self>, JailError> {
        if settings.is_empty() {
            return Ok(None);
        }
        let mode = cgroup::detect_mode();
        let mut group = Self { dirs: Vec::new() };
        for setting in settings {
            let dir = match mode {
                CgroupMode::V2 => group.v2_dir(setting, name)?,
                CgroupMode::V1 | CgroupMode::Hybrid => group.v1_dir(setting, name, mode)?,
                CgroupMode::None => {
                    return Err(JailError::ControllerNotMounted {
                        key: setting.key.clone(),
                        controller: setting.controller().to_owned(),
                        mode: mode.as_str(),
                    })
                }
            };
            let file = dir.join(&setting.key);
            if !file.is_file() {
                return Err(JailError::UnknownCgroupKey {
                    key: setting.key.clone(),
                    controller: setting.controller().to_owned(),
                });
            }
            std::fs::write(&file, setting.value.trim()).map_err(|source| {
                JailError::CgroupValue {
                    key: setting.key.clone(),
                    value: setting.value.clone(),
                    source,
                }
            })?;
        }
        Ok(Some(group))
    }

    /// The group's directories (one per v1 hierarchy, one on v2).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Moves the calling process into every directory of the group ("0": the writer, so no
    /// pid has to be translated between PID namespaces).
    pub fn join(dirs: &[PathBuf]) -> Result<(), JailError> {
        for dir in dirs {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, "0").map_err(|source| JailError::Cgroup {
                path: procs,
                action: "join it",
                source,
            })?;
        }
        Ok(())
    }

    /// v1: the group in the hierarchy holding the setting's controller, made on first use.
    fn v1_dir(
        &mut self,
        setting: &CgroupSetting,
        name: &str,
        mode: CgroupMode,
    ) -> Result<PathBuf, JailError> {
        let controller = setting.controller();
        let mounts = v1::hierarchies(&read("/proc/self/mountinfo")?);
        let own = read("/proc/self/cgroup")?;
        let hierarchy = mounts
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .ok_or_else(|| JailError::ControllerNotMounted {
                key: setting.key.clone(),
                controller: controller.to_owned(),
                mode: mode.as_str(),
            })?;
        let dir = v1_group_dir(hierarchy, &own, controller, name);
        if !self.dirs.contains(&dir) {
            make_dir(&dir)?;
            self.dirs.push(dir.clone());
            if controller == "cpuset" {
                // A new cpuset group refuses tasks until it has CPUs and memory nodes.
                v1::apply("cpuset", &dir, &Default::default())?;
            }
        }
        Ok(dir)
    }

    /// v2: `<root>/vmm/<name>`, with the setting's controller enabled for it.
    fn v2_dir(&mut self, setting: &CgroupSetting, name: &str) -> Result<PathBuf, JailError> {
        let root = Path::new(CGROUP_ROOT);
        let controller = setting.controller();
        let available =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if !available.split_whitespace().any(|c| c == controller) {
            return Err(JailError::ControllerNotMounted {
                key: setting.key.clone(),
                controller: controller.to_owned(),
                mode: CgroupMode::V2.as_str(),
            });
        }
        let parent = root.join(cgroup::v2::PARENT);
        if !parent.is_dir() {
            make_dir(&parent)?;
        }
        for dir in [root, parent.as_path()] {
            let control = dir.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == controller) {
                std::fs::write(&control, format!("+{controller}")).map_err(|source| {
                    JailError::Cgroup {
                        path: control.clone(),
                        action: "enable the controller",
                        source,
                    }
                })?;
            }
        }
        let dir = parent.join(name);
        if self.dirs.is_empty() {
            make_dir(&dir)?;
            self.dirs.push(dir.clone());
        }
        Ok(dir)
    }
}

impl Drop for VmCgroup {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            cgroup::remove_dir(dir);
        }
    }
}

/// The VM's group `name` in `hierarchy`: below the caller's own group there (from
/// `/proc/self/cgroup` text), as seen through the hierarchy's mount point.
pub fn v1_group_dir(
    hierarchy: &v1::Hierarchy,
    proc_cgroup: &str,
    controller: &str,
    name: &str,
) -> PathBuf {
    let own = v1::own_group(proc_cgroup, controller).unwrap_or("/");
    let relative = own.strip_prefix(hierarchy.root.as_str()).unwrap_or(own);
    hierarchy
        .mount_point
        .join(relative.trim_start_matches('/'))
        .join(name)
}

fn read(path: &str) -> Result<String, JailError> {
    std::fs::read_to_string(path).map_err(|source| JailError::Cgroup {
        path: path.into(),
        action: "read it",
        source,
    })
}

fn make_dir(dir: &Path) -> Result<(), JailError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(JailError::Cgroup {
            path: dir.to_owned(),
            action: "create it",
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_a_controller_file_and_a_value() {
        let s = CgroupSetting::parse("memory.limit_in_bytes=268435456").unwrap();
        assert_eq!(s.key, "memory.limit_in_bytes");
        assert_eq!(s.value, "268435456");
        assert_eq!(s.controller(), "memory");
        let v2 = CgroupSetting::parse("cpu.max=50000 100000").unwrap();
        assert_eq!(
            (v2.controller(), v2.value.as_str()),
            ("cpu", "50000 100000")
        );
    }

    #[test]
    fn a_setting_without_a_value_is_refused() {
        let err = CgroupSetting::parse("memory.max").unwrap_err();
        assert!(err.is_bad_input());
        assert_eq!(err.to_string(), "--cgroup \"memory.max\" is not KEY=VALUE");
    }

    #[test]
    fn keys_that_leave_the_group_or_name_core_files_are_refused() {
        for key in [
            "../memory.max",
            "memory/../x.y",
            "memory",
            "cgroup.procs",
            ".max",
            "memory.",
        ] {
            let err = CgroupSetting::parse(&format!("{key}=1")).unwrap_err();
            assert!(matches!(err, JailError::CgroupKey { .. }), "{key}: {err}");
        }
    }

    #[test]
    fn the_v1_group_lies_below_the_callers_own_group() {
        let h = v1::Hierarchy {
            controllers: vec!["memory".into()],
            mount_point: "/sys/fs/cgroup/memory".into(),
            root: "/".into(),
        };
        let own = "4:memory:/user/session\n1:cpu:/\n";
        assert_eq!(
            v1_group_dir(&h, own, "memory", "vmm-jail-7"),
            Path::new("/sys/fs/cgroup/memory/user/session/vmm-jail-7")
        );
        let bound = v1::Hierarchy {
            root: "/user".into(),
            ..h
        };
        assert_eq!(
            v1_group_dir(&bound, own, "memory", "j"),
            Path::new("/sys/fs/cgroup/memory/session/j")
        );
    }
}
