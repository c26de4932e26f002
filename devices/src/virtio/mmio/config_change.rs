//! Configuration changes the VMM makes under a running driver (a disk image swapped at
//! run time): the device takes the change, ConfigGeneration moves on, and the driver gets
//! a configuration-change interrupt (InterruptStatus bit 1, VIRTIO_MMIO_INT_CONFIG), after
//! which it reads the configuration space again (Linux's virtio-blk then resizes the disk).
//!
//! A device stopped by a save or a restore takes the change too; its driver is told when
//! [`MmioTransport::resume`] starts it again, and a snapshot taken meanwhile records the
//! new configuration with the interrupt pending.

use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_DRIVER_OK;

use super::MmioTransport;
use crate::virtio::blk::{DiskImage, SwapError};
use crate::virtio::device::VIRTIO_MMIO_INT_CONFIG;

impl MmioTransport {
    /// Replaces the image behind this block device by `image` (see
    /// `VirtioDevice::swap_disk`) and announces the new configuration. A refused image
    /// changes nothing.
    pub fn swap_disk(&mut self, image: DiskImage) -> Result<(), SwapError> {
        self.device.swap_disk(image)?;
        self.announce_config_change();
        Ok(())
    }

    /// The device's configuration changed: a new generation, and the driver is told. A
    /// driver not yet running reads the configuration when it sets the device up, so it
    /// gets no interrupt.
    fn announce_config_change(&mut self) {
        self.interrupt.bump_config_generation();
        if self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
            return;
        }
        if self.quiesced.is_none() {
            self.interrupt.signal_config_change();
            return;
        }
        // Stopped: the bit now, the line when the device resumes, as a restored interrupt
        // the driver had not acknowledged.
        self.interrupt.set_pending(VIRTIO_MMIO_INT_CONFIG);
        self.raise_on_resume = true;
        let status = self.interrupt.status();
        let generation = self.interrupt.config_generation();
        // A worker-less device saves without stopping anything; should it fail, the saved
        // state keeps the old device state and the live device is still the new one.
        let device = self.device.save().ok().map(|saved| saved.state);
        if let Some(state) = &mut self.quiesced {
            state.interrupt_status = status;
            state.config_generation = generation;
            if let Some(device) = device {
                state.device = device;
            }
        }
    }
}
