//! The jailed VMM as a child that shares the VMM's memory (`clone(CLONE_VM)`), not a
//! fork's copy of it.
//!
//! Why: under PVM (this host's KVM) every page-table change is emulated, and a fork
//! copies the page tables, write-protects the parent's pages and then takes a
//! copy-on-write fault for every page either side writes; `VMM_JAIL_PHASES` measured the
//! fork alone at 1.1–5.8 ms, most of the jail's cost. The parent only waits for the child
//! (and forwards signals), so it needs no memory of its own.
//!
//! What sharing asks of both: the child gets a stack of its own; the parent, once it has
//! started the child, makes only system calls that neither allocate nor take a lock the
//! child's threads may hold (the child may die holding one), and leaves with `_exit`.

use std::io;

/// The child's stack: as large as the main thread's usual one, since the VMM's boot runs
/// on it.
const STACK_SIZE: usize = 8 << 20;

extern "C" fn child_entry<F: FnOnce() -> u8>(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Option<F>` that `spawn` was given, which lives in the caller's
    // frame until the child has been reaped (the caller's promise); only the child uses it.
    let body = unsafe { &mut *arg.cast::<Option<F>>() };
    let status = body.take().map_or(edge::exit_code::FAILED, |body| body());
    // Buffered output first: `_exit` does not flush, and the parent never writes it.
    let _ = io::Write::flush(&mut io::stdout());
    // SAFETY: ends this process (all its threads) with no further use of anything.
    unsafe { libc::_exit(i32::from(status)) }
}

/// Starts `body` in a child process that shares this one's memory, with `SIGCHLD` at its
/// end; the child exits with what `body` returns. Returns the child's pid.
///
/// # Safety
/// The process has one thread. Until the child is reaped, the caller must not return
/// from the frame that holds `body` (the child reads it from there), and must make only
/// calls that neither allocate nor take a lock (see the module's text).
pub unsafe fn spawn<F: FnOnce() -> u8>(body: &mut Option<F>) -> io::Result<libc::pid_t> {
    // SAFETY: a fresh anonymous mapping; nothing else refers to it.
    let stack = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if stack == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // A guard page at the bottom: an overflow faults rather than writing past the stack.
    // SAFETY: the lowest page of the mapping made above.
    unsafe { libc::mprotect(stack, 4096, libc::PROT_NONE) };
    let _ = io::Write::flush(&mut io::stdout());
    // SAFETY: the stack is ours and 16-byte aligned at its top; `body` outlives the child's
    // use of it (the caller's promise); CLONE_VM without CLONE_THREAD makes a process of
    // its own that shares this memory, whose signal handlers, files and root stay its own.
    let pid = unsafe {
        libc::clone(
            child_entry::<F>,
            stack.cast::<u8>().add(STACK_SIZE).cast(),
            libc::CLONE_VM | libc::SIGCHLD,
            std::ptr::from_mut(body).cast(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // The stack stays mapped: the child uses it until it ends, and the process ends soon
    // after.
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_shares_the_callers_memory_and_exits_with_the_bodys_status() {
        let seen = std::sync::atomic::AtomicU32::new(0);
        let mut body = Some(|| {
            seen.store(41, std::sync::atomic::Ordering::SeqCst);
            7
        });
        // SAFETY: waited for below, in this frame; the test thread makes only waitpid until
        // then. (Other test threads may run: the child only stores a number and exits.)
        let pid = unsafe { spawn(&mut body) }.unwrap();
        let mut status = 0;
        // SAFETY: our child, waited for once.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "{status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 7);
        // A fork's child would have written its own copy.
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 41);
    }
}
