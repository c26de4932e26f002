//! A device worker thread: waits on a device's fds with epoll and hands each one that
//! becomes ready to the device's handler, until it is stopped.
//!
//! Devices start one in `VirtioDevice::activate` and stop it in `reset` (or drop), so the
//! transport can hand the queues out again, or in `VirtioDevice::save`, which takes the
//! handler back ([`Worker::stop_and_take`]) to read its queues' indices. The worker stops
//! only between two calls of its handler, and a handler finishes every chain it took off a
//! ring within one call (used, or put back), so a stopped handler holds no request half
//! done. The handler owns whatever the fds belong to
//! (queue eventfds, a tap, a socket, a timer); the worker only knows the raw fds, by
//! their index (the token). A handler may change what it waits for on an fd through
//! [`Interest`] (net drops EPOLLIN from its backend while the guest has no rx buffers)
//! and may ask to be woken by a deadline (vsock's connection timeouts).

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::Interrupt;
use super::metrics::ErrorCounters;

/// The epoll token of the stop eventfd; handler fds use their index.
const STOP_TOKEN: u64 = u64::MAX;
/// Events taken from the kernel per wait.
const EVENTS_PER_WAIT: usize = 8;

/// What a worker thread runs. Every method runs on the worker thread; returning
/// `ControlFlow::Break(())` ends it (e.g. after the device set DEVICE_NEEDS_RESET).
pub trait EventHandler: Send + 'static {
    /// Runs once before the first wait: the driver may have queued buffers before
    /// DRIVER_OK reached the device.
    fn start(&mut self, _interest: &mut Interest) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    /// The fd of `token` is ready with `events`. Readiness is level-triggered: the
    /// handler must consume it (read the eventfd) or it is called again at once.
    fn on_event(
        &mut self,
        token: usize,
        events: EventSet,
        interest: &mut Interest,
    ) -> ControlFlow<()>;

    /// When to wake up even if no fd is ready; `None` waits for an fd.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Runs after every wake-up, once its events are handled (also when only the deadline
    /// passed).
    fn after_wake(&mut self, _interest: &mut Interest) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// What the worker waits for on each of the handler's fds.
pub struct Interest {
    epoll: Epoll,
    fds: Vec<RawFd>,
    /// The events fd `i` is registered for; empty = not in the epoll set.
    current: Vec<EventSet>,
}

impl Interest {
    /// Waits for `events` on the fd of `token` from now on (none: not at all).
    ///
    /// On the worker's own valid fds epoll_ctl does not fail; if it did, the interest is
    /// left as it was and the next call with a different set tries again.
    pub fn set(&mut self, token: usize, events: EventSet) {
        let (Some(&fd), Some(&current)) = (self.fds.get(token), self.current.get(token)) else {
            return;
        };
        if events == current {
            return;
        }
        let op = if current.is_empty() {
            ControlOperation::Add
        } else if events.is_empty() {
            ControlOperation::Delete
        } else {
            ControlOperation::Modify
        };
        let event = EpollEvent::new(events, token as u64);
        if self.epoll.ctl(op, fd, event).is_ok() {
            self.current[token] = events;
        }
    }
}

/// Milliseconds until `deadline` (rounded up, so the wait does not end just before it), or
/// -1 for none.
fn timeout_ms(deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            i32::try_from(left.as_millis().saturating_add(1)).unwrap_or(i32::MAX)
        }
    }
}

/// The body of a worker thread.
pub type WorkerBody = Box<dyn FnOnce() + Send>;

/// Starts a worker thread named as given, running the body.
pub type Launcher = Box<dyn Fn(&str, WorkerBody) -> io::Result<JoinHandle<()>> + Send + Sync>;

static LAUNCHER: OnceLock<Launcher> = OnceLock::new();

/// Makes `launcher` start every worker thread of this process from now on, in place of a
/// plain thread of whichever thread activates the device (a vCPU's). A VMM that confines
/// its threads with seccomp needs this: a thread inherits its parent's filter, so a
/// worker started by a vCPU could do no more than the vCPU may. Set once per process;
/// false if one was set already.
pub fn set_launcher(launcher: Launcher) -> bool {
    LAUNCHER.set(launcher).is_ok()
}

fn launch(name: &str, body: WorkerBody) -> io::Result<JoinHandle<()>> {
    match LAUNCHER.get() {
        Some(launcher) => launcher(name, body),
        None => std::thread::Builder::new()
            .name(name.to_string())
            .spawn(body),
    }
}

/// Where a worker thread leaves its handler when it ends.
type HandlerSlot<H> = Arc<Mutex<Option<H>>>;

/// A running worker thread over a handler of type `H`. Dropping it stops and joins the
/// thread, then drops the handler the thread left (closing its fds) on the dropping thread:
/// every thread's seccomp filter allows close and freeing memory.
pub struct Worker<H> {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
    /// Filled by the thread as it ends (unless the handler panicked).
    handler: HandlerSlot<H>,
}

impl<H> std::fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl<H: EventHandler> Worker<H> {
    /// Starts thread `name` running `handler` over `fds`, each first waited on for
    /// EPOLLIN; `fds[i]` is token `i`.
    ///
    /// The fds must stay open while the thread runs: give their owners to the handler.
    pub fn start(name: &str, fds: &[RawFd], mut handler: H) -> io::Result<Worker<H>> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        // Epoll is set up here rather than in the thread so that a bad fd is reported to
        // the caller of `activate` instead of silently ending the thread.
        let epoll = Epoll::new()?;
        for (i, &fd) in fds.iter().enumerate() {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, i as u64),
            )?;
        }
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, STOP_TOKEN),
        )?;
        let mut interest = Interest {
            epoll,
            fds: fds.to_vec(),
            current: vec![EventSet::IN; fds.len()],
        };
        let slot: HandlerSlot<H> = Arc::default();
        let returned = slot.clone();
        let body = move || {
            run(&mut interest, &mut handler);
            *returned.lock().unwrap_or_else(PoisonError::into_inner) = Some(handler);
        };
        let thread = launch(name, Box::new(body))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
            handler: slot,
        })
    }
}

impl<F> Worker<Readable<F>>
where
    F: FnMut(usize) -> ControlFlow<()> + Send + 'static,
{
    /// [`Worker::start`] for a handler that only needs to know which fd is readable:
    /// `handler(i)` runs whenever `fds[i]` is.
    pub fn spawn(name: &str, fds: &[RawFd], handler: F) -> io::Result<Self> {
        Self::start(name, fds, Readable(handler))
    }
}

impl<H> Worker<H> {
    /// Stops the thread and waits for it to end. Idempotent.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A full counter (never in practice) still leaves the fd readable.
            let _ = self.stop.write(1);
            // A handler that panicked has already stopped; nothing more to undo.
            let _ = thread.join();
        }
    }

    /// Stops the thread and returns its handler as the thread left it: between two of
    /// its calls (or after the one that ended it). `None` when the handler panicked, and
    /// took its queues with it.
    pub fn stop_and_take(mut self) -> Option<H> {
        self.stop();
        self.handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<H> Drop for Worker<H> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A handler's verdict after processing its queues: carry on, or, when the driver broke a
/// queue (an index past the queue size, a chain the device cannot map), count the chain
/// as rejected, show DEVICE_NEEDS_RESET (virtio 1.x §2.1.2) and end the worker, so the
/// device stops touching the queues until the driver resets it.
pub fn continue_or_reset<E>(
    result: Result<(), E>,
    interrupt: &Interrupt,
    errors: &ErrorCounters,
) -> ControlFlow<()> {
    match result {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => {
            errors.chain_rejected();
            interrupt.set_needs_reset();
            ControlFlow::Break(())
        }
    }
}

/// A closure as a handler that only cares which fd is readable (see [`Worker::spawn`]).
pub struct Readable<F>(F);

impl<F> EventHandler for Readable<F>
where
    F: FnMut(usize) -> ControlFlow<()> + Send + 'static,
{
    fn on_event(&mut self, token: usize, _: EventSet, _: &mut Interest) -> ControlFlow<()> {
        (self.0)(token)
    }
}

fn run<H: EventHandler>(interest: &mut Interest, handler: &mut H) {
    if handler.start(interest).is_break() {
        return;
    }
    let mut events = [EpollEvent::default(); EVENTS_PER_WAIT];
    loop {
        let timeout = timeout_ms(handler.deadline());
        let n = match interest.epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Epoll on our own valid fds does not fail otherwise; if it does, stop
            // rather than spin.
            Err(_) => return,
        };
        for event in &events[..n] {
            let token = event.data();
            if token == STOP_TOKEN {
                return;
            }
            // Every other token is one the handler registered, as a usize, so it fits.
            #[allow(clippy::cast_possible_truncation)]
            let token = token as usize;
            if handler
                .on_event(token, event.event_set(), interest)
                .is_break()
            {
                return;
            }
        }
        if handler.after_wake(interest).is_break() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
