//! A device model activated directly, without a transport: the driver's rings, the
//! queue eventfds it kicks, and the interrupt the device raises.

use std::sync::Arc;
use std::time::Duration;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{wait_used, DriverError, DriverQueue, Waited};
use crate::virtio::{ActivateContext, DeviceQueue, ErrorCounters, Interrupt, VirtioDevice};

pub struct DeviceHarness<D: VirtioDevice> {
    pub mem: GuestMemoryMmap,
    /// The driver side of queue `i`.
    pub queues: Vec<DriverQueue>,
    /// Queue `i`'s notification eventfd: writing it is the driver's kick.
    pub evts: Vec<EventFd>,
    pub interrupt: Arc<Interrupt>,
    pub errors: Arc<ErrorCounters>,
    /// The eventfd behind `interrupt`, where the driver sleeps.
    irq: EventFd,
    pub dev: D,
}

impl<D: VirtioDevice> DeviceHarness<D> {
    /// Activates `dev` with queue `i` on `queues[i]`, every queue ready and every
    /// offered feature accepted.
    pub fn activate(
        dev: D,
        mem: &GuestMemoryMmap,
        queues: Vec<DriverQueue>,
    ) -> Result<Self, DriverError> {
        let features = dev.avail_features();
        Self::activate_with_features(dev, mem, queues, features)
    }

    /// [`Self::activate`] with the driver accepting `features`.
    pub fn activate_with_features(
        mut dev: D,
        mem: &GuestMemoryMmap,
        queues: Vec<DriverQueue>,
        features: u64,
    ) -> Result<Self, DriverError> {
        let irq = EventFd::new(EFD_NONBLOCK)?;
        let interrupt = Arc::new(Interrupt::new(irq.try_clone()?));
        let errors = Arc::new(ErrorCounters::default());
        let mut evts = Vec::with_capacity(queues.len());
        let mut ready = Vec::with_capacity(queues.len());
        for q in &queues {
            let evt = EventFd::new(EFD_NONBLOCK)?;
            ready.push(Some(DeviceQueue {
                queue: q.create_queue()?,
                evt: evt.try_clone()?,
            }));
            evts.push(evt);
        }
        let ctx = ActivateContext::new(
            mem.clone(),
            ready,
            interrupt.clone(),
            features,
            errors.clone(),
        );
        dev.activate(ctx)?;
        Ok(DeviceHarness {
            mem: mem.clone(),
            queues,
            evts,
            interrupt,
            errors,
            irq,
            dev,
        })
    }

    /// The driver notifies queue `q`.
    pub fn kick(&self, q: usize) -> Result<(), DriverError> {
        if let Some(evt) = self.evts.get(q) {
            evt.write(1)?;
        }
        Ok(())
    }

    /// Waits until queue `q` has used chains up to `target` or the device asked for a
    /// reset; `None` waits as long as it takes.
    pub fn wait_used(
        &self,
        q: usize,
        target: u16,
        timeout: Option<Duration>,
    ) -> Result<Waited, DriverError> {
        wait_used(&self.queues[q], target, &self.irq, &self.interrupt, timeout)
    }
}
