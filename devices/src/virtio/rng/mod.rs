//! virtio-rng (device ID 4): entropy from the host's getrandom(2).
//!
//! One request queue; the driver posts writable buffers and the device fills each with
//! random bytes. A request is capped at [`MAX_REQUEST_LEN`] so one huge buffer cannot keep
//! the worker (and the host's entropy pool) busy; the driver simply asks again. A rate
//! limiter may hold the queue back (each request is an op and counts the bytes it gets).

mod state;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::chain::{self, Writer};
use super::device::DeviceQueue;
use super::metrics::ErrorCounters;
use super::rate_limiter::QueueLimiter;
use super::state::{DeviceState, SavedDevice, StateError};
use super::worker::{continue_or_reset, EventHandler, Interest, Worker};
use super::{ActivateContext, ActivateError, Interrupt, VirtioDevice};

pub use state::RngState;

pub const RNG_QUEUE_SIZE: u16 = 256;
/// Most bytes handed out per request.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;
const QUEUE_SIZES: [u16; 1] = [RNG_QUEUE_SIZE];
/// The worker's tokens: the request queue's eventfd, and the rate limiter's timer when the
/// device has a limiter.
const QUEUE_TOKEN: usize = 0;
const LIMITER_TOKEN: usize = 1;

#[derive(Default)]
pub struct Rng {
    /// Kept here across resets, so a reset does not refill its buckets.
    limiter: QueueLimiter,
    /// Dropping it stops and joins the thread.
    worker: Option<Worker<RequestQueue>>,
}

impl Rng {
    pub fn new() -> Rng {
        Rng::default()
    }

    /// Limits the request queue by `limiter` (by default nothing limits it).
    pub fn with_rate_limiter(mut self, limiter: QueueLimiter) -> Rng {
        self.limiter = limiter;
        self
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn activate(&mut self, mut ctx: ActivateContext) -> Result<(), ActivateError> {
        let [DeviceQueue { queue, evt }] = ctx.take_queues()?;
        self.worker = None;
        let rq = RequestQueue {
            mem: ctx.mem,
            queue,
            evt,
            interrupt: ctx.interrupt,
            errors: ctx.errors,
            limiter: self.limiter.clone(),
            buf: vec![0; MAX_REQUEST_LEN],
        };
        let mut fds = vec![rq.evt.as_raw_fd()];
        fds.extend(self.limiter.timer_fd());
        // The driver may have posted buffers before DRIVER_OK reached us: start with a
        // kick of our own.
        rq.evt.write(1).map_err(ActivateError::Worker)?;
        let worker = Worker::start("vmm-virtio-rng", &fds, rq).map_err(ActivateError::Worker)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
    }

    fn save(&mut self) -> Result<SavedDevice, StateError> {
        self.save_state()
    }

    fn restore(&mut self, state: DeviceState) -> Result<(), StateError> {
        self.restore_state(state)
    }
}

/// The request queue, owned by the worker thread.
struct RequestQueue {
    mem: GuestMemoryMmap,
    queue: Queue,
    evt: EventFd,
    interrupt: Arc<Interrupt>,
    errors: Arc<ErrorCounters>,
    limiter: QueueLimiter,
    buf: Vec<u8>,
}

impl EventHandler for RequestQueue {
    fn on_event(&mut self, token: usize, _: EventSet, _: &mut Interest) -> ControlFlow<()> {
        match token {
            QUEUE_TOKEN => {
                let _ = self.evt.read();
            }
            LIMITER_TOKEN => self.limiter.on_timer(),
            _ => return ControlFlow::Continue(()),
        }
        // Broken rings (index past the queue size, ring outside RAM) stop the device.
        let result = self.process_queue();
        continue_or_reset(result, &self.interrupt, &self.errors)
    }
}

impl RequestQueue {
    fn process_queue(&mut self) -> Result<(), virtio_queue::Error> {
        let mut used = false;
        while let Some(chain) = chain::pop(&mut self.queue, &self.mem)? {
            let head = chain.head_index();
            // A chain the Writer rejects (malformed, outside RAM) or with nothing the
            // device may write (read-only buffers) gets nothing: len 0.
            let len = match Writer::new(&self.mem, &chain) {
                Ok(writer) if writer.available_bytes() == 0 => {
                    self.errors.chain_rejected();
                    0
                }
                Ok(mut writer) => {
                    let bytes = writer.available_bytes().min(MAX_REQUEST_LEN) as u64;
                    if !self.limiter.consume(bytes, 1) {
                        // Back in the ring; the limiter's timer resumes the queue.
                        self.errors.rate_limiter_throttled();
                        self.queue.go_to_previous_position();
                        break;
                    }
                    match fill(&mut writer, &mut self.buf) {
                        Some(len) => len,
                        None => {
                            self.errors.request_failed();
                            0
                        }
                    }
                }
                Err(_) => {
                    self.errors.chain_rejected();
                    0
                }
            };
            self.queue.add_used(&self.mem, head, len)?;
            self.errors.request_completed();
            used = true;
        }
        if used && self.queue.needs_notification(&self.mem)? {
            self.interrupt.signal_used_queue();
        }
        Ok(())
    }
}

/// Writes up to `MAX_REQUEST_LEN` random bytes; returns how many reached the guest, or
/// `None` when the host had none to give.
fn fill(writer: &mut Writer<'_>, buf: &mut [u8]) -> Option<u32> {
    let len = writer.available_bytes().min(buf.len());
    let buf = &mut buf[..len];
    if getrandom(buf).is_err() {
        // The host has no entropy to give (never on Linux >= 3.17): hand out nothing
        // rather than predictable bytes.
        return None;
    }
    // The Writer's slices were validated against guest memory; writing cannot fail.
    let written = match writer.write_all(buf) {
        Ok(()) => len,
        Err(_) => writer.bytes_written(),
    };
    // At most `buf.len()`, which is MAX_REQUEST_LEN (64 KiB).
    #[allow(clippy::cast_possible_truncation)]
    Some(written as u32)
}

/// Fills `buf` completely from the host's getrandom(2) (which may return short for
/// requests over 256 bytes when a signal arrives).
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        done += n as usize;
    }
    Ok(())
}
