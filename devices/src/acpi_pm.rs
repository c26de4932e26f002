//! ACPI power management for a hardware-reduced guest: the sleep control/status register
//! the FADT names (`boot::acpi`, port `boot::platform::ACPI_SLEEP_PORT`), through which
//! Linux's `poweroff` enters S5, and the pvpanic port (`QEMU0001` in the DSDT, port
//! `boot::platform::PVPANIC_PORT`), through which a panicking kernel says so.
//!
//! Power-off ends the VM with [`StopReason::Reset`] — like a reset, a clean end the guest
//! asked for, so `vmm` exits 0. A pvpanic write ends it with [`StopReason::Failed`], so
//! `vmm` exits non-zero with a message, even when the guest then reboots (`panic=N`): the
//! first stop reason wins.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::stop::{StopReason, StopSignal};

/// Bus length of the sleep register: one byte, control and status at the same port.
pub const ACPI_SLEEP_LEN: u64 = 1;
/// SLP_EN: the write that makes the sleep type take effect (ACPI 6.5, 4.8.3.7).
const SLP_EN: u8 = 1 << 5;
/// SLP_TYP occupies bits 2..=4 of the sleep control register.
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0b111;
/// Sleep type of S5 (soft off), as the DSDT's `\_S5` package declares it
/// (`boot::acpi::S5_SLEEP_TYPE`).
pub const S5_SLEEP_TYPE: u8 = 5;

/// The sleep control/status register. A write of SLP_EN with SLP_TYP = S5 powers off.
/// Other sleep states are not offered (the DSDT has only `\_S5`) and are ignored; reads
/// return 0 (no wake status pending).
#[derive(Debug)]
pub struct AcpiPm {
    stop: Arc<StopSignal>,
}

impl AcpiPm {
    /// Creates the register; a power-off requests [`StopReason::Reset`] on `stop`.
    pub fn new(stop: Arc<StopSignal>) -> Self {
        Self { stop }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (0, Some(&value)) = (offset, data.first()) else {
            return;
        };
        let sleep_type = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
        if value & SLP_EN != 0 && sleep_type == S5_SLEEP_TYPE {
            self.stop.request(StopReason::Reset);
        }
    }
}

/// Bus length of the pvpanic port.
pub const PVPANIC_LEN: u64 = 1;
/// pvpanic event bit: the guest kernel panicked.
const PVPANIC_PANICKED: u8 = 1 << 0;

/// The pvpanic device: reads return the events it supports (panicked), a write with the
/// panicked bit ends the VM as failed. Other events (crash loaded: a kdump kernel takes
/// over) are ignored.
#[derive(Debug)]
pub struct PvPanic {
    stop: Arc<StopSignal>,
}

impl PvPanic {
    /// Creates the device; a panic event requests [`StopReason::Failed`] on `stop`.
    pub fn new(stop: Arc<StopSignal>) -> Self {
        Self { stop }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (0, Some(byte)) = (offset, data.first_mut()) {
            *byte = PVPANIC_PANICKED;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (0, Some(&value)) = (offset, data.first()) {
            if value & PVPANIC_PANICKED != 0 {
                self.stop.request(StopReason::Failed(
                    "the guest kernel panicked (pvpanic)".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop() -> Arc<StopSignal> {
        Arc::new(StopSignal::new().unwrap())
    }

    fn s5_write() -> u8 {
        SLP_EN | (S5_SLEEP_TYPE << SLP_TYP_SHIFT)
    }

    #[test]
    fn s5_with_slp_en_powers_off_as_a_clean_stop() {
        let stop = stop();
        AcpiPm::new(stop.clone()).write(0, &[s5_write()]);
        assert_eq!(stop.reason(), Some(StopReason::Reset));
        assert_eq!(stop.eventfd().read().unwrap(), 1);
    }

    #[test]
    fn s5_without_slp_en_does_not_stop() {
        let stop = stop();
        AcpiPm::new(stop.clone()).write(0, &[S5_SLEEP_TYPE << SLP_TYP_SHIFT]);
        assert!(!stop.is_requested());
    }

    #[test]
    fn other_sleep_states_and_wake_status_writes_are_ignored() {
        let stop = stop();
        let mut pm = AcpiPm::new(stop.clone());
        pm.write(0, &[SLP_EN | (3 << SLP_TYP_SHIFT)]); // S3
        pm.write(0, &[0x80]); // WAK_STS clear, as Linux writes before sleeping
        pm.write(1, &[s5_write()]); // outside the register
        assert!(!stop.is_requested());
    }

    #[test]
    fn sleep_register_reads_zero() {
        let mut data = [0xff];
        AcpiPm::new(stop()).read(0, &mut data);
        assert_eq!(data, [0]);
    }

    #[test]
    fn pvpanic_advertises_the_panicked_event() {
        let mut data = [0];
        PvPanic::new(stop()).read(0, &mut data);
        assert_eq!(data, [PVPANIC_PANICKED]);
    }

    #[test]
    fn pvpanic_write_stops_the_vm_as_failed() {
        let stop = stop();
        PvPanic::new(stop.clone()).write(0, &[PVPANIC_PANICKED]);
        assert!(matches!(stop.reason(), Some(StopReason::Failed(why)) if why.contains("panicked")));
    }

    #[test]
    fn panic_then_reboot_still_ends_as_failed() {
        let stop = stop();
        PvPanic::new(stop.clone()).write(0, &[PVPANIC_PANICKED]);
        AcpiPm::new(stop.clone()).write(0, &[s5_write()]);
        stop.request(StopReason::Reset);
        assert!(matches!(stop.reason(), Some(StopReason::Failed(_))));
    }

    #[test]
    fn pvpanic_crash_loaded_event_is_ignored() {
        let stop = stop();
        PvPanic::new(stop.clone()).write(0, &[1 << 1]);
        assert!(!stop.is_requested());
    }
}
