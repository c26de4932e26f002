//! The containers of `vmm container run` and `vmm run --isolation container`: each run
//! holds its container ID for its whole life, in a locked directory under a state root
//! ([`DEFAULT_ROOT`], through [`super::state_dir`], the lock vmm-runc keeps its IDs by), so
//! a second run of a live ID is refused instead of sharing and overwriting its cgroup.
//! The directory records the run's cgroup directories as soon as they exist; a runtime
//! killed with SIGKILL leaves them and the record behind (its workload dies with it, by
//! its parent-death signal), and the next run of that ID, or [`delete`], removes them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cgroup;
use super::config::ContainerConfig;
use super::error::{ContainerError, Result};
use super::launch::{self, Outcome};
use super::state_dir::{self, Locked, StateDirError};

/// Where the runs' directories live unless the caller says otherwise (runc's is /run/runc,
/// vmm-runc's /run/vmm-runc).
pub const DEFAULT_ROOT: &str = "/run/vmm/containers";
/// The record in a run's directory.
const RECORD: &str = "run.json";

/// What a run leaves for whoever finds its directory after it died.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RunRecord {
    /// The runtime's process (the lock's holder), for the message that refuses its ID.
    pid: u32,
    cgroup_dirs: Vec<PathBuf>,
}

/// Runs the container `cfg` (see [`launch::run`]) holding its ID under `root`: refused
/// when a live run holds it, after removing a dead run's leftovers when one held it last.
pub fn run(root: &Path, cfg: &ContainerConfig) -> Result<Outcome> {
    let locked = claim(root, &cfg.id)?;
    let mut record = RunRecord {
        pid: std::process::id(),
        cgroup_dirs: Vec::new(),
    };
    locked.write_json(RECORD, &record)?;
    let outcome = launch::run_recording(cfg, &mut |dirs| {
        record.cgroup_dirs = dirs.to_vec();
        Ok(locked.write_json(RECORD, &record)?)
    });
    // The run's cgroup is gone with it (launch removes it, whatever the outcome).
    if let Err(e) = locked.remove() {
        eprintln!(
            "vmm: warning: {}",
            edge::error_chain(&ContainerError::from(e))
        );
    }
    outcome
}

/// Removes what the dead run of `id` left behind (its cgroups and its directory); refused
/// while a live run holds `id`.
pub fn delete(root: &Path, id: &str) -> Result<()> {
    let locked = match state_dir::try_open(root, id) {
        Ok(locked) => locked,
        Err(StateDirError::Busy(_)) => return Err(in_use(root, id)),
        Err(e) => return Err(e.into()),
    };
    reclaim(&locked);
    Ok(locked.remove()?)
}

/// The directory of `id`, held, with a dead holder's leftovers removed.
fn claim(root: &Path, id: &str) -> Result<Locked> {
    let locked = match state_dir::claim(root, id) {
        Ok(locked) => locked,
        Err(StateDirError::Busy(_)) => return Err(in_use(root, id)),
        Err(e) => return Err(e.into()),
    };
    reclaim(&locked);
    Ok(locked)
}

/// Removes the cgroups the previous (dead) holder of `locked` recorded. A record that
/// does not parse is from no run of ours that got as far as a cgroup: nothing to remove.
fn reclaim(locked: &Locked) {
    if let Ok(record) = locked.read_json::<RunRecord>(RECORD) {
        cgroup::remove_leftovers(&record.cgroup_dirs);
    }
}

fn in_use(root: &Path, id: &str) -> ContainerError {
    let holder = state_dir::peek::<RunRecord>(root, id, RECORD)
        .map_or(String::new(), |r| format!(" (vmm pid {})", r.pid));
    ContainerError::InUse {
        id: id.to_owned(),
        holder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("vmm-runs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    #[test]
    fn a_live_holder_makes_the_id_in_use_naming_its_pid() {
        let root = root("live");
        let held = claim(&root, "web").unwrap();
        held.write_json(
            RECORD,
            &RunRecord {
                pid: 4242,
                cgroup_dirs: Vec::new(),
            },
        )
        .unwrap();
        let err = claim(&root, "web").unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("in use"), "{err}");
        assert!(err.to_string().contains("4242"), "{err}");
        assert!(matches!(
            delete(&root, "web"),
            Err(ContainerError::InUse { .. })
        ));
        drop(held);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_dead_holders_cgroup_dirs_are_removed_by_delete() {
        let root = root("dead");
        // An empty directory stands for a cgroup: rmdir removes both alike.
        let group = root.join("fake-cgroup");
        std::fs::create_dir_all(&group).unwrap();
        let held = claim(&root, "db").unwrap();
        held.write_json(
            RECORD,
            &RunRecord {
                pid: 1,
                cgroup_dirs: vec![group.clone()],
            },
        )
        .unwrap();
        drop(held);
        delete(&root, "db").unwrap();
        assert!(!group.exists(), "the recorded group is removed");
        assert!(!root.join("db").exists(), "and the directory");
        let err = delete(&root, "db").unwrap_err();
        assert!(err.is_bad_input() && err.to_string().contains("does not exist"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
