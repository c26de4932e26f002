//! The VMM's stdin, fed to the guest's serial port no faster than the guest reads it.
//!
//! The serial port keeps input that does not fit its FIFO in a queue; reading stdin while
//! that queue is full would only move bytes from the pipe (where the writer blocks) into
//! the VMM's memory without bound: `vmm --kernel k < /dev/zero` grew to gigabytes when the
//! guest read nothing. So stdin is read only while [`Serial::input_wanted`] says the queue
//! has room, and waits in the kernel's pipe (or the file) otherwise.

use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use devices::Serial;
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

const STDIN: RawFd = 0;
/// Bytes read from stdin at a time.
const CHUNK: usize = 512;

/// Where reading stdin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the event loop: read when readable (a terminal, a pipe, a socket).
    Watched,
    /// Out of the event loop while the serial port's queue is full; back in once the
    /// guest has read it down ([`ConsoleInput::resume`]).
    Paused,
    /// epoll refuses the fd (a regular file, /dev/zero, /dev/null), which is always
    /// readable: read whenever the serial port wants input.
    Polled,
    /// End of input, or a read error: not read again. The guest keeps running.
    Done,
}

/// Feeds the VMM's stdin to the guest's serial port.
pub struct ConsoleInput {
    serial: Arc<Mutex<Serial>>,
    input: ManuallyDrop<std::fs::File>,
    state: State,
}

impl ConsoleInput {
    /// Reads the process's stdin, which it leaves open.
    pub fn stdin(serial: Arc<Mutex<Serial>>) -> Self {
        // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop keeps this
        // File from closing it.
        let stdin = unsafe { std::fs::File::from_raw_fd(STDIN) };
        Self::new(serial, ManuallyDrop::new(stdin))
    }

    fn new(serial: Arc<Mutex<Serial>>, input: ManuallyDrop<std::fs::File>) -> Self {
        Self {
            serial,
            input,
            state: State::Watched,
        }
    }

    /// True while input waits for the guest to make room: the event loop then calls
    /// [`ConsoleInput::resume`] after each short wait, since no fd says when the guest
    /// has read.
    pub fn waiting_for_room(&self) -> bool {
        matches!(self.state, State::Paused | State::Polled)
    }

    /// Reads on where the guest has made room: puts a paused stdin back in the event loop
    /// (`ops` is this subscriber's), or reads a polled one.
    pub fn resume(&mut self, ops: &mut EventOps) {
        if !self.input_wanted() {
            return;
        }
        match self.state {
            State::Paused => {
                if ops.add(Events::new(&*self.input, EventSet::IN)).is_ok() {
                    self.state = State::Watched;
                } else {
                    self.state = State::Done;
                }
            }
            State::Polled => self.read_while_wanted(),
            State::Watched | State::Done => {}
        }
    }

    fn serial(&self) -> MutexGuard<'_, Serial> {
        self.serial.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn input_wanted(&self) -> bool {
        self.serial().input_wanted()
    }

    /// Reads one chunk into the serial port; false at end of input or on an error.
    fn read_chunk(&mut self) -> bool {
        let mut buf = [0u8; CHUNK];
        loop {
            match self.input.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.serial().enqueue_input(&buf[..n]);
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// For a polled stdin: reads chunks until the serial port's queue is full.
    fn read_while_wanted(&mut self) {
        while self.input_wanted() {
            if !self.read_chunk() {
                self.state = State::Done;
                return;
            }
        }
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn init(&mut self, ops: &mut EventOps) {
        if ops.add(Events::new(&*self.input, EventSet::IN)).is_err() {
            self.state = State::Polled;
            self.read_while_wanted();
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        // A hang-up still leaves what was written before it: read on until end of input.
        if !self.read_chunk() {
            let _ = ops.remove(events);
            self.state = State::Done;
        } else if !self.input_wanted() {
            // Back-pressure: stop reading until the guest has taken some of it.
            let _ = ops.remove(events);
            self.state = State::Paused;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::OwnedFd;

    use devices::serial::PENDING_INPUT_LIMIT;
    use devices::BusDevice;
    use event_manager::{EventManager, SubscriberId, SubscriberOps};
    use vmm_sys_util::tempfile::TempFile;

    use super::*;

    /// The line status register and its data-ready bit.
    const LSR: u64 = 5;
    const LSR_DATA_READY: u8 = 1;

    type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

    /// The event loop's parts: the manager, the input, its id and the serial port.
    struct Rig {
        manager: EventManager<Subscriber>,
        input: Arc<Mutex<ConsoleInput>>,
        id: SubscriberId,
        serial: Arc<Mutex<Serial>>,
    }

    impl Rig {
        fn new(file: std::fs::File) -> Rig {
            let serial = Arc::new(Mutex::new(Serial::new(Box::new(std::io::sink())).unwrap()));
            let input = Arc::new(Mutex::new(ConsoleInput::new(
                serial.clone(),
                ManuallyDrop::new(file),
            )));
            let mut manager: EventManager<Subscriber> = EventManager::new().unwrap();
            let id = manager.add_subscriber(input.clone());
            Rig {
                manager,
                input,
                id,
                serial,
            }
        }

        /// `event_loop`'s rounds: a short wait, then a resume while input waits for room.
        fn run(&mut self, rounds: usize) {
            for _ in 0..rounds {
                self.manager.run_with_timeout(5).unwrap();
                let mut input = self.input.lock().unwrap();
                if input.waiting_for_room() {
                    input.resume(&mut self.manager.event_ops(self.id).unwrap());
                }
            }
        }

        fn state(&self) -> State {
            self.input.lock().unwrap().state
        }

        fn pending(&self) -> usize {
            self.serial.lock().unwrap().pending_input()
        }

        /// Reads the serial port as the guest does, while it has data; the bytes read.
        fn guest_reads_all(&self) -> usize {
            let mut serial = self.serial.lock().unwrap();
            let mut n = 0;
            loop {
                let mut lsr = [0u8];
                serial.read(LSR, &mut lsr);
                if lsr[0] & LSR_DATA_READY == 0 {
                    return n;
                }
                serial.read(0, &mut [0u8]);
                n += 1;
            }
        }

        /// Lets the guest read until input ends; all the bytes it got.
        fn guest_reads_to_the_end(&mut self) -> usize {
            let mut got = 0;
            for _ in 0..10_000 {
                got += self.guest_reads_all();
                if self.state() == State::Done && self.pending() == 0 {
                    return got + self.guest_reads_all();
                }
                self.run(1);
            }
            panic!("input never ended ({got} bytes read)");
        }
    }

    #[test]
    fn a_pipe_is_not_read_past_the_serial_ports_limit_until_the_guest_reads() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let mut rig = Rig::new(std::fs::File::from(OwnedFd::from(reader)));
        // More than the limit and less than a pipe holds (64 KiB), so the write returns.
        const SENT: usize = 32 * 1024;
        writer.write_all(&[b'z'; SENT]).unwrap();
        drop(writer);
        rig.run(20);
        let held = rig.pending();
        assert!(held > PENDING_INPUT_LIMIT, "{held}");
        assert!(held <= PENDING_INPUT_LIMIT + CHUNK, "{held}");
        assert_eq!(rig.state(), State::Paused);
        assert_eq!(rig.guest_reads_to_the_end(), SENT);
    }

    #[test]
    fn a_file_epoll_refuses_is_read_a_queue_at_a_time() {
        const LEN: usize = 64 * 1024;
        let big = TempFile::new().unwrap();
        big.as_file().write_all(&[b'f'; LEN]).unwrap();
        let mut rig = Rig::new(std::fs::File::open(big.as_path()).unwrap());
        rig.run(5);
        assert_eq!(rig.state(), State::Polled);
        assert!(rig.pending() <= PENDING_INPUT_LIMIT + CHUNK);
        assert_eq!(rig.guest_reads_to_the_end(), LEN);
    }
}
