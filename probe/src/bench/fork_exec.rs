//! The cost of starting a program: fork, execve of the probe itself as `vmm-probe true`
//! (which exits at once), waitpid. Made with fork(2) and execve(2) directly, as a C loop
//! would, so nothing of std's process spawning is measured.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::ptr;
use std::time::Duration;

use super::budget::run_for;
use crate::failure::{Failure, OrFail};
use crate::sys;

/// The fewest programs started, however slow the level.
const MIN_RUNS: u64 = 5;
/// Runs between two reads of the clock (each is far longer than reading it).
const BATCH: u64 = 16;
/// What the child exits with when execve fails.
const EXIT_EXEC_FAILED: i32 = 127;

/// Mean time of fork + execve + waitpid, in microseconds.
pub fn mean_us(budget: Duration) -> Result<f64, Failure> {
    let exe = own_path()?;
    let path = sys::cstring(&exe).or_fail(|| format!("path of the probe {}", exe.display()))?;
    let argv = [c"vmm-probe".as_ptr(), c"true".as_ptr(), ptr::null()];
    let envp = [ptr::null()];
    let tally = run_for(budget, MIN_RUNS, BATCH, |n| {
        for _ in 0..n {
            start_and_wait(&path, &argv, &envp)?;
        }
        Ok(())
    })?;
    Ok(tally.mean_ns() / 1e3)
}

/// The probe's own file: /proc/self/exe, else argv[0] if it is a path.
fn own_path() -> Result<PathBuf, Failure> {
    match fs::read_link("/proc/self/exe") {
        Ok(path) => Ok(path),
        Err(e) => std::env::args_os()
            .next()
            .filter(|arg0| arg0.as_bytes().contains(&b'/'))
            .map(PathBuf::from)
            .ok_or_else(|| Failure::new("readlink /proc/self/exe", e)),
    }
}

/// One fork + execve(path, argv, envp) + waitpid; the child must exit 0.
fn start_and_wait(
    path: &CString,
    argv: &[*const libc::c_char; 3],
    envp: &[*const libc::c_char; 1],
) -> Result<(), Failure> {
    // SAFETY: the child only calls execve and _exit, both async-signal-safe, with
    // pointers prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(Failure::new("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: `path` and the strings of `argv` are NUL-terminated and both arrays end
        // with a null pointer; they live in memory the child inherited.
        unsafe {
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(EXIT_EXEC_FAILED);
        }
    }
    let status = wait(pid)?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(());
    }
    let what = format!(
        "`{} true` in the fork+exec benchmark",
        path.to_string_lossy()
    );
    Err(
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_EXEC_FAILED {
            Failure::wrong(what, "execve failed in the child (exit status 127)")
        } else if libc::WIFEXITED(status) {
            Failure::wrong(what, format!("exit status {}", libc::WEXITSTATUS(status)))
        } else {
            Failure::wrong(what, format!("killed by signal {}", libc::WTERMSIG(status)))
        },
    )
}

/// waitpid, retried on EINTR.
fn wait(pid: libc::pid_t) -> Result<libc::c_int, Failure> {
    crate::sys::wait_child(pid).map_err(|e| Failure::new("waitpid", e))
}
