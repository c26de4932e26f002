//! Signals: SIGRTMIN kicks vCPU threads out of KVM_RUN; SIGTERM, SIGINT and SIGHUP end the
//! VM in an orderly way (terminal restored, exit status 128 + signal).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use super::error::VmError;

static TERMINATION_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// The eventfd a terminating signal writes to wake the event loop, or -1. Only a live
/// `WakeOnTermination` names its fd here, and it resets this before closing that fd.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Handlers between their load of `WAKE_FD` and the end of their write to it. A guard
/// closes its fd only once this is zero, so a handler that read the fd just before the
/// reset cannot write after the close (into a descriptor reused by then).
static WAKE_WRITERS: AtomicUsize = AtomicUsize::new(0);

pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    // Nothing to do: being delivered makes KVM_RUN return EINTR.
}

extern "C" fn on_terminate(num: c_int, _: *mut siginfo_t, _: *mut c_void) {
    // Lock-free atomics and write(2) only: all async-signal-safe.
    TERMINATION_SIGNAL.store(num, Ordering::SeqCst);
    WAKE_WRITERS.fetch_add(1, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; `one` lives for the call. `fd` is open:
        // its guard resets WAKE_FD and then waits for WAKE_WRITERS to reach zero before
        // closing it, and this handler counted itself in before loading it.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
    WAKE_WRITERS.fetch_sub(1, Ordering::SeqCst);
}

/// The vCPU kick handler, and when the VM owns the terminal, the handlers that end the VM
/// on SIGTERM, SIGINT and SIGHUP (a VM run behind another command leaves those to it).
pub fn install_handlers(terminating: bool) -> Result<(), VmError> {
    let err = |e: vmm_sys_util::errno::Error| VmError::Io {
        op: "installing signal handlers",
        source: std::io::Error::from_raw_os_error(e.errno()),
    };
    register_signal_handler(kick_signal(), on_kick).map_err(err)?;
    if !terminating {
        return Ok(());
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        register_signal_handler(sig, on_terminate).map_err(err)?;
    }
    Ok(())
}

/// While alive, a terminating signal writes to (a duplicate of) `eventfd`, waking the
/// event loop that waits on it. Keep it for as long as the loop runs.
pub fn wake_on_termination(eventfd: &EventFd) -> Result<WakeOnTermination, VmError> {
    let eventfd = eventfd.try_clone().map_err(VmError::io(
        "duplicating the stop eventfd for signal handlers",
    ))?;
    WAKE_FD.store(eventfd.as_raw_fd(), Ordering::SeqCst);
    Ok(WakeOnTermination { eventfd })
}

/// Owns the descriptor `WAKE_FD` names, so that it cannot close while a signal handler
/// may still write to it.
pub struct WakeOnTermination {
    eventfd: EventFd,
}

impl Drop for WakeOnTermination {
    fn drop(&mut self) {
        // Stop naming the fd (unless a later guard has replaced it with its own), wait out
        // any handler that loaded it before that, and only then let `eventfd` close.
        let _ = WAKE_FD.compare_exchange(
            self.eventfd.as_raw_fd(),
            -1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        while WAKE_WRITERS.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }
}

pub fn termination_signal() -> Option<c_int> {
    match TERMINATION_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_fd_is_reset_when_its_guard_drops() {
        let stop = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let guard = wake_on_termination(&stop).unwrap();
        let named = WAKE_FD.load(Ordering::SeqCst);
        assert_eq!(
            named,
            guard.eventfd.as_raw_fd(),
            "the guard owns the fd named"
        );
        // What a terminating signal does: the write reaches the loop's eventfd.
        guard.eventfd.write(1).unwrap();
        assert_eq!(stop.read().unwrap(), 1);

        drop(guard);

        assert_eq!(WAKE_FD.load(Ordering::SeqCst), -1);
    }
}
