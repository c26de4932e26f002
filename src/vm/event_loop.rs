//! The VMM's event loop (event-manager): console input to the serial port, and waking up
//! when the VM is asked to stop (by a device, a vCPU, or a signal to the VMM).

use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Arc, Mutex};

use devices::{Serial, StopSignal};
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};

use super::error::VmError;
use super::signals;

const STDIN: RawFd = 0;

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// Feeds the VMM's stdin to the guest's serial port.
struct ConsoleInput {
    serial: Arc<Mutex<Serial>>,
    stdin: std::mem::ManuallyDrop<std::fs::File>,
}

impl ConsoleInput {
    fn new(serial: Arc<Mutex<Serial>>) -> Self {
        // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop keeps this
        // File from closing it.
        let stdin = unsafe { std::fs::File::from_raw_fd(STDIN) };
        Self {
            serial,
            stdin: std::mem::ManuallyDrop::new(stdin),
        }
    }

    fn forward(&mut self, bytes: &[u8]) {
        let mut serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        serial.enqueue_input(bytes);
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn init(&mut self, ops: &mut EventOps) {
        // epoll refuses regular files and /dev/null; input from a file is read whole.
        if ops.add(Events::new(&*self.stdin, EventSet::IN)).is_err() {
            let mut all = Vec::new();
            if self.stdin.read_to_end(&mut all).is_ok() && !all.is_empty() {
                self.forward(&all);
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 512];
        match self.stdin.read(&mut buf) {
            Ok(0) => {
                // End of input: stop watching, the guest keeps running.
                let _ = ops.remove(events);
            }
            Ok(n) => self.forward(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                let _ = ops.remove(events);
            }
        }
        if events.event_set().contains(EventSet::HANG_UP) {
            let _ = ops.remove(events);
        }
    }
}

/// Wakes the loop when a stop is requested; the loop then checks why.
struct StopWatch {
    stop: Arc<StopSignal>,
}

impl MutEventSubscriber for StopWatch {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(self.stop.eventfd(), EventSet::IN));
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        // Drain the counter so the loop does not spin; the reason is in `StopSignal`.
        let _ = self.stop.eventfd().read();
    }
}

/// Runs until a stop is requested or the VMM receives a terminating signal. `console_input`
/// is the serial port that gets the VMM's stdin, when the VM owns the terminal.
pub fn run_until_stop(
    console_input: Option<Arc<Mutex<Serial>>>,
    stop: Arc<StopSignal>,
) -> Result<(), VmError> {
    let mut manager: EventManager<Subscriber> =
        EventManager::new().map_err(|source| VmError::EventLoop {
            op: "creating the VMM's event loop",
            source,
        })?;
    // Held until the loop returns: a signal can wake the loop only while it waits.
    let _wake = signals::wake_on_termination(stop.eventfd())?;
    manager.add_subscriber(Arc::new(Mutex::new(StopWatch { stop: stop.clone() })));
    if let Some(serial) = console_input {
        manager.add_subscriber(Arc::new(Mutex::new(ConsoleInput::new(serial))));
    }
    while !stop.is_requested() && signals::termination_signal().is_none() {
        // The timeout bounds the window between the checks above and the wait below, in
        // which a signal could arrive without waking the wait.
        match manager.run_with_timeout(250) {
            Ok(_) => {}
            Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EINTR => {}
            Err(source) => {
                return Err(VmError::EventLoop {
                    op: "waiting for events in the VMM's event loop",
                    source,
                })
            }
        }
    }
    Ok(())
}
