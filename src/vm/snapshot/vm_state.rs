//! The VM-wide state KVM keeps: the in-kernel irqchip (both PICs and the IOAPIC), the PIT
//! and the kvmclock. Read while every vCPU is parked; written after the vCPUs' own state,
//! just before they start, so that the clock resumes as late as possible.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

use super::error::SnapshotError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

const CHIPS: [(u32, &str); 3] = [
    (KVM_IRQCHIP_PIC_MASTER, "reading the master PIC"),
    (KVM_IRQCHIP_PIC_SLAVE, "reading the slave PIC"),
    (KVM_IRQCHIP_IOAPIC, "reading the IOAPIC"),
];

pub fn save(vm: &VmFd) -> Result<VmState, SnapshotError> {
    let [pic_master, pic_slave, ioapic] = CHIPS.map(|(chip_id, op)| {
        let mut chip = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        vm.get_irqchip(&mut chip)
            .map(|()| chip)
            .map_err(SnapshotError::kvm(op))
    });
    let pit = vm
        .get_pit2()
        .map_err(SnapshotError::kvm("reading the PIT"))?;
    let mut clock = vm
        .get_clock()
        .map_err(SnapshotError::kvm("reading the kvmclock"))?;
    // The flags say how the value was read (TSC-stable, with a realtime stamp). Restored
    // without them, KVM_SET_CLOCK sets the clock to the saved value itself: the guest's
    // time goes on from where it was paused, as after any pause, rather than jumping by
    // the time the snapshot spent on disk.
    clock.flags = 0;
    Ok(VmState {
        pic_master: pic_master?,
        pic_slave: pic_slave?,
        ioapic: ioapic?,
        pit,
        clock,
    })
}

pub fn restore(vm: &VmFd, state: &VmState) -> Result<(), SnapshotError> {
    vm.set_pit2(&state.pit)
        .map_err(SnapshotError::kvm("restoring the PIT"))?;
    for (chip, op) in [
        (&state.pic_master, "restoring the master PIC"),
        (&state.pic_slave, "restoring the slave PIC"),
        (&state.ioapic, "restoring the IOAPIC"),
    ] {
        vm.set_irqchip(chip).map_err(SnapshotError::kvm(op))?;
    }
    vm.set_clock(&state.clock)
        .map_err(SnapshotError::kvm("restoring the kvmclock"))
}
