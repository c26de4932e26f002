//! How a device ends the VM: it records a [`StopReason`] in the shared [`StopSignal`], whose
//! eventfd wakes the VMM's event loop.

use std::fmt;
use std::io;
use std::sync::{Mutex, MutexGuard};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the VM should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The guest asked for a CPU reset (i8042 command 0xFE); the VM ends with status 0.
    Reset,
    /// The guest wrote this byte to the debug-exit port; it becomes the exit status.
    DebugExit(u8),
    /// A device failed and cannot go on.
    Failed(String),
    /// The VMM's owner asked the VM to stop (a command that ran it in the background and
    /// is done with it).
    Requested,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Reset => write!(f, "guest requested a reset"),
            StopReason::DebugExit(v) => write!(f, "guest wrote {v} to the debug-exit port"),
            StopReason::Failed(why) => write!(f, "device failure: {why}"),
            StopReason::Requested => write!(f, "the VMM's owner stopped the VM"),
        }
    }
}

/// A one-shot "stop the VM" request shared (as `Arc<StopSignal>`) by devices and the VMM.
///
/// The first request wins: later reasons are dropped, so the exit status reflects what
/// happened first.
#[derive(Debug)]
pub struct StopSignal {
    reason: Mutex<Option<StopReason>>,
    eventfd: EventFd,
}

impl StopSignal {
    /// Creates a signal with no request and a non-blocking eventfd.
    pub fn new() -> Result<Self, io::Error> {
        Ok(Self {
            reason: Mutex::new(None),
            eventfd: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Asks the VM to stop. Only the first reason is kept; the eventfd is written once, then.
    pub fn request(&self, reason: StopReason) {
        let mut slot = self.lock();
        if slot.is_none() {
            *slot = Some(reason);
            // A write fails only if the counter would overflow, which one write cannot do;
            // the reason is recorded either way, and `is_requested` reports it.
            let _ = self.eventfd.write(1);
        }
    }

    /// The eventfd the event loop waits on; readable once a stop has been requested.
    pub fn eventfd(&self) -> &EventFd {
        &self.eventfd
    }

    /// The first reason requested, if any.
    pub fn reason(&self) -> Option<StopReason> {
        self.lock().clone()
    }

    /// Whether a stop has been requested.
    pub fn is_requested(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Option<StopReason>> {
        // The guarded value is a plain Option, always consistent: a panic elsewhere while
        // holding the lock must not take the VMM down.
        self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signal_starts_unrequested() {
        let stop = StopSignal::new().unwrap();
        assert!(!stop.is_requested());
        assert_eq!(stop.reason(), None);
        assert!(
            stop.eventfd().read().is_err(),
            "eventfd must not be readable yet"
        );
    }

    #[test]
    fn stop_signal_keeps_first_reason() {
        let stop = StopSignal::new().unwrap();
        stop.request(StopReason::DebugExit(7));
        stop.request(StopReason::Reset);
        stop.request(StopReason::Failed("late".into()));
        assert!(stop.is_requested());
        assert_eq!(stop.reason(), Some(StopReason::DebugExit(7)));
    }

    #[test]
    fn stop_signal_request_writes_eventfd_once() {
        let stop = StopSignal::new().unwrap();
        stop.request(StopReason::Reset);
        stop.request(StopReason::Reset);
        assert_eq!(stop.eventfd().read().unwrap(), 1);
    }

    #[test]
    fn stop_signal_survives_poisoned_lock() {
        let stop = std::sync::Arc::new(StopSignal::new().unwrap());
        let s = stop.clone();
        let _ = std::thread::spawn(move || {
            let _guard = s.reason.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        stop.request(StopReason::Reset);
        assert_eq!(stop.reason(), Some(StopReason::Reset));
    }
}
