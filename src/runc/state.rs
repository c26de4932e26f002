//! A container's record under `--root`: one directory per ID holding `state.json` and,
//! until `start`, the exec FIFO. The directory is also the container's lock (flock, the
//! runtime's [`runtime::state_dir`], which `vmm container run` holds its IDs by too): every
//! operation holds it, so two `create`s of one ID, or a `delete` during a `start`, never
//! interleave. A `create` killed half-way leaves a directory without `state.json` and
//! without a lock holder, which the next `create` of that ID clears and reuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runtime::config::ContainerConfig;
use runtime::state_dir;
use serde::{Deserialize, Serialize};

use super::error::RuncError;

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// The runtime-spec version of the state JSON and of the bundles this runtime reads.
pub const OCI_VERSION: &str = "1.2.0";

/// What `create` records; everything later operations need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    /// The container's first process (the workload after `start`), as the host sees it.
    pub pid: i32,
    /// Its start time (field 22 of /proc/PID/stat): a pid reused by another process after
    /// the container's exit is not taken for the container.
    pub pid_start: u64,
    /// RFC 3339.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_dirs: Vec<PathBuf>,
    pub config: ContainerConfig,
    /// At the VM levels: the vsock socket of the container's microVM, where `exec`
    /// reaches its agent.
    #[serde(default)]
    pub vm_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Set up, its process waiting on the exec FIFO.
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

pub use runtime::state_dir::Locked;

/// The directory for a new container `id`, locked: made, or an abandoned one (from a
/// `create` that died before recording the container) cleared and reused.
pub fn claim(root: &Path, id: &str) -> Result<Locked, RuncError> {
    let locked = state_dir::claim(root, id)?;
    if locked.has(STATE_FILE) {
        return Err(RuncError::Exists(id.to_owned()));
    }
    // Left by a `create` that died: its process died with it (it watches for that).
    let _ = std::fs::remove_file(locked.dir().join(EXEC_FIFO));
    Ok(locked)
}

/// An existing container's directory, locked (waiting for another operation to end).
pub fn open(root: &Path, id: &str) -> Result<Locked, RuncError> {
    Ok(state_dir::open(root, id)?)
}

/// The container's record in its locked directory.
pub trait Record {
    fn load(&self) -> Result<Saved, RuncError>;
    /// Writes `state.json` whole or not at all.
    fn save(&self, saved: &Saved) -> Result<(), RuncError>;
    fn fifo(&self) -> PathBuf;
}

impl Record for Locked {
    fn load(&self) -> Result<Saved, RuncError> {
        Ok(self.read_json(STATE_FILE)?)
    }

    fn save(&self, saved: &Saved) -> Result<(), RuncError> {
        Ok(self.write_json(STATE_FILE, saved)?)
    }

    fn fifo(&self) -> PathBuf {
        self.dir().join(EXEC_FIFO)
    }
}

/// Field 22 (starttime) and the state letter of /proc/PID/stat; None when no such process.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

impl Saved {
    /// True while the recorded process lives (a zombie has ended).
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((start, s)) if start == self.pid_start && s != 'Z' && s != 'X')
    }

    pub fn status(&self, dir: &Path) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The runtime-spec state JSON.
    pub fn state_json(&self, status: Status) -> serde_json::Value {
        let mut state = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status.as_str(),
            "bundle": self.bundle,
            "annotations": self.annotations,
            "created": self.created,
        });
        if status != Status::Stopped {
            state["pid"] = self.pid.into();
        }
        state
    }
}

/// Every container ID under `root` with a recorded state.
pub fn ids(root: &Path) -> Vec<String> {
    state_dir::ids_with(root, STATE_FILE)
}
