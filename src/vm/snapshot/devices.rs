//! The state of the devices the VMM emulates.
//!
//! - serial (COM1): its registers, FIFO and the input waiting behind it ([`SavedSerial`]);
//! - the i8042, debug-exit port, ACPI sleep register, pvpanic and boot timer keep no
//!   state between accesses (reads are constant, a write acts at once), so there is
//!   nothing to save: a restore makes them anew;
//! - virtio devices: each transport's state with the device's own ([`VirtioDeviceState`]),
//!   beside the window and IRQ it was attached at, which the restore checks against the
//!   window its saved config plans for it.

use devices::serial::SerialSnapshot;
use devices::virtio::TransportState;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceStates {
    pub serial: SavedSerial,
    /// One per virtio device, in the order of `SavedConfig::devices`' windows.
    pub virtio: Vec<VirtioDeviceState>,
}

/// The state of one virtio device and its transport, and where it was attached: the
/// transport's state does not record its MMIO window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VirtioDeviceState {
    /// Its kind, as Linux's driver names it ("blk").
    pub kind: String,
    pub base: u64,
    pub irq: u32,
    pub transport: TransportState,
}

/// The 16550's registers (vm-superio's `SerialState`, which has no serde) and its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSerial {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    fifo: Vec<u8>,
    pending: Vec<u8>,
}

impl From<SerialSnapshot> for SavedSerial {
    fn from(s: SerialSnapshot) -> Self {
        let u = s.uart;
        SavedSerial {
            baud_divisor_low: u.baud_divisor_low,
            baud_divisor_high: u.baud_divisor_high,
            interrupt_enable: u.interrupt_enable,
            interrupt_identification: u.interrupt_identification,
            line_control: u.line_control,
            line_status: u.line_status,
            modem_control: u.modem_control,
            modem_status: u.modem_status,
            scratch: u.scratch,
            fifo: u.in_buffer,
            pending: s.pending,
        }
    }
}

impl From<SavedSerial> for SerialSnapshot {
    fn from(s: SavedSerial) -> Self {
        SerialSnapshot {
            uart: vm_superio::serial::SerialState {
                baud_divisor_low: s.baud_divisor_low,
                baud_divisor_high: s.baud_divisor_high,
                interrupt_enable: s.interrupt_enable,
                interrupt_identification: s.interrupt_identification,
                line_control: s.line_control,
                line_status: s.line_status,
                modem_control: s.modem_control,
                modem_status: s.modem_status,
                scratch: s.scratch,
                in_buffer: s.fifo,
            },
            pending: s.pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_state_round_trips_through_its_mirror() {
        let snapshot = SerialSnapshot {
            uart: vm_superio::serial::SerialState {
                interrupt_enable: 0x3,
                line_control: 0x83,
                scratch: 0x5a,
                in_buffer: b"abc".to_vec(),
                ..Default::default()
            },
            pending: b"more".to_vec(),
        };
        let back: SerialSnapshot = SavedSerial::from(snapshot.clone()).into();
        assert_eq!(back, snapshot);
    }
}
