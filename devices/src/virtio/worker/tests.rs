//! The worker thread: events reach the handler, stopping joins, the handler comes back.

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
    let kick = evt.try_clone().unwrap();
    let fd = evt.as_raw_fd();
    let (tx, rx) = mpsc::channel();
    let worker = Worker::spawn("test-worker", &[fd], move |_| {
        let _ = evt.read();
        tx.send(()).unwrap();
        ControlFlow::Break(())
    })
    .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    // Nobody handles the fd any more.
    kick.write(1).unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    // The ended thread left its handler behind, to be taken back.
    assert!(worker.stop_and_take().is_some());
}

/// Counts the events it handled on its one eventfd.
struct Counter {
    evt: EventFd,
    handled: u32,
    seen: mpsc::Sender<u32>,
}

impl EventHandler for Counter {
    fn on_event(&mut self, _: usize, _: EventSet, _: &mut Interest) -> ControlFlow<()> {
        let _ = self.evt.read();
        self.handled += 1;
        let _ = self.seen.send(self.handled);
        ControlFlow::Continue(())
    }
}

#[test]
fn stop_and_take_returns_the_handler_with_what_it_did() {
    let evt = EventFd::new(EFD_NONBLOCK).unwrap();
    let kick = evt.try_clone().unwrap();
    let fds = [evt.as_raw_fd()];
    let (tx, rx) = mpsc::channel();
    let counter = Counter {
        evt,
        handled: 0,
        seen: tx,
    };
    let worker = Worker::start("test-worker", &fds, counter).unwrap();
    for n in 1..=3 {
        kick.write(1).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), n);
    }
    let counter = worker.stop_and_take().unwrap();
    assert_eq!(counter.handled, 3);
    // The handler's fds came back with it, still open: a new worker can wait on them.
    kick.write(1).unwrap();
    let fds = [counter.evt.as_raw_fd()];
    let _worker = Worker::start("test-worker", &fds, counter).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 4);
}

/// Counts wake-ups of a readable eventfd it never reads, and takes it out of the
/// epoll set after the first: a level-triggered fd that is not consumed would
/// otherwise wake the worker again at once.
struct Unsubscriber {
    _evt: EventFd,
    seen: mpsc::Sender<EventSet>,
}

impl EventHandler for Unsubscriber {
    fn on_event(&mut self, token: usize, events: EventSet, i: &mut Interest) -> ControlFlow<()> {
        let _ = self.seen.send(events);
        i.set(token, EventSet::empty());
        ControlFlow::Continue(())
    }
}

#[test]
fn interest_set_to_none_stops_events_from_an_unconsumed_fd() {
    let evt = EventFd::new(EFD_NONBLOCK).unwrap();
    evt.write(1).unwrap();
    let fds = [evt.as_raw_fd()];
    let (tx, rx) = mpsc::channel();
    let _worker = Worker::start(
        "test-worker",
        &fds,
        Unsubscriber {
            _evt: evt,
            seen: tx,
        },
    )
    .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        EventSet::IN
    );
    assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
}

/// Asks to be woken 10 ms from now, once.
struct Sleeper {
    wake_at: Option<Instant>,
    woke: mpsc::Sender<()>,
}

impl EventHandler for Sleeper {
    fn on_event(&mut self, _: usize, _: EventSet, _: &mut Interest) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    fn deadline(&self) -> Option<Instant> {
        self.wake_at
    }

    fn after_wake(&mut self, _: &mut Interest) -> ControlFlow<()> {
        if self.wake_at.take().is_some() {
            let _ = self.woke.send(());
        }
        ControlFlow::Continue(())
    }
}

#[test]
fn deadline_wakes_the_handler_without_an_event() {
    let (tx, rx) = mpsc::channel();
    let sleeper = Sleeper {
        wake_at: Some(Instant::now() + Duration::from_millis(10)),
        woke: tx,
    };
    let _worker = Worker::start("test-worker", &[], sleeper).unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}
