//! The contract between the virtio-mmio transport and a device model.
//!
//! Threading: the transport runs on vCPU threads (register accesses). On DRIVER_OK it
//! hands the device its ready queues, the queues' notification eventfds (which the VMM
//! registers as KVM ioeventfds, so a notify makes no userspace exit) and the `Interrupt`
//! (whose eventfd the VMM registers as the device's KVM irqfd). The device then processes
//! its queues on a worker thread of its own, as Cloud Hypervisor's devices do, until
//! `reset`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

use super::blk::{DiskImage, SwapError};
use super::config;
use super::metrics::ErrorCounters;
use super::state::{device_kind, DeviceState, SavedDevice, StateError};

/// InterruptStatus bit: the device used buffers in a queue.
pub const VIRTIO_MMIO_INT_VRING: u32 = 0x1;
/// InterruptStatus bit: the device's configuration (or status) changed.
pub const VIRTIO_MMIO_INT_CONFIG: u32 = 0x2;

/// A device's interrupt line and the flags the transport shows the driver.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    needs_reset: AtomicBool,
    /// ConfigGeneration (virtio 1.x §2.5.1): changes whenever the configuration space
    /// does, so a driver that reads a field in several accesses can tell it read one
    /// configuration. Here beside InterruptStatus because the two change together (a
    /// configuration change bumps it, then raises VIRTIO_MMIO_INT_CONFIG), and both the
    /// transport (which answers the register) and the device see this struct.
    config_generation: AtomicU32,
    irq: EventFd,
}

impl Interrupt {
    pub fn new(irq: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            needs_reset: AtomicBool::new(false),
            config_generation: AtomicU32::new(0),
            irq,
        }
    }

    /// ConfigGeneration as the driver reads it.
    pub fn config_generation(&self) -> u32 {
        self.config_generation.load(Ordering::SeqCst)
    }

    /// The configuration space changed: a new generation. Before the interrupt, so that a
    /// driver woken by it reads the new generation.
    pub fn bump_config_generation(&self) {
        self.config_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Sets InterruptStatus bits without raising the line: a stopped device's driver is
    /// told once the device resumes (`MmioTransport::resume` triggers the line).
    pub(crate) fn set_pending(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
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

    /// Takes the InterruptStatus and DEVICE_NEEDS_RESET of a saved device (restoring a
    /// snapshot), without raising the line: [`Self::trigger`] does, once the VM can take it.
    pub(crate) fn restore(&self, status: u32, needs_reset: bool, config_generation: u32) {
        self.status.store(status, Ordering::SeqCst);
        self.needs_reset.store(needs_reset, Ordering::SeqCst);
        self.config_generation
            .store(config_generation, Ordering::SeqCst);
    }

    /// Raises the line for the status as it stands: a restored device whose driver had not
    /// acknowledged an interrupt yet gets it again (the guest's interrupt controller may
    /// have been saved before the interrupt reached it; one more is harmless, the driver
    /// reads InterruptStatus).
    pub(crate) fn trigger(&self) {
        let _ = self.irq.write(1);
    }

    /// Clears everything on device reset but ConfigGeneration: it only has to differ
    /// between two configurations, and going back to 0 could make an old read look
    /// current.
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

/// A queue the driver set up and marked ready, and the eventfd its notifications arrive
/// on (a clone of the transport's, which the VMM registered as the KVM ioeventfd).
pub struct DeviceQueue {
    pub queue: Queue,
    pub evt: EventFd,
}

/// What a device is given when the driver sets DRIVER_OK.
pub struct ActivateContext {
    pub mem: GuestMemoryMmap,
    /// Slot `i` holds queue `i`, or `None` when the driver left it not ready: a queue's
    /// index is its meaning (net: 0 = rx, 1 = tx), so a missing one must not shift the
    /// others.
    queues: Vec<Option<DeviceQueue>>,
    pub interrupt: Arc<Interrupt>,
    /// The feature bits the driver accepted.
    pub acked_features: u64,
    /// Where the device counts failed requests and rejected chains.
    pub errors: Arc<ErrorCounters>,
}

impl ActivateContext {
    pub fn new(
        mem: GuestMemoryMmap,
        queues: Vec<Option<DeviceQueue>>,
        interrupt: Arc<Interrupt>,
        acked_features: u64,
        errors: Arc<ErrorCounters>,
    ) -> Self {
        Self {
            mem,
            queues,
            interrupt,
            acked_features,
            errors,
        }
    }

    /// The ready queues with their indices, in order (for devices and tests that only
    /// look at them).
    pub fn ready_queues(&self) -> impl Iterator<Item = (usize, &DeviceQueue)> {
        self.queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| Some((i, q.as_ref()?)))
    }

    /// Takes queues `0..N`, all of which the device needs: `let [rx, tx] =
    /// ctx.take_queues()?`.
    pub fn take_queues<const N: usize>(&mut self) -> Result<[DeviceQueue; N], ActivateError> {
        let ready = self.queues.iter().flatten().count();
        if self.queues.len() < N || ready < N {
            return Err(ActivateError::QueueCount {
                got: ready,
                want: N,
            });
        }
        let mut taken = Vec::with_capacity(N);
        for index in 0..N {
            taken.push(self.take_queue(index)?);
        }
        // The length is N: every index below N was taken or returned an error.
        taken.try_into().map_err(|_| ActivateError::QueueCount {
            got: ready,
            want: N,
        })
    }

    /// Takes queue `index`, which the device needs because of a feature the driver
    /// accepted (the balloon's stats queue).
    pub fn take_queue(&mut self, index: usize) -> Result<DeviceQueue, ActivateError> {
        self.queues
            .get_mut(index)
            .and_then(Option::take)
            .ok_or(ActivateError::QueueNotReady { index })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver configured {got} queues, the device needs {want}")]
    QueueCount { got: usize, want: usize },
    #[error("the driver did not set up queue {index}, which the device needs")]
    QueueNotReady { index: usize },
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
    /// The feature bits the device offers; VIRTIO_F_VERSION_1 alone unless the device
    /// has features of its own (every device here is a virtio 1.x device).
    fn avail_features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
    }
    /// Reads from the device-specific configuration space (offset from 0x100), with
    /// [`config::read`]; a device without one (rng) reads as zeros.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        config::read(&[], offset, data);
    }
    /// Writes to the device-specific configuration space (offset from 0x100). Ignored
    /// unless the device has a field the driver may write (balloon's `actual`): the
    /// others' fields are read-only for a VERSION_1 driver.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts processing the queues (typically on a worker thread).
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Stops processing and returns the device to its initial state; returns once the
    /// worker has stopped, so the transport can hand the queues out again.
    fn reset(&mut self);
    /// Saves the device (vCPUs paused): stops its worker between two requests, so that
    /// every chain the worker took is in the used ring, and returns the device's own state
    /// and the queues the worker owned. The device stays stopped until it is activated
    /// again. A device whose worker is not running returns its state and no queues.
    fn save(&mut self) -> Result<SavedDevice, StateError> {
        Err(StateError::Unsupported {
            device: device_kind(self.device_type()),
        })
    }
    /// Loads a state saved by [`Self::save`] of a device of the same type, before the
    /// transport activates the device from the saved queues; what the saved worker held
    /// (net's received frame, the balloon's stats buffer) goes to the next activation.
    /// Refuses a state of another device type, or one the device's configuration
    /// contradicts (the guest already read that configuration).
    fn restore(&mut self, _state: DeviceState) -> Result<(), StateError> {
        Err(StateError::Unsupported {
            device: device_kind(self.device_type()),
        })
    }
    /// Replaces the disk image behind a block device, whether its worker runs or not;
    /// returns once no request uses the old image. The transport announces the new
    /// configuration (`MmioTransport::swap_disk`). Other devices have no disk.
    fn swap_disk(&mut self, _image: DiskImage) -> Result<(), SwapError> {
        Err(SwapError::NotADisk {
            device: device_kind(self.device_type()),
        })
    }
}

#[cfg(test)]
mod tests {
    use virtio_queue::QueueT;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    use super::*;

    fn context(ready: &[bool]) -> ActivateContext {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let queues = ready
            .iter()
            .map(|&r| {
                r.then(|| DeviceQueue {
                    queue: Queue::new(16).unwrap(),
                    evt: EventFd::new(EFD_NONBLOCK).unwrap(),
                })
            })
            .collect();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        ActivateContext::new(
            mem,
            queues,
            Arc::new(Interrupt::new(irq)),
            0,
            Arc::default(),
        )
    }

    #[test]
    fn take_queues_names_the_missing_queue_instead_of_shifting_the_next_one_down() {
        let mut ctx = context(&[false, true, true]);
        assert!(matches!(
            ctx.take_queues::<2>(),
            Err(ActivateError::QueueNotReady { index: 0 })
        ));
    }

    #[test]
    fn take_queues_counts_the_ready_queues_when_too_few() {
        let mut ctx = context(&[true, true]);
        assert!(matches!(
            ctx.take_queues::<3>(),
            Err(ActivateError::QueueCount { got: 2, want: 3 })
        ));
    }

    #[test]
    fn take_queue_takes_an_optional_queue_by_its_index() {
        let mut ctx = context(&[true, true, true]);
        let [_, _] = ctx.take_queues().unwrap();
        assert!(ctx.take_queue(2).is_ok());
        assert!(matches!(
            ctx.take_queue(2),
            Err(ActivateError::QueueNotReady { index: 2 })
        ));
    }
}
