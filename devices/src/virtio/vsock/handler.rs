//! The vsock queue processing, run on the device's `Worker` thread over the queue
//! eventfds and the muxer's epoll: guest tx packets go into the muxer and muxer packets
//! into guest rx buffers. The event queue carries one event only, TRANSPORT_RESET, which a
//! snapshot sends (see `state`); rx waits for the driver to act on it (see `reset_ack`).

use std::io::Write;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::muxer::{ConnKey, Muxer};
use super::packet::{self, HDR_SIZE, MAX_PAYLOAD};
use super::reset_ack::ResetAck;
use crate::virtio::chain::{self, Reader, Writer};
use crate::virtio::device::DeviceQueue;
use crate::virtio::metrics::ErrorCounters;
use crate::virtio::worker::{continue_or_reset, EventHandler, Interest};
use crate::virtio::{ActivateContext, ActivateError, Interrupt};

/// Worker tokens: the index of each fd in [`VsockHandler::fds`].
const RX_TOKEN: usize = 0;
const TX_TOKEN: usize = 1;
const EVENT_TOKEN: usize = 2;
const MUXER_TOKEN: usize = 3;

pub struct VsockHandler {
    mem: GuestMemoryMmap,
    rxq: Queue,
    txq: Queue,
    /// The event queue: only a snapshot uses it, to send TRANSPORT_RESET.
    evq: Queue,
    rx_evt: EventFd,
    tx_evt: EventFd,
    ev_evt: EventFd,
    interrupt: Arc<Interrupt>,
    errors: Arc<ErrorCounters>,
    muxer: Muxer,
    bufs: Buffers,
    /// TRANSPORT_RESET is owed to the guest: sent as soon as it posts an event buffer.
    reset_owed: bool,
    /// A TRANSPORT_RESET went out that the driver has not acted on yet: rx waits.
    reset_ack: Option<ResetAck>,
}

/// What a stopped handler hands a snapshot.
pub struct SavedHandler {
    /// rx, tx, event.
    pub queues: [Queue; 3],
    /// The streams that were open, each reset by the snapshot.
    pub connections: Vec<ConnKey>,
    pub next_host_port: u32,
    /// The guest had no event buffer for TRANSPORT_RESET.
    pub reset_owed: bool,
}

/// `struct virtio_vsock_event`'s id for a transport reset (virtio 1.2 §5.10.6.5).
const VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: u32 = 0;

/// Payload staging, allocated once per activation.
#[derive(Default)]
struct Buffers {
    /// Host stream data on its way to an rx chain.
    rx: Vec<u8>,
    /// A tx chain's payload on its way to the muxer.
    tx: Vec<u8>,
}

/// The driver handed us a chain we cannot map (e.g. a buffer outside guest RAM, or one
/// `chain::pop` found malformed).
struct BrokenChain;

impl VsockHandler {
    /// Takes the three queues (rx, tx, event: the order the spec fixes).
    pub fn new(mut ctx: ActivateContext, muxer: Muxer) -> Result<Self, ActivateError> {
        let [rx, tx, ev]: [DeviceQueue; 3] = ctx.take_queues()?;
        Ok(VsockHandler {
            mem: ctx.mem,
            rxq: rx.queue,
            txq: tx.queue,
            evq: ev.queue,
            rx_evt: rx.evt,
            tx_evt: tx.evt,
            ev_evt: ev.evt,
            interrupt: ctx.interrupt,
            errors: ctx.errors,
            muxer,
            bufs: Buffers {
                rx: vec![0u8; MAX_PAYLOAD],
                tx: Vec::with_capacity(MAX_PAYLOAD),
            },
            reset_owed: false,
            reset_ack: None,
        })
    }

    /// Owes the guest a TRANSPORT_RESET, as a saved handler did.
    pub fn owe_transport_reset(&mut self) {
        self.reset_owed = true;
    }

    /// Holds rx until the driver has acted on the TRANSPORT_RESET a saved handler sent.
    pub fn await_reset_ack(&mut self) {
        self.reset_ack = Some(ResetAck::new(None, Instant::now()));
    }

    /// The muxer, to give it a saved state before the worker starts.
    pub fn muxer_mut(&mut self) -> &mut Muxer {
        &mut self.muxer
    }

    /// Ends the handler for a snapshot: tells the guest that every stream is gone
    /// (TRANSPORT_RESET on the event queue, as Firecracker does when it saves a vsock
    /// device; the driver then drops its connections and reads the CID again), closes the
    /// host ends of the streams, and hands back the queues and what the muxer knew.
    pub fn into_saved(mut self) -> SavedHandler {
        // A broken event queue cannot carry the event: it stays owed, and the restored
        // device finds the queue broken in turn.
        let sent = self.post_transport_reset().unwrap_or(false);
        SavedHandler {
            connections: self.muxer.connection_keys(),
            next_host_port: self.muxer.next_host_port(),
            reset_owed: !sent,
            queues: [self.rxq, self.txq, self.evq],
        }
    }

    /// Puts TRANSPORT_RESET in the driver's next event buffer and interrupts; false when
    /// it has none (or only ones too small to hold the event, which go back empty).
    fn post_transport_reset(&mut self) -> Result<bool, BrokenChain> {
        let event = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.to_le_bytes();
        while let Some(chain) = chain::pop(&mut self.evq, &self.mem).map_err(|_| BrokenChain)? {
            let head = chain.head_index();
            let written = match Writer::new(&self.mem, &chain) {
                Ok(mut w) if w.available_bytes() >= event.len() => {
                    w.write_all(&event).map_err(|_| BrokenChain)?;
                    event.len()
                }
                _ => {
                    self.errors.chain_rejected();
                    0
                }
            };
            // At most 4.
            #[allow(clippy::cast_possible_truncation)]
            let len = written as u32;
            self.evq
                .add_used(&self.mem, head, len)
                .map_err(|_| BrokenChain)?;
            if self
                .evq
                .needs_notification(&self.mem)
                .map_err(|_| BrokenChain)?
            {
                self.interrupt.signal_used_queue();
            }
            if written > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The fds the worker waits on, indexed by the tokens above.
    pub fn fds(&self) -> [RawFd; 4] {
        [
            self.rx_evt.as_raw_fd(),
            self.tx_evt.as_raw_fd(),
            self.ev_evt.as_raw_fd(),
            self.muxer.epoll_fd(),
        ]
    }

    /// Processes both queues; a chain the device cannot map stops it until the driver
    /// resets it (virtio 1.x §2.1.2).
    fn process_or_stop(&mut self) -> ControlFlow<()> {
        let mut bufs = std::mem::take(&mut self.bufs);
        let result = self
            .send_owed_reset()
            .and_then(|()| self.process_queues(&mut bufs));
        self.bufs = bufs;
        continue_or_reset(result, &self.interrupt, &self.errors)
    }

    fn send_owed_reset(&mut self) -> Result<(), BrokenChain> {
        if self.reset_owed {
            self.reset_owed = !self.post_transport_reset()?;
            if !self.reset_owed {
                let avail = self.evq_avail_idx()?;
                self.reset_ack = Some(ResetAck::new(Some(avail), Instant::now()));
            }
        }
        Ok(())
    }

    /// Whether rx waits for the driver to act on a TRANSPORT_RESET.
    fn rx_held(&mut self) -> Result<bool, BrokenChain> {
        let Some(mut ack) = self.reset_ack else {
            return Ok(false);
        };
        let acked = ack.acked(self.evq_avail_idx()?, Instant::now());
        self.reset_ack = (!acked).then_some(ack);
        Ok(!acked)
    }

    fn evq_avail_idx(&self) -> Result<std::num::Wrapping<u16>, BrokenChain> {
        self.evq
            .avail_idx(&self.mem, Ordering::Acquire)
            .map_err(|_| BrokenChain)
    }

    /// Runs tx and rx until neither makes progress: tx answers may fill rx, and rx
    /// draining RSTs may let tx continue.
    fn process_queues(&mut self, bufs: &mut Buffers) -> Result<(), BrokenChain> {
        let rx_held = self.rx_held()?;
        loop {
            let tx = self.process_tx(&mut bufs.tx)?;
            let rx = !rx_held && self.process_rx(&mut bufs.rx)?;
            if !tx && !rx {
                return Ok(());
            }
        }
    }

    fn process_tx(&mut self, payload: &mut Vec<u8>) -> Result<bool, BrokenChain> {
        let mut used = false;
        while !self.muxer.tx_blocked() {
            let Some(chain) = chain::pop(&mut self.txq, &self.mem).map_err(|_| BrokenChain)? else {
                break;
            };
            let head = chain.head_index();
            let mut reader = Reader::new(&self.mem, &chain).map_err(|_| BrokenChain)?;
            let avail = reader.available_bytes();
            match packet::read_packet(&mut reader, avail, payload) {
                Ok(hdr) => self.muxer.handle_guest_packet(&hdr, payload),
                Err(e) => {
                    self.errors.chain_rejected();
                    self.muxer.handle_bad_packet(&e);
                }
            }
            // Tx buffers are only read: nothing written back.
            self.txq
                .add_used(&self.mem, head, 0)
                .map_err(|_| BrokenChain)?;
            self.errors.request_completed();
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
            let Some(chain) = chain::pop(&mut self.rxq, &self.mem).map_err(|_| BrokenChain)? else {
                break;
            };
            let head = chain.head_index();
            let mut writer = Writer::new(&self.mem, &chain).map_err(|_| BrokenChain)?;
            let cap = writer.available_bytes();
            let written = if cap < HDR_SIZE {
                // Too small for any packet; handed back empty so the driver can recycle it.
                self.errors.chain_rejected();
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
            // At most the chain's length, which virtio-queue keeps below 4 GiB.
            let written = u32::try_from(written).map_err(|_| BrokenChain)?;
            self.rxq
                .add_used(&self.mem, head, written)
                .map_err(|_| BrokenChain)?;
            self.errors.request_completed();
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

impl EventHandler for VsockHandler {
    fn start(&mut self, _: &mut Interest) -> ControlFlow<()> {
        // Buffers may already be queued (and host streams waiting) before the first notify.
        self.process_or_stop()
    }

    fn on_event(&mut self, token: usize, _: EventSet, _: &mut Interest) -> ControlFlow<()> {
        // Reads only consume the notification; the queues are processed after the wake-up.
        match token {
            RX_TOKEN => drop(self.rx_evt.read()),
            TX_TOKEN => drop(self.tx_evt.read()),
            EVENT_TOKEN => drop(self.ev_evt.read()),
            MUXER_TOKEN => self.muxer.process_events(),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn deadline(&self) -> Option<Instant> {
        let ack = self.reset_ack.as_ref().map(ResetAck::deadline);
        match (self.muxer.next_deadline(), ack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn after_wake(&mut self, _: &mut Interest) -> ControlFlow<()> {
        self.muxer.expire(Instant::now());
        self.process_or_stop()
    }
}
