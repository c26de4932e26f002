//! The signals `vmm run` passes on to a workload in a VM (the runtime's own list: SIGINT,
//! SIGTERM, SIGHUP, ...), read from a signalfd. They are blocked before any thread starts,
//! so the VM's threads inherit the mask and only this fd ever sees them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use runtime::launch::{signal_set, FORWARDED_SIGNALS};

pub struct ForwardedSignals {
    fd: OwnedFd,
    saved: libc::sigset_t,
}

impl ForwardedSignals {
    /// Blocks the forwarded signals in this thread (and the threads it starts from now
    /// on) and opens a non-blocking signalfd for them.
    pub fn block() -> io::Result<Self> {
        let set = signal_set(&FORWARDED_SIGNALS);
        // SAFETY: sigset_t is plain data; overwritten by pthread_sigmask.
        let mut saved: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both sigsets are valid for the call.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut saved) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        // SAFETY: -1 asks for a new signalfd for `set`, a valid sigset.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // SAFETY: `saved` is the mask pthread_sigmask gave us.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, ptr::null_mut()) };
            return Err(err);
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, saved })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The next pending signal, if any.
    pub fn take(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is a writable buffer of `size` bytes.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        (n == size as isize).then_some(info.ssi_signo as i32)
    }
}

impl Drop for ForwardedSignals {
    fn drop(&mut self) {
        // SAFETY: `saved` is the mask pthread_sigmask gave us.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.saved, ptr::null_mut()) };
    }
}

/// Whether a signal, arriving before the workload started, should end the run instead.
pub fn ends_the_run(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT
    )
}
