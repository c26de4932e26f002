//! MMIO windows and interrupt lines for virtio devices, handed out without overlap by
//! vm-allocator from the row `boot::platform` reserves for them.

use boot::platform::{
    VIRTIO_IRQ_FIRST, VIRTIO_IRQ_LAST, VIRTIO_MMIO_END, VIRTIO_MMIO_START, VIRTIO_MMIO_WINDOW,
};
use vm_allocator::{AddressAllocator, AllocPolicy, IdAllocator};

use super::error::VmError;

/// Where one virtio-mmio device lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSlot {
    pub base: u64,
    pub len: u64,
    /// IOAPIC pin (GSI) of the device's interrupt.
    pub irq: u32,
}

pub struct DeviceSlots {
    mmio: AddressAllocator,
    irqs: IdAllocator,
}

impl DeviceSlots {
    // Both ranges are compile-time constants checked in boot::platform; these cannot fail.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let mmio = AddressAllocator::new(VIRTIO_MMIO_START, VIRTIO_MMIO_END - VIRTIO_MMIO_START)
            .expect("the virtio MMIO range in boot::platform is valid");
        let irqs = IdAllocator::new(VIRTIO_IRQ_FIRST, VIRTIO_IRQ_LAST)
            .expect("the virtio IRQ range in boot::platform is valid");
        Self { mmio, irqs }
    }

    /// The most devices a VM can have: one interrupt line each.
    pub fn capacity() -> usize {
        (VIRTIO_IRQ_LAST - VIRTIO_IRQ_FIRST + 1) as usize
    }

    pub fn allocate(&mut self) -> Result<DeviceSlot, VmError> {
        let too_many = |_| VmError::TooManyDevices {
            max: Self::capacity(),
        };
        let irq = self.irqs.allocate_id().map_err(too_many)?;
        let range = self
            .mmio
            .allocate(
                VIRTIO_MMIO_WINDOW,
                VIRTIO_MMIO_WINDOW,
                AllocPolicy::FirstMatch,
            )
            .map_err(too_many)?;
        Ok(DeviceSlot {
            base: range.start(),
            len: VIRTIO_MMIO_WINDOW,
            irq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_windows_with_distinct_irqs() {
        let mut slots = DeviceSlots::new();
        let a = slots.allocate().unwrap();
        let b = slots.allocate().unwrap();
        assert_eq!(a.base, VIRTIO_MMIO_START);
        assert_eq!(a.irq, VIRTIO_IRQ_FIRST);
        assert!(b.base >= a.base + a.len);
        assert_ne!(a.irq, b.irq);
    }

    #[test]
    fn allocation_stops_when_interrupt_lines_run_out() {
        let mut slots = DeviceSlots::new();
        for _ in 0..DeviceSlots::capacity() {
            slots.allocate().unwrap();
        }
        assert!(matches!(
            slots.allocate(),
            Err(VmError::TooManyDevices { .. })
        ));
    }
}
