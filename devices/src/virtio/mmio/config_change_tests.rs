//! ConfigGeneration as the transport keeps it: in the device's `Interrupt`, saved and
//! restored with InterruptStatus, and not reset with the device.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::regs::CONFIG_GENERATION;
use crate::test_util::through_json;
use crate::testing::{DriverQueue, MmioDriver};
use crate::virtio::Rng;

fn live_rng() -> MmioDriver {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
    let vq = DriverQueue::new(&mem, 0, 16).unwrap();
    let mut d = MmioDriver::new(&mem, Box::new(Rng::new())).unwrap();
    d.bring_up(&[&vq]).unwrap();
    d
}

#[test]
fn config_generation_register_reads_the_interrupts_generation() {
    let mut d = live_rng();
    assert_eq!(d.read(CONFIG_GENERATION), 0);
    d.interrupt().bump_config_generation();
    d.interrupt().bump_config_generation();
    assert_eq!(d.read(CONFIG_GENERATION), 2);
}

#[test]
fn config_generation_survives_a_save_and_restore() {
    let mut d = live_rng();
    d.interrupt().bump_config_generation();
    let state = d.transport.save().unwrap();
    assert_eq!(state.config_generation, 1);
    let mem = d.mem.clone();
    drop(d);
    let mut restored =
        MmioDriver::restore(&mem, Box::new(Rng::new()), through_json(&state)).unwrap();
    assert_eq!(restored.read(CONFIG_GENERATION), 1);
}

#[test]
fn a_device_reset_keeps_the_config_generation() {
    let mut d = live_rng();
    d.interrupt().bump_config_generation();
    d.write(super::regs::STATUS, 0);
    assert_eq!(d.read(CONFIG_GENERATION), 1);
}
