//! A handle on a VM for a controller on another thread (the API socket): the caller of
//! [`super::run_with`] passes one in [`super::RunOptions::running`], the VM fills it in
//! once it is built and its vCPUs run, and marks it ended on its way out. The controller
//! waits on it for InstanceStart's answer, and reaches the VM's devices through it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use devices::virtio::BalloonHandle;
use devices::I8042;

use super::device_metrics::DeviceMetrics;
use super::exit_counts::ExitCounts;

/// What a controller may reach in a running VM.
pub struct VmHandles {
    /// The keyboard controller (SendCtrlAltDel).
    pub i8042: Arc<Mutex<I8042>>,
    /// The balloon's target and statistics, when the VM has one.
    pub balloon: Option<BalloonHandle>,
    /// Every virtio device's error counts.
    pub device_metrics: DeviceMetrics,
    /// The vCPUs' exits, by reason.
    pub exit_counts: Arc<ExitCounts>,
    /// When the guest reached the boot timer (`--boot-timer`), once it has.
    pub boot_time: Arc<OnceLock<Duration>>,
    /// Guest RAM, in MiB (the balloon's bound).
    pub mem_mib: u64,
}

#[derive(Clone)]
enum Phase {
    NotStarted,
    Running(Arc<VmHandles>),
    /// The caller's attempt failed before the VM ran; the text says why.
    FailedToStart(String),
    /// The VM stopped; its handles stay readable for a last look (the final metrics).
    Ended(Option<Arc<VmHandles>>),
}

/// Where a VM is in its life, shared by the thread that runs it and a controller.
pub struct RunningVm {
    phase: Mutex<Phase>,
    changed: Condvar,
}

impl std::fmt::Debug for RunningVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match &*self.lock() {
            Phase::NotStarted => "not started",
            Phase::Running(_) => "running",
            Phase::FailedToStart(_) => "failed to start",
            Phase::Ended(_) => "ended",
        };
        f.debug_struct("RunningVm").field("phase", &phase).finish()
    }
}

impl RunningVm {
    pub fn new() -> Arc<RunningVm> {
        Arc::new(RunningVm {
            phase: Mutex::new(Phase::NotStarted),
            changed: Condvar::new(),
        })
    }

    /// The VM is built and its vCPUs run.
    pub(super) fn started(&self, handles: VmHandles) {
        self.set(Phase::Running(Arc::new(handles)));
    }

    /// The VM has stopped.
    pub(super) fn ended(&self) {
        let last = self.handles();
        self.set(Phase::Ended(last));
    }

    /// The attempt to start the VM failed before it ran (bad input, a host error): a
    /// controller waiting in [`RunningVm::wait_for_start`] gets `why`.
    pub fn failed_to_start(&self, why: String) {
        self.set(Phase::FailedToStart(why));
    }

    /// Whether a VM ran (and maybe ended) through this handle.
    pub fn has_started(&self) -> bool {
        matches!(*self.lock(), Phase::Running(_) | Phase::Ended(_))
    }

    /// The VM's handles while it runs and after it ended, for a last reading of its
    /// counters; `None` before it started.
    pub fn last_handles(&self) -> Option<Arc<VmHandles>> {
        match &*self.lock() {
            Phase::Running(handles) | Phase::Ended(Some(handles)) => Some(handles.clone()),
            _ => None,
        }
    }

    /// The running VM's handles; `None` before it started and after it ended.
    pub fn handles(&self) -> Option<Arc<VmHandles>> {
        match &*self.lock() {
            Phase::Running(handles) => Some(handles.clone()),
            _ => None,
        }
    }

    /// Waits until an attempt to start the VM has an outcome: `Ok` once it runs (or ran),
    /// the reason when it failed, after which the handle is ready for another attempt.
    pub fn wait_for_start(&self) -> Result<(), String> {
        let mut phase = self.lock();
        loop {
            match &*phase {
                Phase::NotStarted => {
                    phase = self
                        .changed
                        .wait(phase)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                Phase::Running(_) | Phase::Ended(_) => return Ok(()),
                Phase::FailedToStart(why) => {
                    let why = why.clone();
                    *phase = Phase::NotStarted;
                    return Err(why);
                }
            }
        }
    }

    fn set(&self, phase: Phase) {
        *self.lock() = phase;
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        // The phase is replaced whole: a panic elsewhere cannot leave it half-written.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks the VM ended when the run leaves, however it leaves.
pub(super) struct EndGuard(pub(super) Arc<RunningVm>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_start_is_reported_once_and_the_handle_can_try_again() {
        let running = RunningVm::new();
        let waiter = {
            let running = running.clone();
            std::thread::spawn(move || running.wait_for_start())
        };
        running.failed_to_start("no kernel".into());
        assert_eq!(waiter.join().unwrap(), Err("no kernel".into()));
        assert!(!running.has_started());
        running.ended();
        assert_eq!(running.wait_for_start(), Ok(()));
        assert!(running.handles().is_none());
    }
}
