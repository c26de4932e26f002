//! The agent's signals, taken synchronously through a signalfd so the event loop sees them
//! as one more readable descriptor: SIGCHLD (a child to reap), and the termination
//! requests SIGTERM, SIGINT and SIGHUP. SIGPIPE is ignored, so a write to a stream whose
//! peer vanished fails with EPIPE instead of killing the agent.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use crate::relay::is_transient;
use crate::sys;

/// The signals the agent takes through its signalfd.
const TAKEN: [libc::c_int; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// What the pending signals asked for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// A child changed state: reap.
    pub child: bool,
    /// A termination request (the last one, if several came).
    pub stop: Option<libc::c_int>,
}

/// The agent's signalfd, with [`TAKEN`] blocked for the whole process.
#[derive(Debug)]
pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks [`TAKEN`], opens the signalfd and ignores SIGPIPE. SIGCHLD keeps its default
    /// disposition: an ignored SIGCHLD would let the kernel reap children on its own, and
    /// the agent would never learn how a workload ended.
    pub fn install() -> io::Result<Self> {
        let set = runtime::launch::signal_set(&TAKEN);
        // SAFETY: SIG_IGN and SIG_DFL are valid dispositions for these signals; no handler
        // function is installed.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        }
        // SAFETY: `set` is a valid sigset; the old mask is not asked for.
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: -1 asks for a new signalfd for the valid sigset `set`.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Reads every pending signal.
    pub fn drain(&self) -> Received {
        let mut received = Received::default();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut buf = vec![0u8; size * 16];
        loop {
            let n = match sys::read(self.fd.as_fd(), &mut buf) {
                Ok(n) if n >= size => n,
                Ok(_) => return received,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_transient(&e) => return received,
                Err(_) => return received,
            };
            for record in buf[..n].chunks_exact(size) {
                // ssi_signo is the first field of signalfd_siginfo, a native-endian u32.
                let signo = u32::from_ne_bytes([record[0], record[1], record[2], record[3]]);
                match signo as libc::c_int {
                    libc::SIGCHLD => received.child = true,
                    sig => received.stop = Some(sig),
                }
            }
        }
    }
}

impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reaps every child that has ended (workloads' first processes and the orphans the agent
/// inherits): (pid, wait status) of each.
pub fn reap_all() -> Vec<(libc::pid_t, libc::c_int)> {
    let mut reaped = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: `status` is a writable int; WNOHANG makes the call return at once.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            reaped.push((pid, status));
            continue;
        }
        if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // 0: children remain but none has ended; ECHILD: no children at all.
        return reaped;
    }
}
