//! Ctrl-C, SIGTERM and SIGHUP during a comparison: noted by a thread that waits for them,
//! so the comparison stops between runs and its canaries and rootfs copy are removed
//! (default handling would kill it with its canaries in place). The `vmm run` started at
//! the time gets Ctrl-C from the terminal itself and ends on its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::CompareError;

pub struct Watcher {
    caught: Arc<AtomicBool>,
}

impl Watcher {
    /// Blocks the signals in this thread (so in every thread started after) and starts the
    /// thread that waits for them. Children get an empty mask: std resets it at spawn.
    pub fn start() -> Self {
        let caught = Arc::new(AtomicBool::new(false));
        let set = runtime::launch::signal_set(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
        // SAFETY: `set` is an initialised sigset; the old mask is not asked for.
        let blocked =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } == 0;
        if blocked {
            let flag = Arc::clone(&caught);
            std::thread::spawn(move || loop {
                let mut sig = 0;
                // SAFETY: `set` is initialised and `sig` is a valid place for the result.
                if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                    flag.store(true, Ordering::SeqCst);
                }
            });
        }
        Self { caught }
    }

    /// Err(Interrupted) once a signal came.
    pub fn check(&self) -> Result<(), CompareError> {
        if self.caught.load(Ordering::SeqCst) {
            Err(CompareError::Interrupted)
        } else {
            Ok(())
        }
    }
}
