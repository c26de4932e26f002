//! The memory-limit probe against a real limit: `vmm-probe isolation --exceed-memory-limit`
//! run in a fresh memory cgroup of 64 MiB must read that limit and see its allocating child
//! killed. Needs root and a memory controller this test can use; otherwise it prints SKIP.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use probe::report::{ExceedOutcome, MemoryLimit, Observation};
use support::{absent_canaries, unique_name, PROBE};

const LIMIT: u64 = 64 << 20;

/// A memory cgroup of this test's own, removed when dropped.
struct Cgroup {
    dir: PathBuf,
    source: &'static str,
}

impl Cgroup {
    /// A child of this process's memory cgroup, v1 or v2, limited to `LIMIT` without swap.
    fn new() -> Result<Cgroup, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root".to_owned());
        }
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let v1 = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then_some(path)
        });
        let (mount, path, limit_file, swap_file, source) = match v1 {
            Some(path) => (
                "/sys/fs/cgroup/memory",
                path,
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "cgroup1 memory.limit_in_bytes",
            ),
            None => (
                "/sys/fs/cgroup",
                own.lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or("no cgroup v2 line")?,
                "memory.max",
                "memory.swap.max",
                "cgroup2 memory.max",
            ),
        };
        let dir = Path::new(mount)
            .join(path.trim_start_matches('/'))
            .join(unique_name("vmm-probe-test-"));
        fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cgroup = Cgroup { dir, source };
        let limit = cgroup.dir.join(limit_file);
        fs::write(&limit, LIMIT.to_string())
            .map_err(|e| format!("write {}: {e}", limit.display()))?;
        // No swap to escape to (v1: memory+swap ≤ the limit; v2: no swap at all).
        let swap = cgroup.dir.join(swap_file);
        if swap.exists() {
            let value = if source.starts_with("cgroup1") {
                LIMIT.to_string()
            } else {
                "0".to_owned()
            };
            fs::write(&swap, value).map_err(|e| format!("write {}: {e}", swap.display()))?;
        }
        Ok(cgroup)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The killed processes leave the cgroup a moment after they are reaped.
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn child_exceeding_a_cgroup_memory_limit_is_killed() {
    let cgroup = match Cgroup::new() {
        Ok(cgroup) => cgroup,
        Err(why) => {
            println!("SKIP child_exceeding_a_cgroup_memory_limit_is_killed: {why}");
            return;
        }
    };
    let procs = CString::new(
        cgroup
            .dir
            .join("cgroup.procs")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    let canaries = serde_json::to_string(&absent_canaries()).unwrap();
    let mut command = Command::new(PROBE);
    command.args([
        "isolation",
        "--exceed-memory-limit",
        "--canaries",
        &canaries,
    ]);
    // SAFETY: between fork and exec the child only calls open, write and close on
    // memory prepared before the fork ("0" moves the writer itself into the cgroup).
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        })
    };
    let out = command.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Observation = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen.memory_limit,
        MemoryLimit {
            bytes: Some(LIMIT),
            source: cgroup.source.to_owned()
        }
    );
    assert_eq!(seen.exceed_memory_limit, ExceedOutcome::Killed);
}
