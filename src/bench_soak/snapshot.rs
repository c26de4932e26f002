//! What the soak counts, in this process and on the host, at each sample.
//!
//! Host-wide counts would move with whatever else runs here (other VMMs and containers,
//! other tests), so the host's cgroups, taps, state directories and files are counted by
//! the names this soak gives them ([`Scope`]). The mounts are this process's: the soak
//! runs in a mount namespace of its own (as root), so that mounts made elsewhere on the
//! host do not show up in its count, while anything a run mounts or leaves mounted here
//! still does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::error::SoakError;

/// Where the soak's things live and what they are called.
pub struct Scope {
    /// What every name the soak gives starts with: container IDs (so their cgroups and
    /// state directories) and the tap.
    prefix: String,
    /// The soak's directory: the VMs' disk image and vsock socket.
    pub work_dir: PathBuf,
    /// The tap each VM makes and removes; `None` when none can be made here.
    tap: Option<String>,
    no_tap_reason: Option<String>,
}

impl Scope {
    /// The soak's names and directory; as root, also its own mount namespace.
    pub fn new(root: bool) -> Result<Self, SoakError> {
        let pid = std::process::id();
        let work_dir = std::env::temp_dir().join(format!("vmm-soak-{pid}"));
        fs::create_dir_all(&work_dir)
            .map_err(SoakError::setup(format!("create {}", work_dir.display())))?;
        if root {
            private_mount_namespace().map_err(SoakError::setup(
                "enter a mount namespace of its own (unshare, then make / private)",
            ))?;
        }
        // At most 15 bytes: "vmmsoak" and up to 7 digits.
        let tap = format!("vmmsoak{}", pid % 10_000_000);
        let (tap, no_tap_reason) = match devices::virtio::Tap::open_or_create(&tap) {
            // Made and gone again with the fd: each VM makes it afresh.
            Ok(_) => (Some(tap), None),
            Err(e) => (None, Some(edge::error_chain(&e))),
        };
        Ok(Self {
            prefix: format!("vmm-soak-{pid}"),
            work_dir,
            tap,
            no_tap_reason,
        })
    }

    /// What every name the soak gives starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn tap(&self) -> Option<&str> {
        self.tap.as_deref()
    }

    pub fn no_tap_reason(&self) -> Option<&str> {
        self.no_tap_reason.as_deref()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.work_dir);
    }
}

/// One sample of everything the soak watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub fds: u64,
    /// This process's threads, the seccomp spawner aside.
    pub threads: u64,
    /// The seccomp spawner thread: 0, or 1 from the first VM on.
    pub spawner: u64,
    pub rss_kib: u64,
    /// What the allocator has handed out and not got back (mallinfo2), KiB.
    pub heap_kib: u64,
    /// Memory mappings (/proc/self/maps lines): guest RAM, thread stacks, arenas.
    pub maps: u64,
    /// cgroup directories with the soak's names, under every cgroup mount.
    pub cgroups: u64,
    /// Lines of /proc/self/mountinfo.
    pub mounts: u64,
    /// Network interfaces with the soak's tap name.
    pub taps: u64,
    /// Container state directories with the soak's names (/run/vmm/containers).
    pub state_dirs: u64,
    /// Entries in the soak's own directory (the disk image; a vsock socket left behind).
    pub work_files: u64,
}

impl Snapshot {
    pub fn take(scope: &Scope) -> Snapshot {
        let (threads, spawner) = threads();
        Snapshot {
            fds: count_entries(Path::new("/proc/self/fd")).saturating_sub(1),
            threads,
            spawner,
            rss_kib: status_kib("VmRSS:").unwrap_or(0),
            heap_kib: heap_in_use() / 1024,
            maps: fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count() as u64),
            cgroups: cgroup_mounts()
                .iter()
                .map(|m| count_dirs_named(m, &scope.prefix))
                .sum(),
            mounts: fs::read_to_string("/proc/self/mountinfo")
                .map_or(0, |m| m.lines().count() as u64),
            taps: scope.tap.as_ref().map_or(0, |tap| {
                u64::from(Path::new("/sys/class/net").join(tap).exists())
            }),
            state_dirs: count_named(Path::new(runtime::run_state::DEFAULT_ROOT), &scope.prefix),
            work_files: count_entries(&scope.work_dir),
        }
    }
}

/// Makes this process's mounts its own: a new mount namespace in which nothing propagates
/// from or to the host's.
fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: unshare takes flags only; the process has one thread here, so the new
    // namespace is the whole process's.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the path is a NUL-terminated literal; the other pointers may be NULL for a
    // propagation change.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn count_entries(dir: &Path) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| entries.count() as u64)
}

fn count_named(dir: &Path, prefix: &str) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .count() as u64
    })
}

/// (threads other than the spawner, spawner threads), from /proc/self/task/*/comm.
///
/// A thread that was just joined can still be listed for a moment: its joiner wakes when
/// the kernel clears its TID, a little before the task leaves the list, and by then its
/// comm cannot be read. Such tasks are not counted, and the list is read until two
/// readings agree (within [`SETTLE`]), so that a thread on its way out is not taken for
/// one left behind.
fn threads() -> (u64, u64) {
    let deadline = std::time::Instant::now() + SETTLE;
    let mut last = live_threads();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(1));
        let now = live_threads();
        if now == last || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// How long [`threads`] may wait for the task list to settle.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

fn live_threads() -> (u64, u64) {
    let spawner = crate::vm::seccomp::ThreadKind::Spawner.name();
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let (mut others, mut spawners) = (0, 0);
    for task in tasks.flatten() {
        let Ok(comm) = fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if comm.trim_end() == spawner {
            spawners += 1;
        } else {
            others += 1;
        }
    }
    (others, spawners)
}

/// A `KEY: N kB` line of /proc/self/status.
fn status_kib(key: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Bytes the allocator has handed out and not got back, over all its arenas.
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics (taking its locks).
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

/// The mount points of every cgroup hierarchy (v1 and v2) in this mount namespace.
fn cgroup_mounts() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            matches!(fstype, "cgroup" | "cgroup2")
                .then(|| pre.split(' ').nth(4).map(PathBuf::from))
                .flatten()
        })
        .collect()
}

/// Directories under `dir` (at any depth) whose names start with `prefix`.
fn count_dirs_named(dir: &Path, prefix: &str) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let own = u64::from(e.file_name().to_string_lossy().starts_with(prefix));
            own + count_dirs_named(&e.path(), prefix)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_are_counted_by_prefix_at_any_depth() {
        let dir = std::env::temp_dir().join(format!("vmm-soak-count-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for d in [
            "a/vmm-soak-1-0",
            "b/c/vmm-soak-1-1",
            "vmm-soak-1-2/x",
            "other",
        ] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("vmm-soak-1-file"), b"").unwrap();
        let counted = count_dirs_named(&dir, "vmm-soak-1");
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(counted, 3);
    }

    #[test]
    fn this_process_has_threads_fds_and_memory() {
        let scope_free = Snapshot {
            fds: count_entries(Path::new("/proc/self/fd")),
            threads: threads().0,
            rss_kib: status_kib("VmRSS:").unwrap_or(0),
            ..Snapshot::default()
        };
        assert!(scope_free.fds >= 3, "{scope_free:?}");
        assert!(scope_free.threads >= 1, "{scope_free:?}");
        assert!(scope_free.rss_kib > 0, "{scope_free:?}");
    }
}
