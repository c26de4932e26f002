//! The virtio-net data path, run on the device's `Worker` thread over the two queue
//! eventfds and the backend fd.
//!
//! rx: the backend fd is polled level-triggered for EPOLLIN only while the guest has rx
//! buffers. A frame read when the ring turns out to be empty is held in `rx_frame` and
//! EPOLLIN is dropped from the backend's interest, so an empty ring never spins the
//! thread; the driver's next rx notify restores it and delivers the held frame first.
//! tx: each chain is copied out of guest memory and written to the backend as one frame.
//! A backend that cannot take more (EAGAIN: a socket whose peer is slow) leaves the chain
//! in the ring and the worker waits for EPOLLOUT: back-pressure, not loss. The backend
//! fd's interest is set through the worker's [`Interest`] after every event, from what rx
//! and tx wait for at that moment.
//!
//! Rate limits: each queue may have a limiter, whose timer fd is one more fd of the
//! worker. A frame its limiter has no tokens for stays where it is (an rx frame in
//! `rx_frame`, a tx chain in the ring) until the timer fires; while rx is held back the
//! backend is not polled for EPOLLIN either, so the tap's own queue holds what comes in.
//!
//! `snapshot`: what a saved handler holds (its queues, a received frame), and a new one
//! takes over.

mod snapshot;

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::ops::ControlFlow;
use std::os::fd::RawFd;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::{NetBackend, NetCounters};
use crate::virtio::chain::{self, Reader, Writer};
use crate::virtio::device::DeviceQueue;
use crate::virtio::metrics::ErrorCounters;
use crate::virtio::rate_limiter::QueueLimiter;
use crate::virtio::tap::VNET_HDR_LEN;
use crate::virtio::worker::{continue_or_reset, EventHandler, Interest};
use crate::virtio::{ActivateContext, ActivateError, Interrupt};

/// Largest frame (header included) either way: a 64 KiB GSO frame plus Ethernet and vnet
/// headers, as Firecracker's `MAX_BUFFER_SIZE`. Without offloads frames are ~1.5 KiB.
pub(super) const MAX_FRAME_LEN: usize = 65562;
/// Chains handled per wake-up, so a flood on one queue cannot starve the other.
const BATCH: usize = 256;

/// Worker tokens: the index of each fd in [`NetHandler::fds`]; the limiters' timers, when
/// the queues have limiters, come after these.
const RX_QUEUE_TOKEN: usize = 0;
const TX_QUEUE_TOKEN: usize = 1;
const BACKEND_TOKEN: usize = 2;

/// What happened to a tx chain.
enum TxOutcome {
    Sent,
    /// Malformed, too long, or refused by the backend: used and gone.
    Dropped,
    /// The backend is full: retry the chain when it is writable.
    WouldBlock,
}

/// What happened to the frame held in `rx_frame`.
enum RxOutcome {
    Delivered,
    /// The ring is empty: keep the frame, wait for the driver.
    NoBuffers,
    /// The frame does not fit the guest's buffer: dropped, buffer left for the next one.
    TooBig,
    /// The chain was malformed and returned with length 0; the frame is kept.
    BadChain,
    /// The rx limiter has no tokens for it: keep the frame, wait for the limiter's timer.
    Throttled,
}

pub(super) struct NetHandler {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    rx_evt: EventFd,
    tx_evt: EventFd,
    interrupt: Arc<Interrupt>,
    errors: Arc<ErrorCounters>,
    backend: NetBackend,
    counters: Arc<NetCounters>,
    /// The guest may have rx buffers: poll the backend for EPOLLIN.
    rx_wanted: bool,
    /// A tx frame hit EAGAIN: poll the backend for EPOLLOUT before sending more.
    tx_blocked: bool,
    /// Cleared when the backend hung up or failed, so it is never polled again.
    backend_alive: bool,
    rx_buf: Vec<u8>,
    /// Length of a frame in `rx_buf` that still waits for a guest buffer.
    rx_frame: Option<usize>,
    tx_buf: Vec<u8>,
    rx_limiter: QueueLimiter,
    tx_limiter: QueueLimiter,
    /// The rx limiter refused the held frame: the backend is not polled for EPOLLIN until
    /// its timer fires.
    rx_throttled: bool,
    /// The worker tokens of the limiters' timers, for those that have one.
    rx_limiter_token: Option<usize>,
    tx_limiter_token: Option<usize>,
}

impl NetHandler {
    pub(super) fn new(
        mut ctx: ActivateContext,
        backend: NetBackend,
        counters: Arc<NetCounters>,
        [rx_limiter, tx_limiter]: [QueueLimiter; 2],
    ) -> Result<Self, ActivateError> {
        let [rx, tx]: [DeviceQueue; 2] = ctx.take_queues()?;
        let rx_limiter_token = rx_limiter.timer_fd().map(|_| BACKEND_TOKEN + 1);
        let tx_limiter_token = tx_limiter
            .timer_fd()
            .map(|_| rx_limiter_token.unwrap_or(BACKEND_TOKEN) + 1);
        Ok(NetHandler {
            mem: ctx.mem,
            rx: rx.queue,
            tx: tx.queue,
            rx_evt: rx.evt,
            tx_evt: tx.evt,
            interrupt: ctx.interrupt,
            errors: ctx.errors,
            backend,
            counters,
            rx_wanted: true,
            tx_blocked: false,
            backend_alive: true,
            rx_buf: vec![0; MAX_FRAME_LEN],
            rx_frame: None,
            tx_buf: Vec::with_capacity(MAX_FRAME_LEN),
            rx_limiter,
            tx_limiter,
            rx_throttled: false,
            rx_limiter_token,
            tx_limiter_token,
        })
    }

    /// The fds the worker waits on, indexed by the tokens above.
    pub(super) fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![
            self.rx_evt.as_raw_fd(),
            self.tx_evt.as_raw_fd(),
            self.backend.as_raw_fd(),
        ];
        // In token order: rx's timer first.
        fds.extend(self.rx_limiter.timer_fd());
        fds.extend(self.tx_limiter.timer_fd());
        fds
    }

    /// A malformed chain, returned with length 0: counted for the data path's statistics
    /// and as a device error.
    fn chain_rejected(&self) {
        self.counters
            .malformed_chains
            .fetch_add(1, Ordering::Relaxed);
        self.errors.chain_rejected();
    }

    /// What the backend fd must be polled for now (see module docs).
    fn backend_interest(&self) -> EventSet {
        let mut want = EventSet::empty();
        if self.rx_wanted && self.backend_alive && !self.rx_throttled {
            want |= EventSet::IN;
        }
        if self.tx_blocked {
            want |= EventSet::OUT;
        }
        want
    }

    fn on_backend_event(&mut self, events: EventSet) -> Result<(), virtio_queue::Error> {
        // HUP/ERR come whatever we asked for: let both paths find out what happened.
        let broken = EventSet::HANG_UP | EventSet::ERROR;
        if self.tx_blocked && events.intersects(EventSet::OUT | broken) {
            self.tx_blocked = false;
            self.process_tx()?;
        }
        if events.intersects(EventSet::IN | broken) {
            self.process_rx()?;
        }
        Ok(())
    }

    /// Moves frames from the backend into the guest's rx buffers.
    fn process_rx(&mut self) -> Result<(), virtio_queue::Error> {
        let mut used = false;
        for _ in 0..BATCH {
            let len = match self.rx_frame {
                Some(len) => len,
                None => match self.read_frame() {
                    Some(len) => len,
                    None => break,
                },
            };
            self.rx_frame = Some(len);
            match self.deliver(len)? {
                RxOutcome::Delivered => {
                    self.rx_frame = None;
                    used = true;
                }
                RxOutcome::TooBig => {
                    self.rx_frame = None;
                    self.counters.rx_dropped.fetch_add(1, Ordering::Relaxed);
                }
                RxOutcome::BadChain => used = true,
                RxOutcome::Throttled => {
                    self.rx_throttled = true;
                    break;
                }
                RxOutcome::NoBuffers => {
                    self.rx_wanted = false;
                    break;
                }
            }
        }
        if used && self.rx.needs_notification(&self.mem)? {
            self.interrupt.signal_used_queue();
        }
        Ok(())
    }

    /// Reads one frame into `rx_buf`; `None` when there is none (EAGAIN) or the backend
    /// is gone. Frames shorter than the vnet header are dropped here.
    fn read_frame(&mut self) -> Option<usize> {
        if !self.backend_alive {
            return None;
        }
        loop {
            // SAFETY: `rx_buf` is valid for writes of its length; the fd is owned by
            // `self.backend`, which lives as long as `self`.
            let n = unsafe {
                libc::read(
                    self.backend.as_raw_fd(),
                    self.rx_buf.as_mut_ptr().cast(),
                    self.rx_buf.len(),
                )
            };
            match n {
                n if n >= VNET_HDR_LEN as isize => return Some(n as usize),
                // A tap never reads 0; a socket does when the peer is gone.
                0 => break,
                n if n > 0 => {
                    self.counters.rx_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                _ => {}
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => return None,
                io::ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        // The backend hung up or failed: polling it again would only spin (EPOLLHUP and
        // EPOLLERR are level-triggered too), so stop receiving; tx keeps trying.
        self.backend_alive = false;
        None
    }

    /// Puts the frame in `rx_buf[..len]` into the next rx chain.
    fn deliver(&mut self, len: usize) -> Result<RxOutcome, virtio_queue::Error> {
        let Some(chain) = chain::pop(&mut self.rx, &self.mem)? else {
            return Ok(RxOutcome::NoBuffers);
        };
        let head = chain.head_index();
        let writer = Writer::new(&self.mem, &chain)
            .ok()
            .filter(|w| w.available_bytes() >= VNET_HDR_LEN);
        let Some(mut writer) = writer else {
            self.chain_rejected();
            self.rx.add_used(&self.mem, head, 0)?;
            return Ok(RxOutcome::BadChain);
        };
        if writer.available_bytes() < len {
            // Give the buffer back untouched; a smaller frame may fit it.
            self.rx.go_to_previous_position();
            return Ok(RxOutcome::TooBig);
        }
        if !self.rx_limiter.consume(len as u64, 1) {
            // The buffer goes back untouched too; the limiter's timer resumes rx.
            self.errors.rate_limiter_throttled();
            self.rx.go_to_previous_position();
            return Ok(RxOutcome::Throttled);
        }
        // No GUEST_CSUM/GSO was offered, so the header must say nothing (§5.1.6.4.1);
        // without MRG_RXBUF each frame is exactly one buffer.
        self.rx_buf[..VNET_HDR_LEN].fill(0);
        self.rx_buf[10..VNET_HDR_LEN].copy_from_slice(&1u16.to_le_bytes());
        if writer.write_all(&self.rx_buf[..len]).is_err() {
            self.chain_rejected();
            self.rx.add_used(&self.mem, head, 0)?;
            return Ok(RxOutcome::BadChain);
        }
        // `len` <= MAX_FRAME_LEN (65562): the frame is `rx_buf[..len]`, written just above.
        #[allow(clippy::cast_possible_truncation)]
        let used_len = len as u32;
        self.rx.add_used(&self.mem, head, used_len)?;
        self.errors.request_completed();
        count(&self.counters.rx_frames, &self.counters.rx_bytes, len);
        Ok(RxOutcome::Delivered)
    }

    /// Sends the guest's tx chains to the backend.
    fn process_tx(&mut self) -> Result<(), virtio_queue::Error> {
        let mut used = false;
        for i in 0.. {
            if self.tx_blocked {
                break;
            }
            if i == BATCH {
                // More may be queued, and their notify is already consumed: come back
                // after the other queue had its turn.
                let _ = self.tx_evt.write(1);
                break;
            }
            let Some(chain) = chain::pop(&mut self.tx, &self.mem)? else {
                break;
            };
            let head = chain.head_index();
            let reader = match Reader::new(&self.mem, &chain) {
                Ok(reader) => reader,
                Err(_) => {
                    self.chain_rejected();
                    self.tx.add_used(&self.mem, head, 0)?;
                    used = true;
                    continue;
                }
            };
            let bytes = reader.available_bytes() as u64;
            if !self.tx_limiter.consume(bytes, 1) {
                // Back in the ring; the limiter's timer resumes tx.
                self.errors.rate_limiter_throttled();
                self.tx.go_to_previous_position();
                break;
            }
            let outcome = send(
                reader,
                &mut self.tx_buf,
                &*self.backend,
                &self.counters,
                &self.errors,
            );
            if let TxOutcome::WouldBlock = outcome {
                // Not sent: it is retried, and pays then.
                self.tx_limiter.give_back(bytes, 1);
                self.tx.go_to_previous_position();
                self.tx_blocked = true;
                break;
            }
            // tx buffers are read-only for the device: the used length is 0 (§2.7.8).
            self.tx.add_used(&self.mem, head, 0)?;
            self.errors.request_completed();
            used = true;
        }
        if used && self.tx.needs_notification(&self.mem)? {
            self.interrupt.signal_used_queue();
        }
        Ok(())
    }
}

impl EventHandler for NetHandler {
    fn start(&mut self, interest: &mut Interest) -> ControlFlow<()> {
        // The driver may have queued buffers before DRIVER_OK reached us.
        let result = self.process_tx().and_then(|()| self.process_rx());
        interest.set(BACKEND_TOKEN, self.backend_interest());
        continue_or_reset(result, &self.interrupt, &self.errors)
    }

    fn on_event(
        &mut self,
        token: usize,
        events: EventSet,
        interest: &mut Interest,
    ) -> ControlFlow<()> {
        let result = match token {
            RX_QUEUE_TOKEN => {
                let _ = self.rx_evt.read();
                self.rx_wanted = true;
                self.process_rx()
            }
            TX_QUEUE_TOKEN => {
                let _ = self.tx_evt.read();
                self.process_tx()
            }
            BACKEND_TOKEN => self.on_backend_event(events),
            t if Some(t) == self.rx_limiter_token => {
                self.rx_limiter.on_timer();
                self.rx_throttled = false;
                self.process_rx()
            }
            t if Some(t) == self.tx_limiter_token => {
                self.tx_limiter.on_timer();
                self.process_tx()
            }
            _ => Ok(()),
        };
        interest.set(BACKEND_TOKEN, self.backend_interest());
        continue_or_reset(result, &self.interrupt, &self.errors)
    }
}

/// Writes one frame: our own zeroed header (the guest's may ask for offloads it never
/// negotiated) and the frame copied out of guest memory.
fn send(
    mut reader: Reader<'_>,
    buf: &mut Vec<u8>,
    backend: &dyn AsRawFd,
    counters: &NetCounters,
    errors: &ErrorCounters,
) -> TxOutcome {
    let total = reader.available_bytes();
    let mut hdr = [0u8; VNET_HDR_LEN];
    buf.clear();
    let copied = (VNET_HDR_LEN..=MAX_FRAME_LEN).contains(&total)
        && reader.read_exact(&mut hdr).is_ok()
        && reader.read_to_end(buf).is_ok();
    if !copied {
        counters.malformed_chains.fetch_add(1, Ordering::Relaxed);
        errors.chain_rejected();
        return TxOutcome::Dropped;
    }
    hdr.fill(0);
    let iov = [IoSlice::new(&hdr), IoSlice::new(buf)];
    match writev_frame(backend, &iov) {
        Ok(_) => {
            count(&counters.tx_frames, &counters.tx_bytes, total);
            TxOutcome::Sent
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => TxOutcome::WouldBlock,
        // A down link (EIO) or a gone peer drops the frame, as a NIC would; the guest's
        // TCP retries.
        Err(_) => {
            counters.tx_dropped.fetch_add(1, Ordering::Relaxed);
            errors.request_failed();
            TxOutcome::Dropped
        }
    }
}

fn count(frames: &AtomicU64, bytes: &AtomicU64, len: usize) {
    frames.fetch_add(1, Ordering::Relaxed);
    bytes.fetch_add(len as u64, Ordering::Relaxed);
}

fn writev_frame(fd: &dyn AsRawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // One slice per descriptor, so at most a queue's worth; what the kernel would refuse
    // anyway (more than IOV_MAX) is refused here with its EINVAL.
    let iovcnt =
        libc::c_int::try_from(iov.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` and every slice is valid
        // for reads for the duration of the call; the fd is open (owned by the backend).
        let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr().cast(), iovcnt) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
