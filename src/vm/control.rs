//! Pausing, resuming and snapshotting a running VM from another thread (the API socket's,
//! a test's): a [`VmControl`] shared between that thread and the VM's vCPU threads.
//!
//! Pausing: the controller raises a flag and kicks each vCPU thread (the stop kick,
//! SIGRTMIN) until all are parked. A vCPU that sees the flag enters KVM_RUN once more with
//! `immediate_exit` set, which completes an I/O exit KVM is in the middle of (its result
//! is only in the vCPU's state once KVM_RUN is re-entered) without running the guest, and
//! then parks on a condition variable. Parked vCPUs read their own state when a snapshot
//! asks (KVM's vCPU ioctls belong to the vCPU's thread), and leave on resume or when the
//! VM is stopped: a paused VM still ends on SIGTERM or its owner's stop.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use devices::StopSignal;

use super::signals;
use super::snapshot::{SnapshotError, SnapshotWriter, VcpuState};

/// How long a pause may take before it is given up (a vCPU stuck in a device model).
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the vCPUs may take to read their state for a snapshot.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a pausing controller kicks the vCPUs not yet parked.
const KICK_INTERVAL: Duration = Duration::from_micros(200);
/// How often a parked vCPU looks at the stop signal of its own accord (a stop also wakes
/// it at once through [`VmControl::detach`]).
const PARKED_CHECK: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no VM is running")]
    NotRunning,
    #[error("the VM is stopping")]
    Stopping,
    #[error("the VM must be paused first")]
    NotPaused,
    #[error("{parked} of {vcpus} vCPUs paused within {PAUSE_TIMEOUT:?}; the VM goes on running")]
    PauseTimeout { parked: usize, vcpus: usize },
    #[error("{saved} of {vcpus} vCPUs read their state within {SAVE_TIMEOUT:?}")]
    SaveTimeout { saved: usize, vcpus: usize },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("the VM has no drive with id {drive_id:?}")]
    UnknownDrive { drive_id: String },
    #[error("drive {drive_id:?}: cannot use the new backing file")]
    DiskOpen {
        drive_id: String,
        #[source]
        source: devices::virtio::BlockError,
    },
    #[error("drive {drive_id:?}: the device did not take the new backing file")]
    DiskSwap {
        drive_id: String,
        #[source]
        source: devices::virtio::SwapError,
    },
}

/// Shared (in an `Arc`) between a controlling thread and the running VM.
pub struct VmControl {
    /// Held through each pause, resume and snapshot: one at a time.
    op: Mutex<()>,
    shared: Mutex<Shared>,
    changed: Condvar,
    /// `Shared::paused`, for the vCPU loop's check on every exit without a lock.
    pause_requested: AtomicBool,
}

#[derive(Default)]
struct Shared {
    vm: Option<Attached>,
    /// A pause is requested (and holds until resume).
    paused: bool,
    /// vCPUs parked now.
    parked: usize,
    /// Bumped for each snapshot: a parked vCPU that sees a new round reads its state.
    save_round: u64,
    saved: Vec<Option<Result<VcpuState, SnapshotError>>>,
}

/// The running VM, as its control sees it.
struct Attached {
    vcpus: usize,
    /// The vCPU threads, to kick; empty until they are started.
    threads: Vec<libc::pthread_t>,
    stop: Arc<StopSignal>,
    source: Arc<dyn SnapshotWriter>,
}

impl VmControl {
    pub fn new() -> Arc<VmControl> {
        Arc::new(VmControl {
            op: Mutex::new(()),
            shared: Mutex::new(Shared::default()),
            changed: Condvar::new(),
            pause_requested: AtomicBool::new(false),
        })
    }

    /// Pauses the VM: returns once every vCPU is parked out of KVM_RUN. Pausing a paused
    /// VM does nothing.
    pub fn pause(&self) -> Result<(), ControlError> {
        let _op = lock(&self.op);
        let mut s = self.lock();
        if s.vm.is_none() {
            return Err(ControlError::NotRunning);
        }
        if s.paused {
            return Ok(());
        }
        self.set_paused(&mut s, true);
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        loop {
            let Some(vm) = &s.vm else {
                return Err(ControlError::Stopping);
            };
            if s.parked == vm.vcpus {
                return Ok(());
            }
            let failed = if vm.stop.is_requested() {
                Some(ControlError::Stopping)
            } else if Instant::now() >= deadline {
                Some(ControlError::PauseTimeout {
                    parked: s.parked,
                    vcpus: vm.vcpus,
                })
            } else {
                None
            };
            if let Some(e) = failed {
                self.set_paused(&mut s, false);
                return Err(e);
            }
            for &thread in &vm.threads {
                // SAFETY: the thread is not joined yet: the VM detaches (under this lock,
                // held here) before it joins its vCPU threads. A kick only interrupts
                // KVM_RUN or a wait; its handler does nothing.
                unsafe { libc::pthread_kill(thread, signals::kick_signal()) };
            }
            s = self.wait(s, KICK_INTERVAL);
        }
    }

    /// Lets the vCPUs run again. Resuming a running VM does nothing.
    // Release builds call it only through the API socket (src/api), merged separately;
    // debug builds through the snapshot test seam.
    #[cfg_attr(not(any(test, debug_assertions)), allow(dead_code))]
    pub fn resume(&self) -> Result<(), ControlError> {
        let _op = lock(&self.op);
        let mut s = self.lock();
        let Some(vm) = &s.vm else {
            return Err(ControlError::NotRunning);
        };
        // Devices a snapshot stopped run again before the vCPUs do. One that cannot is
        // lost with its queues: the VM stops rather than run on without it.
        if let Err(e) = vm.source.resume_devices() {
            vm.stop.request(devices::StopReason::Failed(format!(
                "resuming after a snapshot: {}",
                edge::error_chain(&e)
            )));
            return Err(e.into());
        }
        self.set_paused(&mut s, false);
        Ok(())
    }

    /// Whether the VM is paused (a pause returned and no resume since).
    // For the API socket's state checks (`PATCH /vm`, `snapshot/create`), merged
    // separately (src/api).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_paused(&self) -> bool {
        let s = self.lock();
        s.paused && s.vm.as_ref().is_some_and(|vm| s.parked == vm.vcpus)
    }

    /// Writes a snapshot of the paused VM: its state to `state`, its RAM to `mem`. Each
    /// file is replaced whole or not at all. The VM stays paused.
    pub fn snapshot(&self, state: &Path, mem: &Path) -> Result<(), ControlError> {
        let _op = lock(&self.op);
        let mut s = self.lock();
        let vm = s.vm.as_ref().ok_or(ControlError::NotRunning)?;
        if !s.paused || s.parked < vm.vcpus {
            return Err(ControlError::NotPaused);
        }
        let (source, vcpus, stop) = (vm.source.clone(), vm.vcpus, vm.stop.clone());
        s.save_round += 1;
        s.saved = (0..vcpus).map(|_| None).collect();
        self.changed.notify_all();
        let deadline = Instant::now() + SAVE_TIMEOUT;
        loop {
            let saved = s.saved.iter().filter(|r| r.is_some()).count();
            if saved == vcpus {
                break;
            }
            if s.vm.is_none() || stop.is_requested() {
                return Err(ControlError::Stopping);
            }
            if Instant::now() >= deadline {
                return Err(ControlError::SaveTimeout { saved, vcpus });
            }
            s = self.wait(s, PARKED_CHECK);
        }
        let states = std::mem::take(&mut s.saved)
            .into_iter()
            .flatten()
            .collect::<Result<Vec<_>, _>>()?;
        drop(s);
        source.write(states, state, mem)?;
        Ok(())
    }

    /// Waits up to `timeout` for a VM to attach (a VM thread builds it first: a restore
    /// reads its state and maps its memory); true once one is attached.
    pub fn wait_attached(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s.vm.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self.wait(s, deadline - now);
        }
        true
    }

    /// Makes `path` the backing file of the running VM's drive `drive_id` (the disk whose
    /// id, its virtio-blk serial, is that): the file is opened here, on the caller's
    /// thread, as the drive was (read-only or not), and must be a regular file or a block
    /// device. The device switches between two requests, its capacity becomes the new
    /// file's and the guest gets a configuration-change interrupt (at once, or when a
    /// stopped device resumes). Works whether the VM runs or is paused; later snapshots
    /// record the new path. On error the drive keeps its old file.
    pub fn update_disk(&self, drive_id: &str, path: &Path) -> Result<(), ControlError> {
        let _op = lock(&self.op);
        // Not under `shared`: parked vCPUs wait on it, and opening a file may take a while.
        let source = {
            let s = self.lock();
            s.vm.as_ref()
                .ok_or(ControlError::NotRunning)?
                .source
                .clone()
        };
        source.update_disk(drive_id, path)
    }

    // ---- the VM's side ----

    /// Called by the VM before its vCPU threads start: this control now controls it.
    /// With `paused`, the vCPUs park before they first run (a restore that does not
    /// resume at once).
    pub(super) fn attach(
        &self,
        vcpus: usize,
        stop: Arc<StopSignal>,
        source: Arc<dyn SnapshotWriter>,
        paused: bool,
    ) {
        let mut s = self.lock();
        s.vm = Some(Attached {
            vcpus,
            threads: Vec::new(),
            stop,
            source,
        });
        s.parked = 0;
        self.set_paused(&mut s, paused);
    }

    /// The vCPU threads, once started, so that a pause can kick them.
    pub(super) fn set_threads(&self, threads: Vec<libc::pthread_t>) {
        if let Some(vm) = self.lock().vm.as_mut() {
            vm.threads = threads;
        }
    }

    /// Called by the VM once it is stopping, before it joins its vCPU threads: releases
    /// parked vCPUs, and later calls find no VM.
    pub(super) fn detach(&self) {
        let mut s = self.lock();
        s.vm = None;
        self.set_paused(&mut s, false);
    }

    /// Whether a vCPU should park: checked by each vCPU on every turn of its loop.
    pub(super) fn pause_requested(&self) -> bool {
        self.pause_requested.load(Ordering::Acquire)
    }

    /// Parks vCPU `index` until resume or stop; meanwhile it answers each snapshot round
    /// with `save()`, its state.
    pub(super) fn park(
        &self,
        index: usize,
        stop: &StopSignal,
        mut save: impl FnMut() -> Result<VcpuState, SnapshotError>,
    ) {
        let mut s = self.lock();
        if !s.paused {
            return;
        }
        s.parked += 1;
        self.changed.notify_all();
        let mut round = s.save_round;
        while s.paused && !stop.is_requested() {
            if s.save_round != round {
                round = s.save_round;
                drop(s);
                let state = save();
                s = self.lock();
                if let Some(slot) = s.saved.get_mut(index) {
                    *slot = Some(state);
                }
                self.changed.notify_all();
                continue;
            }
            s = self.wait(s, PARKED_CHECK);
        }
        s.parked -= 1;
        self.changed.notify_all();
    }

    fn set_paused(&self, s: &mut Shared, paused: bool) {
        s.paused = paused;
        self.pause_requested.store(paused, Ordering::Release);
        self.changed.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    fn wait<'a>(&self, s: MutexGuard<'a, Shared>, timeout: Duration) -> MutexGuard<'a, Shared> {
        self.changed
            .wait_timeout(s, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// The state behind these locks stays consistent through a panic elsewhere: counters and
/// flags written whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for VmControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmControl")
            .field("paused", &self.pause_requested())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
