//! The contract between the virtio-mmio transport and a device model.
//!
//! Threading: the transport runs on vCPU threads (register accesses). On DRIVER_OK it
//! hands the device its ready queues, the queues' notification eventfds (which the VMM
//! registers as KVM ioeventfds, so a notify makes no userspace exit) and the `Interrupt`
//! (whose eventfd the VMM registers as the device's KVM irqfd). The device then processes
//! its queues on a worker thread of its own, as Cloud Hypervisor's devices do, until
//! `reset`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// InterruptStatus bit: the device used buffers in a queue.
pub const VIRTIO_MMIO_INT_VRING: u32 = 0x1;
/// InterruptStatus bit: the device's configuration (or status) changed.
pub const VIRTIO_MMIO_INT_CONFIG: u32 = 0x2;

/// A device's interrupt line and the flags the transport shows the driver.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    needs_reset: AtomicBool,
    irq: EventFd,
}

impl Interrupt {
    pub fn new(irq: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            needs_reset: AtomicBool::new(false),
            irq,
        }
    }

    /// The eventfd to register as the device's irqfd.
    pub fn irq_eventfd(&self) -> &EventFd {
        &self.irq
    }

    /// Tells the driver that buffers were used.
    pub fn signal_used_queue(&self) {
        self.raise(VIRTIO_MMIO_INT_VRING);
    }

    /// Tells the driver that the configuration space changed.
    pub fn signal_config_change(&self) {
        self.raise(VIRTIO_MMIO_INT_CONFIG);
    }

    /// The driver broke the protocol (e.g. a malformed descriptor chain): the device stops
    /// using its queues, the Status register shows DEVICE_NEEDS_RESET, and the driver gets
    /// a configuration-change interrupt, as virtio 1.x §2.1.2 asks.
    pub fn set_needs_reset(&self) {
        self.needs_reset.store(true, Ordering::SeqCst);
        self.raise(VIRTIO_MMIO_INT_CONFIG);
    }

    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// InterruptStatus as the driver reads it.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// InterruptACK: clears the acknowledged bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Clears everything on device reset.
    pub fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
        self.needs_reset.store(false, Ordering::SeqCst);
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        // A full eventfd counter (never in practice) only means the line is already up.
        let _ = self.irq.write(1);
    }
}

/// What a device is given when the driver sets DRIVER_OK.
pub struct ActivateContext {
    pub mem: GuestMemoryMmap,
    /// The queues, indexed as the driver configured them; each is ready.
    pub queues: Vec<Queue>,
    /// One notification eventfd per queue (clones of the transport's), same order.
    pub queue_evts: Vec<EventFd>,
    pub interrupt: std::sync::Arc<Interrupt>,
    /// The feature bits the driver accepted.
    pub acked_features: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver configured {got} queues, the device needs {want}")]
    QueueCount { got: usize, want: usize },
    #[error("cannot start the device's worker: {0}")]
    Worker(#[source] std::io::Error),
    #[error("device backend failed: {0}")]
    Backend(String),
}

/// A virtio device model.
pub trait VirtioDevice: Send {
    /// The virtio device ID (net 1, blk 2, rng 4, balloon 5, vsock 19).
    fn device_type(&self) -> u32;
    /// The largest size of each queue; the number of entries is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The feature bits the device offers (VIRTIO_F_VERSION_1 included).
    fn avail_features(&self) -> u64;
    /// Reads from the device-specific configuration space (offset from 0x100).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes to the device-specific configuration space (offset from 0x100).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts processing the queues (typically on a worker thread).
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Stops processing and returns the device to its initial state; returns once the
    /// worker has stopped, so the transport can hand the queues out again.
    fn reset(&mut self);
}
