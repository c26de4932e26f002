//! A device worker thread: waits on a device's eventfds with epoll and calls a handler for
//! each one that becomes readable, until it is stopped.
//!
//! Devices start one in `VirtioDevice::activate` and stop it in `reset` (or drop), so the
//! transport can hand the queues out again. The handler owns whatever the fds belong to
//! (queue eventfds, a tap, a socket); the worker only knows the raw fds and their index.

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, RawFd};
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The epoll token of the stop eventfd; handler fds use their index.
const STOP_TOKEN: u64 = u64::MAX;

/// A running worker thread. Dropping it stops and joins the thread.
#[derive(Debug)]
pub struct Worker {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts thread `name` waiting (level-triggered) on `fds`; whenever `fds[i]` is
    /// readable it calls `handler(i)`. The handler must consume the event (e.g. read the
    /// eventfd) or it is called again at once. Returning `ControlFlow::Break(())` ends the
    /// thread, e.g. after the device set DEVICE_NEEDS_RESET.
    ///
    /// The fds must stay open while the thread runs: give their owners to the handler.
    pub fn spawn<H>(name: &str, fds: &[RawFd], mut handler: H) -> io::Result<Worker>
    where
        H: FnMut(usize) -> ControlFlow<()> + Send + 'static,
    {
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
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(epoll, &mut handler))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it to end. Idempotent.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A full counter (never in practice) still leaves the fd readable.
            let _ = self.stop.write(1);
            // A handler that panicked has already stopped; nothing more to undo.
            let _ = thread.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<H: FnMut(usize) -> ControlFlow<()>>(epoll: Epoll, handler: &mut H) {
    let mut events = [EpollEvent::default(); 8];
    loop {
        let n = match epoll.wait(-1, &mut events) {
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
            if handler(token as usize).is_break() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn handler_runs_for_readable_fd_and_stop_joins() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let kick = evt.try_clone().unwrap();
        let fd = evt.as_raw_fd();
        let (tx, rx) = mpsc::channel();
        let mut worker = Worker::spawn("test-worker", &[fd], move |i| {
            let _ = evt.read();
            tx.send(i).unwrap();
            ControlFlow::Continue(())
        })
        .unwrap();
        kick.write(1).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
        worker.stop();
        worker.stop();
    }

    #[test]
    fn handler_break_ends_thread() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        evt.write(1).unwrap();
        let fd = evt.as_raw_fd();
        let (tx, rx) = mpsc::channel();
        let _worker = Worker::spawn("test-worker", &[fd], move |_| {
            let _ = evt.read();
            tx.send(()).unwrap();
            ControlFlow::Break(())
        })
        .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // The sender is dropped with the handler when the thread ends.
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_err());
    }
}
