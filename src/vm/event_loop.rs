//! The VMM's event loop (event-manager): console input to the serial port
//! ([`ConsoleInput`]), and waking up when the VM is asked to stop (by a device, a vCPU, or
//! a signal to the VMM).

use std::sync::{Arc, Mutex, PoisonError};

use devices::{Serial, StopSignal};
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};

use super::console_input::ConsoleInput;
use super::error::VmError;
use super::signals;

/// The loop's wait when nothing else bounds it: the window between the stop checks and
/// the wait, in which a signal could arrive without waking the wait.
const WAIT_MS: i32 = 250;
/// The wait while console input waits for the guest to read (see [`ConsoleInput`]): how
/// soon input goes on after the guest has made room.
const INPUT_WAIT_MS: i32 = 10;

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

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
    let console_input = console_input.map(|serial| {
        let input = Arc::new(Mutex::new(ConsoleInput::stdin(serial)));
        let id = manager.add_subscriber(input.clone());
        (input, id)
    });
    let mut input_waits = false;
    while !stop.is_requested() && signals::termination_signal().is_none() {
        let timeout = if input_waits { INPUT_WAIT_MS } else { WAIT_MS };
        match manager.run_with_timeout(timeout) {
            Ok(_) => {}
            Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EINTR => {}
            Err(source) => {
                return Err(VmError::EventLoop {
                    op: "waiting for events in the VMM's event loop",
                    source,
                })
            }
        }
        if let Some((input, id)) = &console_input {
            let mut input = input.lock().unwrap_or_else(PoisonError::into_inner);
            if input.waiting_for_room() {
                if let Ok(mut ops) = manager.event_ops(*id) {
                    input.resume(&mut ops);
                }
            }
            input_waits = input.waiting_for_room();
        }
    }
    Ok(())
}
