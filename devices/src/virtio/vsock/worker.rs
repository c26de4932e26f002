//! The vsock worker thread: waits on the queue eventfds, the muxer's epoll and a stop
//! eventfd, moves guest tx packets into the muxer and muxer packets into guest rx buffers.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::muxer::Muxer;
use super::packet::{self, HDR_SIZE, MAX_PAYLOAD};
use crate::virtio::Interrupt;

const RX_TOKEN: u64 = 0;
const TX_TOKEN: u64 = 1;
const EVENT_TOKEN: u64 = 2;
const STOP_TOKEN: u64 = 3;
const MUXER_TOKEN: u64 = 4;

pub struct Worker {
    pub mem: GuestMemoryMmap,
    pub rxq: Queue,
    pub txq: Queue,
    /// The event queue is only for TRANSPORT_RESET after a snapshot restore, which this
    /// VMM does not do; it is held so the driver's buffers stay untouched.
    pub _evq: Queue,
    pub rx_evt: EventFd,
    pub tx_evt: EventFd,
    pub ev_evt: EventFd,
    pub stop: EventFd,
    pub interrupt: Arc<Interrupt>,
    pub muxer: Muxer,
}

/// Payload staging, allocated once per activation.
struct Buffers {
    /// Host stream data on its way to an rx chain.
    rx: Vec<u8>,
    /// A tx chain's payload on its way to the muxer.
    tx: Vec<u8>,
}

/// The driver handed us a chain we cannot map (e.g. a buffer outside guest RAM).
struct BrokenChain;

impl Worker {
    pub fn run(mut self) {
        let epoll = match self.register() {
            Ok(e) => e,
            Err(_) => {
                self.interrupt.set_needs_reset();
                return;
            }
        };
        let mut bufs = Buffers {
            rx: vec![0u8; MAX_PAYLOAD],
            tx: Vec::with_capacity(MAX_PAYLOAD),
        };
        let mut events = [EpollEvent::default(); 8];
        // Buffers may already be queued (and host streams waiting) before the first notify.
        if self.process_queues(&mut bufs).is_err() {
            self.interrupt.set_needs_reset();
            return;
        }
        loop {
            let n = match epoll.wait(self.timeout_ms(), &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            for ev in &events[..n] {
                // Reads only consume the notification; the queues are processed below.
                match ev.data() {
                    RX_TOKEN => drop(self.rx_evt.read()),
                    TX_TOKEN => drop(self.tx_evt.read()),
                    EVENT_TOKEN => drop(self.ev_evt.read()),
                    STOP_TOKEN => return,
                    MUXER_TOKEN => self.muxer.process_events(),
                    _ => {}
                }
            }
            self.muxer.expire(Instant::now());
            if self.process_queues(&mut bufs).is_err() {
                // Virtio 1.x §2.1.2: stop using the queues until the driver resets us.
                self.interrupt.set_needs_reset();
                return;
            }
        }
    }

    fn register(&self) -> io::Result<Epoll> {
        let epoll = Epoll::new()?;
        let fds = [
            (self.rx_evt.as_raw_fd(), RX_TOKEN),
            (self.tx_evt.as_raw_fd(), TX_TOKEN),
            (self.ev_evt.as_raw_fd(), EVENT_TOKEN),
            (self.stop.as_raw_fd(), STOP_TOKEN),
            (self.muxer.epoll_fd(), MUXER_TOKEN),
        ];
        for (fd, token) in fds {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )?;
        }
        Ok(epoll)
    }

    /// Milliseconds until the nearest stream deadline (rounded up), or -1 for none.
    fn timeout_ms(&self) -> i32 {
        match self.muxer.next_deadline() {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32
            }
        }
    }

    /// Runs tx and rx until neither makes progress: tx answers may fill rx, and rx
    /// draining RSTs may let tx continue.
    fn process_queues(&mut self, bufs: &mut Buffers) -> Result<(), BrokenChain> {
        loop {
            let tx = self.process_tx(&mut bufs.tx)?;
            let rx = self.process_rx(&mut bufs.rx)?;
            if !tx && !rx {
                return Ok(());
            }
        }
    }

    fn process_tx(&mut self, payload: &mut Vec<u8>) -> Result<bool, BrokenChain> {
        let mut used = false;
        while !self.muxer.tx_blocked() {
            let Some(chain) = self.txq.pop_descriptor_chain(&self.mem) else {
                break;
            };
            let head = chain.head_index();
            let mut reader = chain.reader(&self.mem).map_err(|_| BrokenChain)?;
            let avail = reader.available_bytes();
            match packet::read_packet(&mut reader, avail, payload) {
                Ok(hdr) => self.muxer.handle_guest_packet(&hdr, payload),
                Err(e) => self.muxer.handle_bad_packet(&e),
            }
            // Tx buffers are only read: nothing written back.
            self.txq
                .add_used(&self.mem, head, 0)
                .map_err(|_| BrokenChain)?;
            used = true;
        }
        if used {
            self.notify(false)?;
        }
        Ok(used)
    }

    fn process_rx(&mut self, scratch: &mut [u8]) -> Result<bool, BrokenChain> {
        let mut used = false;
        while self.muxer.has_rx() {
            let Some(chain) = self.rxq.pop_descriptor_chain(&self.mem) else {
                break;
            };
            let head = chain.head_index();
            let mut writer = chain.writer(&self.mem).map_err(|_| BrokenChain)?;
            let cap = writer.available_bytes();
            let written = if cap < HDR_SIZE {
                // Too small for any packet; handed back empty so the driver can recycle it.
                0
            } else {
                let room = (cap - HDR_SIZE).min(scratch.len());
                match self.muxer.next_rx(&mut scratch[..room]) {
                    Some((hdr, n)) => packet::write_packet(&mut writer, &hdr, &scratch[..n])
                        .map_err(|_| BrokenChain)?,
                    None => {
                        // Nothing after all (a stream's data was gone): keep the buffer.
                        self.rxq.go_to_previous_position();
                        break;
                    }
                }
            };
            self.rxq
                .add_used(&self.mem, head, written as u32)
                .map_err(|_| BrokenChain)?;
            used = true;
        }
        if used {
            self.notify(true)?;
        }
        Ok(used)
    }

    fn notify(&mut self, rx: bool) -> Result<(), BrokenChain> {
        let q = if rx { &mut self.rxq } else { &mut self.txq };
        if q.needs_notification(&self.mem).map_err(|_| BrokenChain)? {
            self.interrupt.signal_used_queue();
        }
        Ok(())
    }
}
