//! The i8042 keyboard controller (data port at offset 0, command port at offset 4; the VMM
//! places it at 0x60, `boot::platform::I8042`), reduced to what a micro-VM needs: the CPU
//! reset command (0xFE to the command port), which ends the VM.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use crate::bus::BusDevice;
use crate::stop::{StopReason, StopSignal};

/// Bus length: the data port at offset 0 through the command/status port at offset 4.
pub const I8042_LEN: u64 = 5;
/// Offset of the command/status port (0x64 on a PC) from the data port.
const COMMAND_OFFSET: u64 = 4;

/// The reset line of the controller: requests [`StopReason::Reset`].
#[derive(Debug)]
struct ResetTrigger(Arc<StopSignal>);

impl Trigger for ResetTrigger {
    type E = Infallible;

    fn trigger(&self) -> Result<(), Infallible> {
        self.0.request(StopReason::Reset);
        Ok(())
    }
}

/// An i8042 whose CPU reset command stops the VM with [`StopReason::Reset`].
#[derive(Debug)]
pub struct I8042 {
    device: I8042Device<ResetTrigger>,
}

impl I8042 {
    /// Creates the controller; a reset command requests a stop on `stop`.
    pub fn new(stop: Arc<StopSignal>) -> io::Result<Self> {
        Ok(Self {
            device: I8042Device::new(ResetTrigger(stop)),
        })
    }
}

/// The controller's port offset for a bus offset: the data or the command port, else `None`.
fn port(offset: u64) -> Option<u8> {
    match offset {
        0 | COMMAND_OFFSET => u8::try_from(offset).ok(),
        _ => None,
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(byte), Some(port)) = (data.first_mut(), port(offset)) {
            *byte = self.device.read(port);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&value), Some(port)) = (data.first(), port(offset)) {
            // The trigger is infallible.
            let _ = self.device.write(port, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i8042() -> (I8042, Arc<StopSignal>) {
        let stop = Arc::new(StopSignal::new().unwrap());
        (I8042::new(stop.clone()).unwrap(), stop)
    }

    #[test]
    fn i8042_reset_command_requests_reset() {
        let (mut dev, stop) = i8042();
        dev.write(COMMAND_OFFSET, &[0xfe]);
        assert_eq!(stop.reason(), Some(StopReason::Reset));
        assert_eq!(stop.eventfd().read().unwrap(), 1);
    }

    #[test]
    fn i8042_other_writes_do_not_stop() {
        let (mut dev, stop) = i8042();
        dev.write(COMMAND_OFFSET, &[0xd1]);
        dev.write(0, &[0xfe]);
        dev.write(1, &[0xfe]);
        assert!(!stop.is_requested());
    }

    #[test]
    fn i8042_reads_return_zero() {
        let (mut dev, _stop) = i8042();
        for offset in 0..I8042_LEN {
            let mut data = [0xffu8; 1];
            dev.read(offset, &mut data);
            assert_eq!(data, [0], "offset {offset}");
        }
    }
}
