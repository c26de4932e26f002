//! virtio-rng (device ID 4): entropy from the host's getrandom(2).
//!
//! One request queue; the driver posts writable buffers and the device fills each with
//! random bytes. A request is capped at [`MAX_REQUEST_LEN`] so one huge buffer cannot keep
//! the worker (and the host's entropy pool) busy; the driver simply asks again. A rate
//! limiter may hold the queue back (each request is an op and counts the bytes it gets).

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::chain::{self, Writer};
use super::device::DeviceQueue;
use super::metrics::ErrorCounters;
use super::rate_limiter::QueueLimiter;
use super::worker::{continue_or_reset, Worker};
use super::{ActivateContext, ActivateError, Interrupt, VirtioDevice};

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
    worker: Option<Worker>,
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
        let mut rq = RequestQueue {
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
        let worker = Worker::spawn("vmm-virtio-rng", &fds, move |token| rq.on_event(token))
            .map_err(ActivateError::Worker)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
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

impl RequestQueue {
    fn on_event(&mut self, token: usize) -> ControlFlow<()> {
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

/// Fills `buf` completely; getrandom may return short for requests over 256 bytes when a
/// signal arrives.
fn getrandom(buf: &mut [u8]) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::testing::{indirect_table, DeviceHarness, DriverQueue, Waited, WAIT};

    const MEM_SIZE: usize = 0x40_0000;
    const BUF: u64 = 0x10_0000;

    /// An active rng; its request queue's rings are at 0.
    fn start() -> DeviceHarness<Rng> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let vq = DriverQueue::new(&mem, 0, 16).unwrap();
        DeviceHarness::activate(Rng::new(), &mem, vec![vq]).unwrap()
    }

    fn wait_used(h: &DeviceHarness<Rng>, n: u16) {
        let waited = h.wait_used(0, n, Some(WAIT)).unwrap();
        assert_eq!(waited, Waited::Used, "device did not use {n} chains");
    }

    fn used_len(h: &DeviceHarness<Rng>, i: u16) -> u32 {
        h.queues[0].used_elem(i).unwrap().1
    }

    #[test]
    fn rng_fills_a_two_descriptor_buffer_with_random_bytes() {
        let h = start();
        let (mem, vq) = (&h.mem, &h.queues[0]);
        let flags = (VRING_DESC_F_WRITE | VRING_DESC_F_NEXT) as u16;
        let descs = [
            RawDescriptor::from(Descriptor::new(BUF, 100, flags, 1)),
            RawDescriptor::from(Descriptor::new(
                BUF + 0x1000,
                156,
                VRING_DESC_F_WRITE as u16,
                0,
            )),
        ];
        vq.add_desc_chains(&descs, 0).unwrap();
        h.kick(0).unwrap();

        wait_used(&h, 1);
        assert_eq!(used_len(&h, 0), 256);
        let mut a = [0u8; 100];
        mem.read_slice(&mut a, GuestAddress(BUF)).unwrap();
        let distinct: std::collections::HashSet<u8> = a.iter().copied().collect();
        assert!(distinct.len() > 10, "bytes look constant: {a:?}");
    }

    #[test]
    fn rng_caps_a_request_at_64_kib() {
        let h = start();
        let desc = Descriptor::new(BUF, 0x20_0000, VRING_DESC_F_WRITE as u16, 0);
        h.queues[0]
            .add_desc_chains(&[RawDescriptor::from(desc)], 0)
            .unwrap();
        h.kick(0).unwrap();
        wait_used(&h, 1);
        assert_eq!(used_len(&h, 0), MAX_REQUEST_LEN as u32);
    }

    #[test]
    fn rng_read_only_or_out_of_ram_buffers_get_len_0_and_later_ones_are_served() {
        let h = start();
        let descs = [
            RawDescriptor::from(Descriptor::new(BUF, 64, 0, 0)),
            RawDescriptor::from(Descriptor::new(
                MEM_SIZE as u64 + 0x1000,
                64,
                VRING_DESC_F_WRITE as u16,
                0,
            )),
            RawDescriptor::from(Descriptor::new(BUF, 32, VRING_DESC_F_WRITE as u16, 0)),
        ];
        h.queues[0].add_desc_chains(&descs, 0).unwrap();
        h.kick(0).unwrap();
        wait_used(&h, 3);
        assert_eq!(
            [used_len(&h, 0), used_len(&h, 1), used_len(&h, 2)],
            [0, 0, 32]
        );
        // The read-only chain and the one outside RAM are the device's rejections.
        assert_eq!(h.errors.snapshot().chains_rejected, 2);
    }

    #[test]
    fn rng_refuses_an_indirect_chain_and_leaves_its_buffer_alone() {
        let h = start();
        let target = BUF + 0x1000;
        let in_table = Descriptor::new(target, 64, VRING_DESC_F_WRITE as u16, 0);
        let indirect = indirect_table(&h.mem, BUF, &[RawDescriptor::from(in_table)]).unwrap();
        h.queues[0].add_desc_chains(&[indirect], 0).unwrap();
        h.kick(0).unwrap();
        wait_used(&h, 1);
        assert_eq!(used_len(&h, 0), 0);
        let mut got = [0xffu8; 64];
        h.mem.read_slice(&mut got, GuestAddress(target)).unwrap();
        assert_eq!(got, [0u8; 64]);
        assert_eq!(h.errors.snapshot().chains_rejected, 1);
    }

    #[test]
    fn rng_refuses_a_chain_longer_than_its_queue() {
        let h = start();
        // Descriptors 0 and 1 point at each other: the chain never ends.
        let flags = (VRING_DESC_F_WRITE | VRING_DESC_F_NEXT) as u16;
        let descs = [
            RawDescriptor::from(Descriptor::new(BUF, 64, flags, 1)),
            RawDescriptor::from(Descriptor::new(BUF + 0x1000, 64, flags, 0)),
        ];
        h.queues[0].add_desc_chains(&descs, 0).unwrap();
        h.kick(0).unwrap();
        wait_used(&h, 1);
        assert_eq!(used_len(&h, 0), 0);
        assert_eq!(h.errors.snapshot().chains_rejected, 1);
    }

    #[test]
    fn rng_requests_beyond_its_bandwidth_wait_for_the_limiter_timer() {
        use crate::virtio::{RateLimiterConfig, TokenBucketConfig};
        // 64 bytes per 100 ms: three 64-byte requests take at least 200 ms.
        let config = RateLimiterConfig {
            bandwidth: Some(TokenBucketConfig {
                size: 64,
                one_time_burst: 0,
                refill_time_ms: 100,
            }),
            ops: None,
        };
        let limiter = QueueLimiter::from_config(Some(config)).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let vq = DriverQueue::new(&mem, 0, 16).unwrap();
        let rng = Rng::new().with_rate_limiter(limiter);
        let h = DeviceHarness::activate(rng, &mem, vec![vq]).unwrap();
        let descs: Vec<RawDescriptor> = (0..3)
            .map(|i| {
                let addr = BUF + 0x100 * i;
                RawDescriptor::from(Descriptor::new(addr, 64, VRING_DESC_F_WRITE as u16, 0))
            })
            .collect();
        let start = std::time::Instant::now();
        h.queues[0].add_desc_chains(&descs, 0).unwrap();
        h.kick(0).unwrap();
        wait_used(&h, 1);
        // Checked only before the bucket can have refilled, so a slow host cannot fail it.
        std::thread::sleep(Duration::from_millis(30));
        let used = h.queues[0].used_idx().unwrap();
        if start.elapsed() < Duration::from_millis(100) {
            assert_eq!(used, 1, "a throttled request was served");
        }
        wait_used(&h, 3);
        assert!(start.elapsed() >= Duration::from_millis(190));
        assert_eq!([used_len(&h, 1), used_len(&h, 2)], [64, 64]);
        assert!(h.errors.throttled_count() >= 1);
    }

    #[test]
    fn rng_reset_returns_after_the_worker_stopped() {
        let mut h = start();
        h.dev.reset();
        let desc = Descriptor::new(BUF, 64, VRING_DESC_F_WRITE as u16, 0);
        h.queues[0]
            .add_desc_chains(&[RawDescriptor::from(desc)], 0)
            .unwrap();
        h.kick(0).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(h.queues[0].used_idx().unwrap(), 0);
    }
}
