//! Writing a snapshot file whole or not at all: into a new file beside the target, renamed
//! over it when complete. A snapshot prepares both its files before it renames either, so
//! that a failure while writing leaves the old pair as it was.
//!
//! Beside, so the rename stays on one filesystem. Renaming rather than truncating matters
//! for the memory file: a VM restored from `mem` may snapshot itself to `mem` again, and
//! truncating the file its RAM is mapped from would pull its unwritten pages away (SIGBUS);
//! the rename leaves the old file alive under the mapping. No fsync: the files must
//! survive the VMM being killed, which the page cache does; a host crash is not in scope.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::SnapshotError;

/// A complete new file beside its target, not yet in its place: [`Pending::commit`]
/// renames it over the target; dropped uncommitted, it is removed.
pub struct Pending {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Pending {
    pub fn commit(mut self) -> Result<(), SnapshotError> {
        std::fs::rename(&self.tmp, &self.target).map_err(SnapshotError::write(
            "renaming the new file over",
            &self.target,
        ))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Creates a temporary file beside `path` and lets `fill` write it. On an error the
/// temporary file is removed; `path` is left as it was until the result is committed.
pub fn prepare(
    path: &Path,
    fill: impl FnOnce(&mut File, &Path) -> Result<(), SnapshotError>,
) -> Result<Pending, SnapshotError> {
    let tmp = temporary_beside(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(SnapshotError::write("creating", &tmp))?;
    let pending = Pending {
        tmp,
        target: path.to_path_buf(),
        committed: false,
    };
    fill(&mut file, &pending.tmp)?;
    Ok(pending)
}

/// `DIR/.NAME.tmp-PID`: hidden, and unique per process.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "snapshot".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmm-atomic-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = scratch("fail");
        let target = dir.join("state");
        std::fs::write(&target, b"old").unwrap();
        let e = prepare(&target, |file, tmp| {
            file.write_all(b"half").unwrap();
            Err(SnapshotError::write("writing", tmp)(std::io::Error::other(
                "disk full",
            )))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "only the old file is left"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_uncommitted_file_is_removed_and_the_target_left_alone() {
        let dir = scratch("uncommitted");
        let target = dir.join("state");
        let pending = prepare(&target, |file, _| {
            file.write_all(b"new").unwrap();
            Ok(())
        })
        .unwrap();
        drop(pending);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_mapped_before_the_rename_keeps_its_old_contents() {
        let dir = scratch("mapped");
        let target = dir.join("mem");
        std::fs::write(&target, [7u8; 4096]).unwrap();
        let old = File::open(&target).unwrap();
        prepare(&target, |file, _| {
            file.write_all(&[9u8; 4096]).unwrap();
            Ok(())
        })
        .unwrap()
        .commit()
        .unwrap();
        let mut byte = [0u8];
        std::os::unix::fs::FileExt::read_at(&old, &mut byte, 0).unwrap();
        assert_eq!(byte, [7], "the open (or mapped) old file is untouched");
        assert_eq!(std::fs::read(&target).unwrap()[0], 9);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
