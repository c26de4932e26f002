//! Whether the memory limit is a wall: a child process touches more memory than the limit
//! and the probe watches what happens to it. Under a cgroup or in a small guest the kernel's
//! OOM killer ends it with SIGKILL; where the limit does not hold (swap, a limit that was
//! only reported) it survives. Only the child is at risk: it volunteers to be the OOM
//! killer's first choice.

use std::io;

use crate::report::{ExceedOutcome, MemoryLimit};

/// How much the child touches beyond the limit: enough to cross it with margin.
const EXCESS: u64 = 32 << 20;
/// The child maps and touches memory in chunks of this size.
const CHUNK: usize = 4 << 20;
/// The most the child may ever touch beyond the limit.
const HARD_CAP_EXCESS: u64 = 64 << 20;
const _: () = assert!(EXCESS + CHUNK as u64 <= HARD_CAP_EXCESS);

/// The largest limit the test fills. A VM's limit is its RAM (MemTotal) and `vmm compare`
/// gives it 128 MiB; a limit of gigabytes read from MemTotal is a host's RAM (say a
/// container whose cgroup could not be read), which the probe must never exhaust.
const MAX_LIMIT_FILLED: u64 = 1 << 30;

/// The child's exit status when mmap refused more memory (strict overcommit).
const EXIT_MMAP_REFUSED: i32 = 3;

/// Runs the test against `limit`; NotTested without a finite limit.
pub fn run(limit: &MemoryLimit) -> ExceedOutcome {
    let Some(bytes) = limit.bytes else {
        return not_tested("no finite memory limit to exceed".to_owned());
    };
    if bytes > MAX_LIMIT_FILLED {
        return not_tested(format!(
            "the limit ({} MiB, {}) is too large to fill safely (the test fills at most {} MiB)",
            bytes >> 20,
            limit.source,
            MAX_LIMIT_FILLED >> 20
        ));
    }
    let target = bytes.saturating_add(EXCESS);
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    };
    // SAFETY: the child only makes async-signal-safe calls (open, write, close, mmap,
    // _exit) and writes to memory it mapped itself, so forking a multi-threaded caller
    // is sound too.
    match unsafe { libc::fork() } {
        -1 => not_tested(format!("fork: {}", io::Error::last_os_error())),
        0 => touch_until(target, page),
        pid => judge(wait(pid)),
    }
}

fn not_tested(reason: String) -> ExceedOutcome {
    ExceedOutcome::NotTested { reason }
}

/// The child: become the OOM killer's first choice, then map and touch (one byte per page,
/// so every page is really allocated) until `target` bytes are touched; exit 0.
fn touch_until(target: u64, page: usize) -> ! {
    prefer_me_for_oom_kill();
    let mut touched: u64 = 0;
    while touched < target {
        // SAFETY: an anonymous private mapping at an address the kernel picks: it aliases
        // nothing.
        let chunk = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHUNK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if chunk == libc::MAP_FAILED {
            // SAFETY: _exit ends this process without running anything of the parent's.
            unsafe { libc::_exit(EXIT_MMAP_REFUSED) };
        }
        let chunk = chunk.cast::<u8>();
        for offset in (0..CHUNK).step_by(page) {
            // SAFETY: `offset` < CHUNK, inside the writable mapping just made; volatile so
            // the write (and with it the page allocation) is not optimised away.
            unsafe { chunk.add(offset).write_volatile(1) };
        }
        touched += CHUNK as u64;
    }
    // SAFETY: as above.
    unsafe { libc::_exit(edge::exit_code::SUCCESS.into()) }
}

/// oom_score_adj 1000: of all processes under the limit, the OOM killer picks this one (so
/// not the probe, which must report). Raising one's own score needs no privilege.
fn prefer_me_for_oom_kill() {
    let path = c"/proc/self/oom_score_adj";
    // SAFETY: `path` is NUL-terminated; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd >= 0 {
        let score = b"1000";
        // SAFETY: `score` is readable for its length; `fd` is open. A failure only leaves
        // the score as it was.
        unsafe {
            libc::write(fd, score.as_ptr().cast(), score.len());
            libc::close(fd);
        }
    }
}

/// waitpid, retried on EINTR; Err carries the reason for NotTested.
fn wait(pid: libc::pid_t) -> Result<libc::c_int, String> {
    crate::sys::wait_child(pid).map_err(|e| format!("waitpid: {e}"))
}

/// SIGKILL → Killed, exit 0 → Survived, anything else says why it was no test.
fn judge(status: Result<libc::c_int, String>) -> ExceedOutcome {
    let status = match status {
        Ok(status) => status,
        Err(reason) => return not_tested(reason),
    };
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
        return ExceedOutcome::Killed;
    }
    if libc::WIFEXITED(status) {
        return match libc::WEXITSTATUS(status) {
            0 => ExceedOutcome::Survived,
            EXIT_MMAP_REFUSED => {
                not_tested("mmap refused the memory before the limit was exceeded".to_owned())
            }
            code => not_tested(format!("the allocating child exited with status {code}")),
        };
    }
    not_tested(format!(
        "the allocating child was killed by signal {}",
        libc::WTERMSIG(status)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_finite_limit_is_not_tested() {
        let limit = MemoryLimit {
            bytes: None,
            source: "cgroup2 memory.max".to_owned(),
        };
        assert!(matches!(run(&limit), ExceedOutcome::NotTested { .. }));
    }

    #[test]
    fn a_limit_of_gigabytes_is_never_filled() {
        let limit = MemoryLimit {
            bytes: Some(24 << 30),
            source: "MemTotal".to_owned(),
        };
        assert!(
            matches!(run(&limit), ExceedOutcome::NotTested { ref reason } if reason.contains("too large"))
        );
    }

    #[test]
    fn a_limit_that_does_not_hold_is_survived() {
        // Nothing enforces a "limit" of 0 bytes: the child touches 32 MiB and exits 0.
        let limit = MemoryLimit {
            bytes: Some(0),
            source: "test".to_owned(),
        };
        assert_eq!(run(&limit), ExceedOutcome::Survived);
    }

    #[test]
    fn sigkill_is_killed_and_exit_zero_is_survived() {
        assert_eq!(judge(Ok(libc::SIGKILL)), ExceedOutcome::Killed);
        assert_eq!(judge(Ok(0)), ExceedOutcome::Survived);
        assert!(matches!(
            judge(Ok(libc::SIGSEGV)),
            ExceedOutcome::NotTested { .. }
        ));
        assert!(matches!(
            judge(Ok(EXIT_MMAP_REFUSED << 8)),
            ExceedOutcome::NotTested { .. }
        ));
    }
}
