//! Signals: SIGRTMIN kicks vCPU threads out of KVM_RUN; SIGTERM, SIGINT and SIGHUP end the
//! VM in an orderly way (terminal restored, exit status 128 + signal).

use std::sync::atomic::{AtomicI32, Ordering};

use libc::{c_int, c_void, siginfo_t};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use super::error::VmError;

static TERMINATION_SIGNAL: AtomicI32 = AtomicI32::new(0);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    // Nothing to do: being delivered makes KVM_RUN return EINTR.
}

extern "C" fn on_terminate(num: c_int, _: *mut siginfo_t, _: *mut c_void) {
    TERMINATION_SIGNAL.store(num, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; `one` lives for the call; a stale or
        // closed fd only makes the write fail.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
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

/// The eventfd to write when a terminating signal arrives, to wake the event loop.
pub fn wake_on_termination(eventfd: c_int) {
    WAKE_FD.store(eventfd, Ordering::SeqCst);
}

pub fn termination_signal() -> Option<c_int> {
    match TERMINATION_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}
