//! A container's record under `--root`: one directory per ID holding `state.json` and,
//! until `start`, the exec FIFO. The directory is also the container's lock (flock): every
//! operation holds it, so two `create`s of one ID, or a `delete` during a `start`, never
//! interleave. A `create` killed half-way leaves a directory without `state.json` and
//! without a lock holder, which the next `create` of that ID clears and reuses.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use runtime::config::ContainerConfig;
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

/// A container's directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct Locked {
    pub dir: PathBuf,
    _lock: File,
}

/// Refuses IDs that could leave `--root` or are not names (runc's rule, tighter).
pub fn check_id(id: &str) -> Result<(), RuncError> {
    runtime::options::check_id(id).map_err(|_| RuncError::BadId(id.to_owned()))
}

fn lock(dir: &Path, exclusive_now: bool) -> io::Result<Option<File>> {
    let file = File::open(dir)?;
    let mode = if exclusive_now {
        libc::LOCK_EX | libc::LOCK_NB
    } else {
        libc::LOCK_EX
    };
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), mode) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(file))
}

/// The directory for a new container `id`, locked: made, or an abandoned one (from a
/// `create` that died before recording the container) cleared and reused.
pub fn claim(root: &Path, id: &str) -> Result<Locked, RuncError> {
    check_id(id)?;
    std::fs::create_dir_all(root)
        .map_err(|e| RuncError::io(format!("create --root {root:?}"), e))?;
    let dir = root.join(id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(RuncError::io(format!("create {dir:?}"), e)),
    }
    let lock = lock(&dir, true)
        .map_err(|e| RuncError::io(format!("lock {dir:?}"), e))?
        .ok_or_else(|| RuncError::Busy(id.to_owned()))?;
    if dir.join(STATE_FILE).exists() {
        return Err(RuncError::Exists(id.to_owned()));
    }
    // Left by a `create` that died: its process died with it (it watches for that).
    let _ = std::fs::remove_file(dir.join(EXEC_FIFO));
    Ok(Locked { dir, _lock: lock })
}

/// An existing container's directory, locked (waiting for another operation to end).
pub fn open(root: &Path, id: &str) -> Result<Locked, RuncError> {
    check_id(id)?;
    let dir = root.join(id);
    let lock = match lock(&dir, false) {
        Ok(Some(lock)) => lock,
        Ok(None) => unreachable!("a blocking flock does not report EWOULDBLOCK"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(RuncError::NotFound(id.to_owned()))
        }
        Err(e) => return Err(RuncError::io(format!("lock {dir:?}"), e)),
    };
    Ok(Locked { dir, _lock: lock })
}

impl Locked {
    pub fn load(&self) -> Result<Saved, RuncError> {
        let path = self.dir.join(STATE_FILE);
        let text = std::fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                RuncError::NotFound(self.id())
            } else {
                RuncError::io(format!("read {path:?}"), e)
            }
        })?;
        serde_json::from_slice(&text).map_err(|e| RuncError::CorruptState {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes `state.json` whole or not at all (a temporary file renamed over it).
    pub fn save(&self, saved: &Saved) -> Result<(), RuncError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(".state.json.tmp");
        let text = serde_json::to_vec(saved)
            .map_err(|e| RuncError::io(format!("serialise {path:?}"), e.into()))?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| RuncError::io(format!("write {path:?}"), e))
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    fn id(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Removes the directory (the lock goes with it).
    pub fn remove(self) -> Result<(), RuncError> {
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| RuncError::io(format!("remove {:?}", self.dir), e))
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
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(STATE_FILE).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}
