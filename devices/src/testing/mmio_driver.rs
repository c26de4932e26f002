//! A device behind its real virtio-mmio transport, driven through the registers the way
//! Linux's virtio-mmio driver probes and uses it (virtio 1.x §3.1.1, §4.2.3).

use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{wait_used, DriverError, DriverQueue, Waited};
use crate::bus::BusDevice;
use crate::virtio::mmio::regs::*;
use crate::virtio::{Interrupt, MmioTransport, TransportState, VirtioDevice};

/// Status after DRIVER_OK when the device accepted everything.
const STATUS_LIVE: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE
    | VIRTIO_CONFIG_S_DRIVER
    | VIRTIO_CONFIG_S_FEATURES_OK
    | VIRTIO_CONFIG_S_DRIVER_OK;

pub struct MmioDriver {
    pub mem: GuestMemoryMmap,
    /// The transport under test; its registers are reached through [`Self::read`] and
    /// [`Self::write`], as a vCPU's MMIO exits would.
    pub transport: MmioTransport,
    /// The device's interrupt line, where the driver sleeps.
    irq: EventFd,
}

impl MmioDriver {
    pub fn new(mem: &GuestMemoryMmap, device: Box<dyn VirtioDevice>) -> Result<Self, DriverError> {
        let irq = EventFd::new(EFD_NONBLOCK)?;
        let transport = MmioTransport::new(mem.clone(), device, irq.try_clone()?)?;
        Ok(MmioDriver {
            mem: mem.clone(),
            transport,
            irq,
        })
    }

    /// A device restored from `state` over `mem` behind a new transport, as a new VMM
    /// process makes it; it runs once `transport.resume()` is called.
    pub fn restore(
        mem: &GuestMemoryMmap,
        device: Box<dyn VirtioDevice>,
        state: TransportState,
    ) -> Result<Self, DriverError> {
        let irq = EventFd::new(EFD_NONBLOCK)?;
        let transport = MmioTransport::restore(mem.clone(), device, irq.try_clone()?, state)?;
        Ok(MmioDriver {
            mem: mem.clone(),
            transport,
            irq,
        })
    }

    /// Whether the device's interrupt line was raised since the last wait (and lowers it).
    pub fn irq_raised(&self) -> bool {
        self.irq.read().is_ok()
    }

    /// A 32-bit register read.
    pub fn read(&mut self, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        self.transport.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    /// A 32-bit register write.
    pub fn write(&mut self, offset: u64, value: u32) {
        self.transport.write(offset, &value.to_le_bytes());
    }

    /// A read of `data.len()` bytes at `offset`, of any width or alignment, as a vCPU's
    /// MMIO exit hands it over: `data` still holds whatever the caller left in it (KVM
    /// leaves the previous exit's bytes there).
    pub fn read_bytes(&mut self, offset: u64, data: &mut [u8]) {
        self.transport.read(offset, data);
    }

    /// A write of `data` at `offset`, of any width or alignment.
    pub fn write_bytes(&mut self, offset: u64, data: &[u8]) {
        self.transport.write(offset, data);
    }

    /// The 64 feature bits the device offers.
    pub fn offered_features(&mut self) -> u64 {
        self.write(DEVICE_FEATURES_SEL, 0);
        let low = self.read(DEVICE_FEATURES);
        self.write(DEVICE_FEATURES_SEL, 1);
        let high = self.read(DEVICE_FEATURES);
        u64::from(high) << 32 | u64::from(low)
    }

    /// ACKNOWLEDGE, DRIVER, `features`, FEATURES_OK; returns the status read back (without
    /// FEATURES_OK when the device refused the features).
    pub fn negotiate(&mut self, features: u64) -> u32 {
        self.write(STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        self.write(STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
        self.write(DRIVER_FEATURES_SEL, 0);
        self.write(DRIVER_FEATURES, features as u32);
        self.write(DRIVER_FEATURES_SEL, 1);
        self.write(DRIVER_FEATURES, (features >> 32) as u32);
        self.write(
            STATUS,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
        );
        self.read(STATUS)
    }

    /// Programs queue `index` with the given size and ring addresses and marks it ready.
    pub fn setup_queue(&mut self, index: u32, size: u32, desc: u64, avail: u64, used: u64) {
        self.write(QUEUE_SEL, index);
        self.write(QUEUE_NUM, size);
        self.write(QUEUE_DESC_LOW, desc as u32);
        self.write(QUEUE_DESC_HIGH, (desc >> 32) as u32);
        self.write(QUEUE_DRIVER_LOW, avail as u32);
        self.write(QUEUE_DRIVER_HIGH, (avail >> 32) as u32);
        self.write(QUEUE_DEVICE_LOW, used as u32);
        self.write(QUEUE_DEVICE_HIGH, (used >> 32) as u32);
        self.write(QUEUE_READY, 1);
    }

    /// Linux's probe: accept every offered feature, set up queue `i` on `queues[i]`,
    /// DRIVER_OK; fails unless the device ends up live.
    pub fn bring_up(&mut self, queues: &[&DriverQueue]) -> Result<(), DriverError> {
        let features = self.offered_features();
        self.negotiate(features);
        for (i, q) in (0u32..).zip(queues) {
            let (desc, avail, used) = (q.desc_table_addr(), q.avail_addr(), q.used_addr());
            self.setup_queue(i, u32::from(q.size()), desc, avail, used);
        }
        self.write(STATUS, STATUS_LIVE);
        match self.read(STATUS) {
            STATUS_LIVE => Ok(()),
            status => Err(DriverError::NotLive { status }),
        }
    }

    /// QueueNotify for queue `index` (KVM's ioeventfd would signal the same eventfd).
    pub fn notify(&mut self, index: u32) {
        self.write(QUEUE_NOTIFY, index);
    }

    pub fn interrupt(&self) -> &Arc<Interrupt> {
        self.transport.interrupt()
    }

    /// Waits until `queue` has used chains up to `target` or the device asked for a
    /// reset; `None` waits as long as it takes.
    pub fn wait_used(
        &self,
        queue: &DriverQueue,
        target: u16,
        timeout: Option<Duration>,
    ) -> Result<Waited, DriverError> {
        wait_used(queue, target, &self.irq, self.interrupt(), timeout)
    }
}
