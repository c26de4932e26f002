//! A container ID's directory under a state root, and its lock: the one implementation of
//! "who holds this ID" for vmm-runc (its `--root`) and for the runs of `vmm container run`
//! and `vmm run --isolation container` (their state root), as runc and crun keep theirs.
//!
//! The lock is a `flock` on the directory. Its holder owns the ID while it lives; the kernel
//! drops the lock when the holder dies, however it dies, so a directory nobody holds was
//! left by a dead holder, and the next claim of the ID gets it, with whatever record the
//! dead holder wrote, to clear or to refuse (each caller decides which).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// How often a claim retries when the directory it locked was removed meanwhile (its
/// previous holder finished): each retry finds a new directory or a new holder.
const CLAIM_ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error(
        "invalid container ID {0:?}: use letters, digits, '-', '_' and '.', not starting with '.'"
    )]
    BadId(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    /// Another live process holds the ID's lock.
    #[error("container {0} is held by another process")]
    Busy(String),
    #[error("state file {path:?} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
}

impl StateDirError {
    fn io(action: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}

/// An ID's directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct Locked {
    dir: PathBuf,
    id: String,
    _lock: File,
}

/// Refuses IDs that could leave the state root or are not names (runc's rule, tighter).
pub fn check_id(id: &str) -> Result<(), StateDirError> {
    crate::options::check_id(id).map_err(|_| StateDirError::BadId(id.to_owned()))
}

/// Locks `dir`: waiting for the holder when `wait`, else None while another holds it. A
/// directory removed between the open and the lock (by the holder we waited for) is
/// `NotFound`: a lock on it would guard nothing.
fn lock(dir: &Path, wait: bool) -> io::Result<Option<File>> {
    let file = File::open(dir)?;
    let mode = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), mode) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(e);
    }
    let held = file.metadata()?;
    match std::fs::metadata(dir) {
        Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => Ok(Some(file)),
        Ok(_) => Err(io::ErrorKind::NotFound.into()),
        Err(e) => Err(e),
    }
}

/// The directory of `id`, locked without waiting: made, or taken over from a dead holder
/// (check [`Locked::has`] for what it left). `Busy` while a live process holds it.
pub fn claim(root: &Path, id: &str) -> Result<Locked, StateDirError> {
    check_id(id)?;
    std::fs::create_dir_all(root)
        .map_err(|e| StateDirError::io(format!("create the state root {root:?}"), e))?;
    let dir = root.join(id);
    for _ in 0..CLAIM_ATTEMPTS {
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StateDirError::io(format!("create {dir:?}"), e)),
        }
        match lock(&dir, false) {
            Ok(Some(lock)) => return Ok(locked(dir, id, lock)),
            Ok(None) => return Err(StateDirError::Busy(id.to_owned())),
            // Removed by its holder since our create_dir: make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StateDirError::io(format!("lock {dir:?}"), e)),
        }
    }
    Err(StateDirError::Busy(id.to_owned()))
}

/// The existing directory of `id`, locked once its holder (if any) lets go.
pub fn open(root: &Path, id: &str) -> Result<Locked, StateDirError> {
    open_with(root, id, true)
}

/// The existing directory of `id`, locked now; `Busy` while a live process holds it.
pub fn try_open(root: &Path, id: &str) -> Result<Locked, StateDirError> {
    open_with(root, id, false)
}

fn open_with(root: &Path, id: &str, wait: bool) -> Result<Locked, StateDirError> {
    check_id(id)?;
    let dir = root.join(id);
    match lock(&dir, wait) {
        Ok(Some(lock)) => Ok(locked(dir, id, lock)),
        Ok(None) => Err(StateDirError::Busy(id.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StateDirError::NotFound(id.into())),
        Err(e) => Err(StateDirError::io(format!("lock {dir:?}"), e)),
    }
}

fn locked(dir: PathBuf, id: &str, lock: File) -> Locked {
    Locked {
        dir,
        id: id.to_owned(),
        _lock: lock,
    }
}

impl Locked {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// True when the directory holds `file` (a record a previous holder wrote, say).
    pub fn has(&self, file: &str) -> bool {
        self.dir.join(file).exists()
    }

    /// The JSON record `file`; `NotFound` (of the ID) when there is none.
    pub fn read_json<T: DeserializeOwned>(&self, file: &str) -> Result<T, StateDirError> {
        let path = self.dir.join(file);
        let text = std::fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StateDirError::NotFound(self.id.clone())
            } else {
                StateDirError::io(format!("read {path:?}"), e)
            }
        })?;
        serde_json::from_slice(&text).map_err(|e| StateDirError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes the JSON record `file` whole or not at all (a temporary file renamed over it).
    pub fn write_json<T: Serialize>(&self, file: &str, value: &T) -> Result<(), StateDirError> {
        let path = self.dir.join(file);
        let tmp = self.dir.join(format!(".{file}.tmp"));
        let text = serde_json::to_vec(value)
            .map_err(|e| StateDirError::io(format!("serialise {path:?}"), e.into()))?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| StateDirError::io(format!("write {path:?}"), e))
    }

    /// Removes the directory (the lock goes with it).
    pub fn remove(self) -> Result<(), StateDirError> {
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| StateDirError::io(format!("remove {:?}", self.dir), e))
    }
}

/// Reads the JSON record `file` of `id` without the lock: what its live holder wrote
/// (records are replaced whole), or None.
pub fn peek<T: DeserializeOwned>(root: &Path, id: &str, file: &str) -> Option<T> {
    check_id(id).ok()?;
    let text = std::fs::read(root.join(id).join(file)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Every ID under `root` whose directory holds `file`, sorted.
pub fn ids_with(root: &Path, file: &str) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(file).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("vmm-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    #[test]
    fn a_held_id_cannot_be_claimed_again() {
        let root = root("held");
        let first = claim(&root, "c1").unwrap();
        assert!(matches!(claim(&root, "c1"), Err(StateDirError::Busy(_))));
        assert!(matches!(try_open(&root, "c1"), Err(StateDirError::Busy(_))));
        drop(first);
        assert!(claim(&root, "c1").is_ok(), "free once the holder lets go");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_dead_holders_record_is_found_by_the_next_claim() {
        let root = root("dead");
        let first = claim(&root, "c2").unwrap();
        first.write_json("rec.json", &vec![1u32, 2]).unwrap();
        drop(first);
        let next = claim(&root, "c2").unwrap();
        assert!(next.has("rec.json"));
        assert_eq!(next.read_json::<Vec<u32>>("rec.json").unwrap(), [1, 2]);
        assert_eq!(peek::<Vec<u32>>(&root, "c2", "rec.json"), Some(vec![1, 2]));
        assert_eq!(ids_with(&root, "rec.json"), ["c2"]);
        next.remove().unwrap();
        assert!(matches!(open(&root, "c2"), Err(StateDirError::NotFound(_))));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ids_that_leave_the_root_are_refused() {
        let root = root("badid");
        assert!(matches!(claim(&root, "../x"), Err(StateDirError::BadId(_))));
        assert!(matches!(open(&root, ".."), Err(StateDirError::BadId(_))));
        assert!(!root.exists());
    }
}
