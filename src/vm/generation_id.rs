//! The VM generation ID ([`boot::vmgenid`]) as the VMM keeps it: a fresh one at boot, and
//! a new one on every restore, announced to the guest by a pulse on its event line.

use boot::vmgenid::{write_generation_id, VMGENID_LEN};
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use super::VmError;

/// Writes a fresh generation ID for a VM that boots (the guest reads it at boot as
/// device randomness).
pub fn write_fresh(mem: &GuestMemoryMmap) -> Result<(), VmError> {
    write_generation_id(mem, &fresh()?)?;
    Ok(())
}

/// Writes a fresh generation ID into a restored VM's memory (its private copy: the
/// snapshot's file is never written) and pulses the generation ID's event line, so that
/// the guest's driver reads the new ID and reseeds its random number generator before it
/// hands out bytes that another VM restored from the same snapshot could hand out too.
/// Called after the irqchip state is restored (which would otherwise overwrite the
/// pending interrupt) and before any vCPU runs.
pub fn announce_new_generation(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmError> {
    write_generation_id(mem, &fresh()?)?;
    // An edge on an edge-triggered line: the IOAPIC latches the rising edge. A guest
    // whose driver never unmasked the pin (no driver, an older snapshot) ignores it.
    vm.set_irq_line(boot::platform::VMGENID_IRQ, true)
        .and_then(|()| vm.set_irq_line(boot::platform::VMGENID_IRQ, false))
        .map_err(VmError::kvm("raising the VM generation ID's event line"))
}

fn fresh() -> Result<[u8; VMGENID_LEN], VmError> {
    let mut id = [0u8; VMGENID_LEN];
    devices::virtio::rng::getrandom(&mut id)
        .map_err(VmError::io("reading a new VM generation ID"))?;
    Ok(id)
}
