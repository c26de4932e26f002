//! The virtio-mmio transport, version 2 (virtio 1.x §4.2.2): the register window a driver
//! uses to discover a device, negotiate features, set up queues and start the device.
//!
//! Runs on vCPU threads behind the MMIO bus. Nothing a guest writes can make it panic:
//! accesses of the wrong width or to unknown offsets are ignored, invalid status
//! transitions are ignored, and an unusable queue set up by the driver ends in
//! DEVICE_NEEDS_RESET instead of an activated device.
//!
//! `state` saves and restores the transport with its device (snapshots).

mod config_change;
#[cfg(test)]
mod config_change_tests;
mod queue_config;
pub(crate) mod regs;
mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use self::queue_config::QueueConfig;
pub use self::queue_config::QueueError;
use self::regs::*;
pub use self::state::{QueueState, TransportState};
use super::device::{ActivateContext, DeviceQueue, Interrupt, VirtioDevice};
use super::metrics::ErrorCounters;
use super::state::StateError;
use crate::bus::BusDevice;

/// Size of one device's register window.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;

/// Offset of QueueNotify: the VMM registers each queue eventfd as a KVM ioeventfd at
/// `base + QUEUE_NOTIFY_OFFSET`, 4 bytes, datamatch = queue index.
pub const QUEUE_NOTIFY_OFFSET: u64 = QUEUE_NOTIFY;

const STATUS_INIT: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
const STATUS_FEATURES: u32 = STATUS_INIT | VIRTIO_CONFIG_S_FEATURES_OK;
const STATUS_LIVE: u32 = STATUS_FEATURES | VIRTIO_CONFIG_S_DRIVER_OK;

/// The kernel command-line token announcing a virtio-mmio device to Linux
/// (`virtio_mmio.device=<size>@<base>:<irq>`; the size goes through `memparse`, so
/// `4K` for one window).
pub fn cmdline_arg(base: u64, len: u64, irq: u32) -> String {
    let size = if len != 0 && len.is_multiple_of(1024) {
        format!("{}K", len / 1024)
    } else {
        len.to_string()
    };
    format!("virtio_mmio.device={size}@{base:#x}:{irq}")
}

/// A virtio device behind a virtio-mmio register window.
pub struct MmioTransport {
    mem: GuestMemoryMmap,
    device: Box<dyn VirtioDevice>,
    interrupt: Arc<Interrupt>,
    /// The device's error counts, kept across resets: they describe the VM's whole run.
    errors: Arc<ErrorCounters>,
    queue_evts: Vec<EventFd>,
    queues: Vec<QueueConfig>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    /// The device's worker owns the queues: reset must stop it before reconfiguring.
    activated: bool,
    /// Saved or restored, and stopped until [`Self::resume`] starts the device from it.
    quiesced: Option<TransportState>,
    /// Restored with InterruptStatus bits set: [`Self::resume`] raises the line again.
    raise_on_resume: bool,
    /// The device was given a saved state, and may hold some of it for its next
    /// activation: a reset must clear it even if the device never ran.
    device_loaded: bool,
}

impl MmioTransport {
    /// Wraps `device`; `irq` becomes the device's interrupt line (the VMM's irqfd).
    pub fn new(
        mem: GuestMemoryMmap,
        device: Box<dyn VirtioDevice>,
        irq: EventFd,
    ) -> io::Result<Self> {
        let queues: Vec<QueueConfig> = device
            .queue_max_sizes()
            .iter()
            .map(|&max| QueueConfig::new(max))
            .collect();
        let queue_evts = queues
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            mem,
            device,
            interrupt: Arc::new(Interrupt::new(irq)),
            errors: Arc::default(),
            queue_evts,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            activated: false,
            quiesced: None,
            raise_on_resume: false,
            device_loaded: false,
        })
    }

    /// One notification eventfd per queue, in queue order.
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// The device's interrupt; register `interrupt().irq_eventfd()` as its irqfd.
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// The device's counts of failed requests and rejected chains.
    pub fn errors(&self) -> &Arc<ErrorCounters> {
        &self.errors
    }

    /// The device ID (virtio 1.x §5) of the device behind this window.
    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    fn selected_queue(&mut self) -> Option<&mut QueueConfig> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let queue = self.queues.get(self.queue_sel as usize);
        match offset {
            MAGIC => MAGIC_VALUE,
            VERSION => MMIO_VERSION,
            DEVICE_ID => self.device.device_type(),
            VENDOR => VENDOR_ID,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => (self.offered_features() & 0xffff_ffff) as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            // 0 tells the driver the queue does not exist (§4.2.2.2).
            QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size)),
            QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready)),
            INTERRUPT_STATUS => self.interrupt.status(),
            STATUS => {
                if self.interrupt.needs_reset() {
                    self.status | VIRTIO_CONFIG_S_NEEDS_RESET
                } else {
                    self.status
                }
            }
            // Bumped by each configuration change (a disk swapped under a running guest).
            CONFIG_GENERATION => self.interrupt.config_generation(),
            // Write-only and reserved registers read as 0.
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            DRIVER_FEATURES => self.write_driver_features(value),
            QUEUE_SEL => self.queue_sel = value,
            QUEUE_NUM | QUEUE_READY | QUEUE_DESC_LOW | QUEUE_DESC_HIGH | QUEUE_DRIVER_LOW
            | QUEUE_DRIVER_HIGH | QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH => {
                self.write_queue_reg(offset, value)
            }
            QUEUE_NOTIFY => {
                // Only reached when no ioeventfd is registered for this value: kick the
                // same eventfd the device waits on.
                if let Some(evt) = self.queue_evts.get(value as usize) {
                    let _ = evt.write(1);
                }
            }
            INTERRUPT_ACK => self.interrupt.ack(value),
            STATUS => self.write_status(value),
            _ => {}
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        // Features are negotiated only between DRIVER and FEATURES_OK (§3.1.1).
        if self.status != STATUS_INIT {
            return;
        }
        let value = u64::from(value);
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | value,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (value << 32),
            // No device here offers feature bits past 63.
            _ => {}
        }
    }

    fn write_queue_reg(&mut self, offset: u64, value: u32) {
        // Queue layout is fixed once the device runs (§4.2.2.2: "the driver MUST NOT
        // change... after DRIVER_OK").
        if self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            return;
        }
        let Some(q) = self.selected_queue() else {
            return;
        };
        let low = |old: u64| (old & !0xffff_ffff) | u64::from(value);
        let high = |old: u64| (old & 0xffff_ffff) | (u64::from(value) << 32);
        match offset {
            QUEUE_NUM => q.size = value,
            QUEUE_READY => q.ready = value == 1,
            QUEUE_DESC_LOW => q.desc = low(q.desc),
            QUEUE_DESC_HIGH => q.desc = high(q.desc),
            QUEUE_DRIVER_LOW => q.avail = low(q.avail),
            QUEUE_DRIVER_HIGH => q.avail = high(q.avail),
            QUEUE_DEVICE_LOW => q.used = low(q.used),
            QUEUE_DEVICE_HIGH => q.used = high(q.used),
            _ => {}
        }
    }

    /// The device status state machine (§3.1.1): each step adds one bit to the previous
    /// status; writing 0 resets; FAILED may be added at any time. Anything else is ignored.
    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        if value & VIRTIO_CONFIG_S_FAILED != 0 {
            self.status |= VIRTIO_CONFIG_S_FAILED;
            return;
        }
        match (self.status, value) {
            (0, VIRTIO_CONFIG_S_ACKNOWLEDGE) | (VIRTIO_CONFIG_S_ACKNOWLEDGE, STATUS_INIT) => {
                self.status = value
            }
            // Leaving FEATURES_OK clear is how the device refuses the features
            // (§3.1.1 step 6): the driver reads the status back and gives up.
            (STATUS_INIT, STATUS_FEATURES) if self.features_acceptable() => self.status = value,
            (STATUS_FEATURES, STATUS_LIVE) => {
                self.status = value;
                self.activate();
            }
            _ => {}
        }
    }

    /// The device's features less VIRTIO_RING_F_INDIRECT_DESC, which no queue here
    /// follows (`chain` refuses indirect descriptors): a driver never sees it, and
    /// accepting it anyway fails FEATURES_OK.
    fn offered_features(&self) -> u64 {
        self.device.avail_features() & !(1u64 << VIRTIO_RING_F_INDIRECT_DESC)
    }

    fn features_acceptable(&self) -> bool {
        let version_1 = 1u64 << VIRTIO_F_VERSION_1;
        self.driver_features & version_1 != 0
            && self.driver_features & !self.offered_features() == 0
    }

    fn activate(&mut self) {
        // The driver learns of a failure from DEVICE_NEEDS_RESET, set by start_device.
        let _ = self.start_device(None);
    }

    /// Hands the device its ready queues and starts it; with `saved`, each queue resumes
    /// at its saved `next_avail`/`next_used`. An unusable queue (or a lack of fds) or a
    /// device that cannot start ends in DEVICE_NEEDS_RESET, and the error says which.
    fn start_device(&mut self, saved: Option<&[QueueState]>) -> Result<(), StateError> {
        let result = self.try_start_device(saved);
        match result {
            Ok(()) => self.activated = true,
            // The driver gave an unusable queue (or we ran out of fds): the device cannot
            // run, tell the driver to reset it.
            Err(_) => self.interrupt.set_needs_reset(),
        }
        result
    }

    fn try_start_device(&mut self, saved: Option<&[QueueState]>) -> Result<(), StateError> {
        let event_idx = self.driver_features & (1u64 << VIRTIO_RING_F_EVENT_IDX) != 0;
        // Queue i stays at index i whether or not the queues before it are ready.
        let mut queues = Vec::with_capacity(self.queues.len());
        for (index, (cfg, evt)) in self.queues.iter().zip(&self.queue_evts).enumerate() {
            if !cfg.ready {
                queues.push(None);
                continue;
            }
            let mut queue = cfg
                .to_queue(&self.mem, event_idx)
                .map_err(|source| StateError::Queue { index, source })?;
            if let Some(q) = saved.and_then(|s| s.get(index)) {
                q.set_indices(&mut queue);
            }
            let evt = evt.try_clone().map_err(StateError::EventFd)?;
            queues.push(Some(DeviceQueue { queue, evt }));
        }
        let ctx = ActivateContext::new(
            self.mem.clone(),
            queues,
            self.interrupt.clone(),
            self.driver_features,
            self.errors.clone(),
        );
        self.device.activate(ctx).map_err(StateError::Activate)
    }

    fn reset(&mut self) {
        // A device given a saved state may hold what its saved worker had (a frame, a
        // stats buffer): its reset drops that too.
        self.quiesced = None;
        if self.activated || std::mem::take(&mut self.device_loaded) {
            self.device.reset();
            self.activated = false;
        }
        self.raise_on_resume = false;
        for q in &mut self.queues {
            q.reset();
        }
        // Drop notifications the driver sent before or during the old session, so the
        // next activation does not start with a stale kick.
        for evt in &self.queue_evts {
            let _ = evt.read();
        }
        self.interrupt.reset();
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG {
            self.device.read_config(offset - CONFIG, data);
        } else if let Ok(out) = <&mut [u8; 4]>::try_from(&mut *data) {
            *out = self.read_reg(offset).to_le_bytes();
        } else {
            // Registers are 32 bits wide (§4.2.2.2: the driver MUST use 32-bit accesses);
            // other widths read as zeros. Filled here because nothing before us does:
            // `data` is the vCPU's MMIO exit buffer, which still holds the previous exit's
            // bytes (found by the MMIO fuzz harness).
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG {
            self.device.write_config(offset - CONFIG, data);
        } else if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_reg(offset, u32::from_le_bytes(bytes));
        }
    }
}

impl Drop for MmioTransport {
    fn drop(&mut self) {
        // Stop the worker before the memory and eventfds it uses go away.
        if self.activated {
            self.device.reset();
        }
    }
}
