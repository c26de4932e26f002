//! The virtio-net data path: one thread, one epoll over the two queue eventfds, the
//! backend fd and a stop eventfd.
//!
//! rx: the backend fd is polled level-triggered for EPOLLIN only while the guest has rx
//! buffers. A frame read when the ring turns out to be empty is held in `rx_frame` and
//! EPOLLIN is dropped from the backend's interest, so an empty ring never spins the
//! thread; the driver's next rx notify restores it and delivers the held frame first.
//! tx: each chain is copied out of guest memory and written to the backend as one frame.
//! A backend that cannot take more (EAGAIN: a socket whose peer is slow) leaves the chain
//! in the ring and the worker waits for EPOLLOUT: back-pressure, not loss.
//!
//! The loop is its own rather than the shared `virtio::worker::Worker` because the backend
//! fd has to leave and rejoin the epoll set.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::{NetBackend, NetCounters};
use crate::virtio::tap::VNET_HDR_LEN;
use crate::virtio::{ActivateContext, Interrupt};

/// Largest frame (header included) either way: a 64 KiB GSO frame plus Ethernet and vnet
/// headers, as Firecracker's `MAX_BUFFER_SIZE`. Without offloads frames are ~1.5 KiB.
pub(super) const MAX_FRAME_LEN: usize = 65562;
/// Chains handled per wake-up, so a flood on one queue cannot starve the other.
const BATCH: usize = 256;

const RX_QUEUE_TOKEN: u64 = 0;
const TX_QUEUE_TOKEN: u64 = 1;
const BACKEND_TOKEN: u64 = 2;
const STOP_TOKEN: u64 = 3;

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
}

pub(super) struct NetWorker {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    rx_evt: EventFd,
    tx_evt: EventFd,
    /// Held so the registered fd stays open for as long as the loop polls it.
    _stop: EventFd,
    interrupt: Arc<Interrupt>,
    backend: NetBackend,
    counters: Arc<NetCounters>,
    epoll: Epoll,
    /// The events the backend fd is registered for; empty = not in the epoll set.
    backend_interest: EventSet,
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
}

impl NetWorker {
    pub(super) fn new(
        ctx: ActivateContext,
        backend: NetBackend,
        stop: EventFd,
        counters: Arc<NetCounters>,
    ) -> io::Result<Self> {
        let mut queues = ctx.queues.into_iter();
        let mut evts = ctx.queue_evts.into_iter();
        let (Some(rx), Some(tx), Some(rx_evt), Some(tx_evt)) =
            (queues.next(), queues.next(), evts.next(), evts.next())
        else {
            return Err(io::Error::other(
                "virtio-net needs two queues and two eventfds",
            ));
        };
        let epoll = Epoll::new()?;
        for (fd, token) in [
            (rx_evt.as_raw_fd(), RX_QUEUE_TOKEN),
            (tx_evt.as_raw_fd(), TX_QUEUE_TOKEN),
            (stop.as_raw_fd(), STOP_TOKEN),
            (backend.as_raw_fd(), BACKEND_TOKEN),
        ] {
            epoll.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, token),
            )?;
        }
        Ok(NetWorker {
            mem: ctx.mem,
            rx,
            tx,
            rx_evt,
            tx_evt,
            _stop: stop,
            interrupt: ctx.interrupt,
            backend,
            counters,
            epoll,
            backend_interest: EventSet::IN,
            rx_wanted: true,
            tx_blocked: false,
            backend_alive: true,
            rx_buf: vec![0; MAX_FRAME_LEN],
            rx_frame: None,
            tx_buf: Vec::with_capacity(MAX_FRAME_LEN),
        })
    }

    /// Runs until the stop eventfd fires or the driver breaks a queue (then the device
    /// asks for a reset and stops touching guest memory).
    pub(super) fn run(mut self) {
        // The driver may have queued buffers before DRIVER_OK reached us.
        if self.process_tx().and_then(|()| self.process_rx()).is_err() {
            self.interrupt.set_needs_reset();
            return;
        }
        let mut events = [EpollEvent::default(); 4];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An epoll that cannot wait cannot recover; the device goes quiet.
                Err(_) => return,
            };
            for event in &events[..n] {
                let result = match event.data() {
                    STOP_TOKEN => return,
                    RX_QUEUE_TOKEN => {
                        let _ = self.rx_evt.read();
                        self.rx_wanted = true;
                        self.update_backend_interest();
                        self.process_rx()
                    }
                    TX_QUEUE_TOKEN => {
                        let _ = self.tx_evt.read();
                        self.process_tx()
                    }
                    BACKEND_TOKEN => self.on_backend_event(event.event_set()),
                    _ => Ok(()),
                };
                if result.is_err() {
                    self.interrupt.set_needs_reset();
                    return;
                }
            }
        }
    }

    fn on_backend_event(&mut self, events: EventSet) -> Result<(), virtio_queue::Error> {
        // HUP/ERR come whatever we asked for: let both paths find out what happened.
        let broken = EventSet::HANG_UP | EventSet::ERROR;
        if self.tx_blocked && events.intersects(EventSet::OUT | broken) {
            self.tx_blocked = false;
            self.update_backend_interest();
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
                RxOutcome::NoBuffers => {
                    self.rx_wanted = false;
                    self.update_backend_interest();
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
        self.update_backend_interest();
        None
    }

    /// Puts the frame in `rx_buf[..len]` into the next rx chain.
    fn deliver(&mut self, len: usize) -> Result<RxOutcome, virtio_queue::Error> {
        let Some(chain) = self.rx.iter(&self.mem)?.next() else {
            return Ok(RxOutcome::NoBuffers);
        };
        let head = chain.head_index();
        let writer = Writer::new(&self.mem, chain)
            .ok()
            .filter(|w| w.available_bytes() >= VNET_HDR_LEN);
        let Some(mut writer) = writer else {
            self.counters
                .malformed_chains
                .fetch_add(1, Ordering::Relaxed);
            self.rx.add_used(&self.mem, head, 0)?;
            return Ok(RxOutcome::BadChain);
        };
        if writer.available_bytes() < len {
            // Give the buffer back untouched; a smaller frame may fit it.
            self.rx.go_to_previous_position();
            return Ok(RxOutcome::TooBig);
        }
        // No GUEST_CSUM/GSO was offered, so the header must say nothing (§5.1.6.4.1);
        // without MRG_RXBUF each frame is exactly one buffer.
        self.rx_buf[..VNET_HDR_LEN].fill(0);
        self.rx_buf[10..VNET_HDR_LEN].copy_from_slice(&1u16.to_le_bytes());
        if writer.write_all(&self.rx_buf[..len]).is_err() {
            self.counters
                .malformed_chains
                .fetch_add(1, Ordering::Relaxed);
            self.rx.add_used(&self.mem, head, 0)?;
            return Ok(RxOutcome::BadChain);
        }
        self.rx.add_used(&self.mem, head, len as u32)?;
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
            let Some(chain) = self.tx.iter(&self.mem)?.next() else {
                break;
            };
            let head = chain.head_index();
            let outcome = match Reader::new(&self.mem, chain) {
                Ok(reader) => send(reader, &mut self.tx_buf, &*self.backend, &self.counters),
                Err(_) => {
                    self.counters
                        .malformed_chains
                        .fetch_add(1, Ordering::Relaxed);
                    TxOutcome::Dropped
                }
            };
            if let TxOutcome::WouldBlock = outcome {
                self.tx.go_to_previous_position();
                self.tx_blocked = true;
                self.update_backend_interest();
                break;
            }
            // tx buffers are read-only for the device: the used length is 0 (§2.7.8).
            self.tx.add_used(&self.mem, head, 0)?;
            used = true;
        }
        if used && self.tx.needs_notification(&self.mem)? {
            self.interrupt.signal_used_queue();
        }
        Ok(())
    }

    /// Registers the backend fd for what rx and tx currently wait for (see module docs).
    fn update_backend_interest(&mut self) {
        let mut want = EventSet::empty();
        if self.rx_wanted && self.backend_alive {
            want |= EventSet::IN;
        }
        if self.tx_blocked {
            want |= EventSet::OUT;
        }
        if want == self.backend_interest {
            return;
        }
        let op = if self.backend_interest.is_empty() {
            ControlOperation::Add
        } else if want.is_empty() {
            ControlOperation::Delete
        } else {
            ControlOperation::Modify
        };
        let event = EpollEvent::new(want, BACKEND_TOKEN);
        // On our own valid fds these cannot fail; if one did, the interest is unchanged
        // and the next change retries.
        if self.epoll.ctl(op, self.backend.as_raw_fd(), event).is_ok() {
            self.backend_interest = want;
        }
    }
}

/// Writes one frame: our own zeroed header (the guest's may ask for offloads it never
/// negotiated) and the frame copied out of guest memory.
fn send(
    mut reader: Reader<'_>,
    buf: &mut Vec<u8>,
    backend: &dyn AsRawFd,
    counters: &NetCounters,
) -> TxOutcome {
    let total = reader.available_bytes();
    let mut hdr = [0u8; VNET_HDR_LEN];
    buf.clear();
    let copied = (VNET_HDR_LEN..=MAX_FRAME_LEN).contains(&total)
        && reader.read_exact(&mut hdr).is_ok()
        && reader.read_to_end(buf).is_ok();
    if !copied {
        counters.malformed_chains.fetch_add(1, Ordering::Relaxed);
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
            TxOutcome::Dropped
        }
    }
}

fn count(frames: &AtomicU64, bytes: &AtomicU64, len: usize) {
    frames.fetch_add(1, Ordering::Relaxed);
    bytes.fetch_add(len as u64, Ordering::Relaxed);
}

fn writev_frame(fd: &dyn AsRawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` and every slice is valid
        // for reads for the duration of the call; the fd is open (owned by the backend).
        let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr().cast(), iov.len() as i32) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
