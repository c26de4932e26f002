//! A private directory for one `vmm run` (the VM's vsock socket lives there), removed when
//! the run ends. A run killed with SIGKILL cannot remove its own; the next run removes the
//! directories of runs whose process is gone.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const PREFIX: &str = "vmm-run-";

pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `<tmp>/vmm-run-<pid>` (mode 0700), after sweeping those of dead runs.
    pub fn create() -> io::Result<Self> {
        let base = std::env::temp_dir();
        sweep_stale(&base);
        let path = Self::path_of(std::process::id());
        // A directory of ours from an earlier run of a recycled pid: start afresh.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self { path })
    }

    /// The directory of the run whose process is `pid` (in this process's temporary
    /// directory, as the run's own).
    pub fn path_of(pid: u32) -> PathBuf {
        std::env::temp_dir().join(format!("{PREFIX}{pid}"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes the run directories under `base` whose process no longer exists.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid > 0 && !process_exists(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_run_dirs_of_dead_processes_are_swept_and_live_ones_kept() {
        let base = std::env::temp_dir().join(format!("vmm-run-dir-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        // pid_max is at most 2^22: this pid cannot exist.
        let dead = base.join(format!("{PREFIX}{}", 1 << 23));
        let live = base.join(format!("{PREFIX}{}", std::process::id()));
        let other = base.join("unrelated");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir_all(dir).unwrap();
        }
        sweep_stale(&base);
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
