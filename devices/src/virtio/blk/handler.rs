//! The virtio-blk queue handler that runs on the device's worker thread: takes chains off
//! the available ring, runs them against the disk and returns them on the used ring. A
//! request its rate limiter has no tokens for goes back to the ring, and the queue waits
//! for the limiter's timer.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::disk::Disk;
use super::lock_disk;
use super::request::{
    self, Limits, Reject, Request, RequestType, Segment, STATUS_IOERR, STATUS_OK,
};
use crate::virtio::chain;
use crate::virtio::device::{ActivateContext, DeviceQueue, Interrupt};
use crate::virtio::metrics::ErrorCounters;
use crate::virtio::rate_limiter::QueueLimiter;
use crate::virtio::worker::{EventHandler, Interest};
use vmm_sys_util::epoll::EventSet;

/// The worker's tokens: the request queue's eventfd, and the rate limiter's timer when the
/// device has a limiter.
const QUEUE_TOKEN: usize = 0;
const LIMITER_TOKEN: usize = 1;

/// The request queue, owned by the worker thread.
pub struct BlockHandler {
    mem: GuestMemoryMmap,
    queue: Queue,
    queue_evt: EventFd,
    interrupt: Arc<Interrupt>,
    errors: Arc<ErrorCounters>,
    /// Locked for each request, so a swap of the backing file lands between two.
    disk: Arc<Mutex<Disk>>,
    limiter: QueueLimiter,
    /// Scratch space reused by every request, so the fast path does not allocate.
    descs: Vec<Descriptor>,
    segs: Vec<Segment>,
}

impl BlockHandler {
    pub fn new(
        ctx: ActivateContext,
        request_queue: DeviceQueue,
        disk: Arc<Mutex<Disk>>,
        limiter: QueueLimiter,
    ) -> Self {
        let DeviceQueue { queue, evt } = request_queue;
        let size = usize::from(queue.size());
        Self {
            mem: ctx.mem,
            queue,
            queue_evt: evt,
            interrupt: ctx.interrupt,
            errors: ctx.errors,
            disk,
            limiter,
            descs: Vec::with_capacity(size),
            segs: Vec::with_capacity(size),
        }
    }

    /// The request queue, where the worker left it (for a snapshot).
    pub fn into_queue(self) -> Queue {
        self.queue
    }

    /// The fd of `token` is readable.
    fn handle(&mut self, token: usize) -> ControlFlow<()> {
        match token {
            QUEUE_TOKEN => self.on_queue_event(),
            LIMITER_TOKEN => {
                self.limiter.on_timer();
                self.process_queue()
            }
            _ => ControlFlow::Continue(()),
        }
    }

    /// The queue eventfd fired.
    fn on_queue_event(&mut self) -> ControlFlow<()> {
        // Read before draining: a notify that arrives while we drain fires the fd again,
        // so no request is left behind. EAGAIN (spurious wakeup) is harmless.
        let _ = self.queue_evt.read();
        self.process_queue()
    }

    /// Runs every available request. Breaks (and sets DEVICE_NEEDS_RESET) when the
    /// driver broke the queue, so the worker stops touching it.
    pub fn process_queue(&mut self) -> ControlFlow<()> {
        let max_descriptors = usize::from(self.queue.size());
        let mut used = false;
        let result = loop {
            // One chain at a time: add_used needs the queue between chains.
            let chain = match chain::pop(&mut self.queue, &self.mem) {
                Ok(Some(chain)) => chain,
                Ok(None) => break ControlFlow::Continue(()),
                // The available index runs more than a queue ahead of us.
                Err(_) => {
                    self.errors.chain_rejected();
                    break ControlFlow::Break(());
                }
            };
            let head = chain.head_index();
            // Held until the request is done: checked against and run on one disk, even
            // when a swap is waiting for the lock.
            let disk = lock_disk(&self.disk);
            let limits = Limits {
                capacity: disk.capacity,
                max_descriptors,
            };
            let parsed = request::parse(&self.mem, &chain, limits, &mut self.descs, &mut self.segs);
            if parsed.is_err() {
                self.errors.chain_rejected();
            }
            let len = match parsed {
                Ok(req) => {
                    if !self.limiter.consume(disk_bytes(&req), 1) {
                        // Back in the ring; the limiter's timer resumes the queue.
                        self.errors.rate_limiter_throttled();
                        self.queue.go_to_previous_position();
                        break ControlFlow::Continue(());
                    }
                    let (code, len) = execute(&self.mem, &disk, &req, &self.segs);
                    if code != STATUS_OK {
                        self.errors.request_failed();
                    }
                    len
                }
                Err(Reject::Status { status, code }) => {
                    write_status(&self.mem, status, code);
                    1
                }
                Err(Reject::NoStatus) => 0,
                Err(Reject::Broken) => {
                    // NEEDS_RESET first, so a driver that sees this chain used and then
                    // reads Status finds the flag already set.
                    self.interrupt.set_needs_reset();
                    // Give the buffers back if the head is a real descriptor; a bad head
                    // makes add_used fail, which changes nothing.
                    used |= self.queue.add_used(&self.mem, head, 0).is_ok();
                    break ControlFlow::Break(());
                }
            };
            if self.queue.add_used(&self.mem, head, len).is_err() {
                break ControlFlow::Break(());
            }
            self.errors.request_completed();
            used = true;
        };
        if result.is_break() {
            self.interrupt.set_needs_reset();
        }
        // One interrupt per batch, not per request. Without EVENT_IDX (not offered)
        // needs_notification is always true; with it, it honours used_event.
        if used && self.queue.needs_notification(&self.mem).unwrap_or(true) {
            self.interrupt.signal_used_queue();
        }
        result
    }
}

impl EventHandler for BlockHandler {
    fn on_event(&mut self, token: usize, _: EventSet, _: &mut Interest) -> ControlFlow<()> {
        self.handle(token)
    }
}

/// The bytes a request moves to or from the disk: what a bandwidth bucket charges it
/// (FLUSH and GET_ID move none; every request is one op).
fn disk_bytes(req: &Request) -> u64 {
    match req.kind {
        RequestType::In | RequestType::Out => u64::from(req.data_len),
        RequestType::Flush | RequestType::GetId => 0,
    }
}

/// Runs a checked request; returns its status and the number of bytes written to the
/// guest.
fn execute(mem: &GuestMemoryMmap, disk: &Disk, req: &Request, segs: &[Segment]) -> (u8, u32) {
    let (code, data_written) = match req.kind {
        RequestType::In => match disk.read_into(mem, segs, req.sector) {
            Ok(()) => (STATUS_OK, req.data_len),
            Err(_) => (STATUS_IOERR, 0),
        },
        // §5.2.6.2: a write to a VIRTIO_BLK_F_RO device gets IOERR and writes nothing
        // (Firecracker answers the same).
        RequestType::Out if disk.read_only => (STATUS_IOERR, 0),
        RequestType::Out => match disk.write_from(mem, segs, req.sector) {
            Ok(()) => (STATUS_OK, 0),
            Err(_) => (STATUS_IOERR, 0),
        },
        // OK only once the data is on stable storage: that is what the guest's FLUSH
        // (fsync, journal commit) relies on.
        RequestType::Flush => match disk.flush() {
            Ok(()) => (STATUS_OK, 0),
            Err(_) => (STATUS_IOERR, 0),
        },
        RequestType::GetId => {
            // At most ID_LEN (20) bytes: write_id copies no more than the id.
            #[allow(clippy::cast_possible_truncation)]
            let written = disk.write_id(mem, segs) as u32;
            (STATUS_OK, written)
        }
    };
    write_status(mem, req.status, code);
    (code, data_written + 1)
}

fn write_status(mem: &GuestMemoryMmap, addr: vm_memory::GuestAddress, code: u8) {
    // The address was checked when parsing; guest memory does not shrink under us.
    let _ = mem.write_obj(code, addr);
}
