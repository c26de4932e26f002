//! Raw mode for an interactive console: the guest, not the host's line discipline, sees
//! every key (Ctrl-C included). The previous settings come back when the guard drops,
//! which every orderly exit of `vmm` goes through (errors and signals included), and when
//! any thread panics: release builds abort on panic (`panic = "abort"`), so no Drop runs
//! then, and a panic hook restores the terminal instead.

use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

const STDIN: RawFd = 0;

/// The settings to put back, while raw mode is on: set by `RawModeGuard::enter`, taken by
/// its Drop or by the panic hook. A mutex, because a termios is more than one word.
///
/// The hook blocks on this lock, which is sound: every critical section below is a few
/// libc calls and an `Option` move, none of which can panic, so the panicking thread never
/// holds the lock itself (no deadlock) and the lock is never poisoned. A hook is not a
/// signal handler: std calls it on the panicking thread, in ordinary context, before it
/// unwinds or aborts, so taking a lock there is allowed; `tcsetattr` is async-signal-safe
/// anyway. (A crash that is not a panic, such as SIGSEGV or a plain `abort()`, runs no hook;
/// nothing here claims to cover those.)
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

/// Raw mode on stdin while alive; the settings it replaced live in `SAVED`.
pub struct RawModeGuard {
    _private: (),
}

impl RawModeGuard {
    /// Puts stdin in raw mode if it is a terminal; `None` otherwise (pipes, files), or
    /// when raw mode is already on (the guard that turned it on restores it).
    pub fn enter() -> Option<Self> {
        // SAFETY: isatty only inspects the fd.
        if unsafe { libc::isatty(STDIN) } != 1 {
            return None;
        }
        // SAFETY: a zeroed termios is a valid value for tcgetattr to overwrite.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios to write into; fd 0 is a terminal.
        if unsafe { libc::tcgetattr(STDIN, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // Keep output processing (OPOST) so the host terminal still maps \n; the guest's
        // console driver expects to be talking to one.
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;

        install_panic_hook();
        let mut slot = lock_saved();
        if slot.is_some() {
            return None;
        }
        // SAFETY: `raw` is a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        *slot = Some(saved);
        Some(Self { _private: () })
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        restore(&mut lock_saved());
    }
}

/// Whether a `RawModeGuard` has stdin in raw mode now (for the debug-build panic seam,
/// whose message says so).
#[cfg(debug_assertions)]
pub fn raw_mode_is_on() -> bool {
    lock_saved().is_some()
}

/// Gives the terminal its settings back if raw mode is on: for a panic hook that reports
/// the panic itself (a thread under a seccomp filter).
pub fn restore_for_panic() {
    restore(&mut lock_saved());
}

fn lock_saved() -> MutexGuard<'static, Option<libc::termios>> {
    SAVED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Puts back the settings in `slot`, if raw mode is on, and records that it is off.
fn restore(slot: &mut Option<libc::termios>) {
    if let Some(saved) = slot.take() {
        // SAFETY: restores the settings read in `enter` on the same terminal fd.
        unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &saved) };
    }
}

/// Once per process: a panic on any thread restores the terminal first, then reports the
/// panic through the hook that was there before (std's default prints the message), so
/// the message lands on a sane terminal.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore(&mut lock_saved());
            previous(info);
        }));
    });
}
