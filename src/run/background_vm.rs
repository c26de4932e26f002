//! The microVM of a VM-level run, on threads of this process: started with its console in
//! memory, watched for an early end, and stopped when the workload is done.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use devices::{StopReason, StopSignal};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::error::{console_suffix, RunError};
use crate::vm::console_log::ConsoleLog;
use crate::vm::{
    self, Console, RestoreConfig, RunOptions, VmConfig, VmControl, VmError, VmOutcome,
};

/// How long stopping the VM may take before the run ends without waiting for it.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Console lines quoted when the VM ends too early.
const CONSOLE_LINES: usize = 15;

pub struct BackgroundVm {
    thread: Option<JoinHandle<Result<VmOutcome, VmError>>>,
    stop: Arc<StopSignal>,
    console: Arc<Mutex<ConsoleLog>>,
    /// Readable once the VM thread has ended.
    ended: Arc<EventFd>,
}

impl BackgroundVm {
    /// Starts the VM of `config`, with its console into memory and a stop signal kept here;
    /// `control`, when given, pauses, snapshots and resumes it from this thread.
    pub fn start(config: VmConfig, control: Option<Arc<VmControl>>) -> Result<Self, RunError> {
        Self::spawn(control, move |options| vm::run_with(&config, options))
    }

    /// Restores the VM of `config` (a warm snapshot), which `control` resumes.
    pub fn restore(config: RestoreConfig, control: Arc<VmControl>) -> Result<Self, RunError> {
        Self::spawn(Some(control), move |options| {
            vm::restore_with(&config, options)
        })
    }

    fn spawn(
        control: Option<Arc<VmControl>>,
        run: impl FnOnce(RunOptions) -> Result<VmOutcome, VmError> + Send + 'static,
    ) -> Result<Self, RunError> {
        let console = Arc::new(Mutex::new(ConsoleLog::new()));
        let stop = Arc::new(StopSignal::new().map_err(RunError::io("create the VM's stop event"))?);
        let ended =
            Arc::new(EventFd::new(EFD_NONBLOCK).map_err(RunError::io("create an eventfd"))?);
        let options = RunOptions {
            console: Console::Log(console.clone()),
            stop: Some(stop.clone()),
            control,
            ..Default::default()
        };
        let ended_by_thread = ended.clone();
        let thread = std::thread::Builder::new()
            .name("vm".into())
            .spawn(move || {
                let result = run(options);
                let _ = ended_by_thread.write(1);
                result
            })
            .map_err(RunError::io("start the VM thread"))?;
        Ok(Self {
            thread: Some(thread),
            stop,
            console,
            ended,
        })
    }

    /// Readable once the VM has ended.
    pub fn ended_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(self.ended.as_ref())
    }

    pub fn has_ended(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// The last lines of the guest's console.
    pub fn console_tail(&self) -> Vec<String> {
        self.console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tail_lines(CONSOLE_LINES)
    }

    /// Why the VM ended, for a run that needed it still running. A VM that could not be
    /// built (a kernel that is not a kernel, say) gives its own error.
    pub fn ended_error(&mut self) -> RunError {
        let console = console_suffix(&self.console_tail());
        let outcome = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => return RunError::Vm(e),
            Some(Ok(Ok(outcome))) => describe(&outcome),
            Some(Err(_)) => "the VM thread panicked".to_owned(),
            None => "it was already stopped".to_owned(),
        };
        RunError::VmEnded { outcome, console }
    }

    /// Asks the VM to stop without waiting for it: for a run whose workload ended, which
    /// exits next. The process's exit then ends the VM's threads and KVM tears the VM
    /// down, as Firecracker ends its process, rather than each thread being kicked out of
    /// KVM_RUN and joined in turn (60-80 ms of a run from a snapshot in the nested tier).
    pub fn stop_at_exit(mut self) {
        self.stop.request(StopReason::Requested);
        // Dropping the handle detaches the thread; Drop then finds nothing to join.
        drop(self.thread.take());
    }

    /// Stops the VM and waits (a bounded time) for its threads.
    pub fn stop(&mut self) {
        self.stop.request(StopReason::Requested);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_DEADLINE;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            eprintln!("vmm: the microVM did not stop within {STOP_DEADLINE:?}; leaving it");
        }
    }
}

impl Drop for BackgroundVm {
    fn drop(&mut self) {
        self.stop();
    }
}

fn describe(outcome: &VmOutcome) -> String {
    match outcome {
        VmOutcome::Reset => "the guest rebooted or powered off (its kernel panicked, or the \
                             agent, its PID 1, exited)"
            .to_owned(),
        VmOutcome::DebugExit(code) => format!("the guest wrote {code} to the debug-exit port"),
        VmOutcome::Failed(failure) => edge::error_chain(failure),
        VmOutcome::Terminated(sig) => format!("the VMM was stopped by signal {sig}"),
        VmOutcome::Stopped => "it was stopped".to_owned(),
    }
}
