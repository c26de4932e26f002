//! The i8042 keyboard controller (data port at offset 0, command/status port at offset 4;
//! the VMM places it at 0x60, `boot::platform::I8042`), reduced to what a micro-VM needs,
//! as Firecracker's is: the CPU reset command (0xFE to the command port), which ends the
//! VM; the controller's configuration byte and output port, which Linux's i8042 driver
//! reads and writes as it probes; and a keyboard that acknowledges every command and can
//! type one thing: Ctrl-Alt-Del ([`I8042::send_ctrl_alt_del`]), in scan code set 2 with an
//! interrupt on IRQ 1 for each key, so that a guest listening to its keyboard can shut
//! down cleanly (the API's `SendCtrlAltDel`).
//!
//! Its own model rather than vm-superio's `I8042Device`: that one knows the reset command
//! only, and has no output buffer for scan codes.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::bus::BusDevice;
use crate::stop::{StopReason, StopSignal};

/// Bus length: the data port at offset 0 through the command/status port at offset 4.
pub const I8042_LEN: u64 = 5;
const DATA_OFFSET: u64 = 0;
/// Offset of the command/status port (0x64 on a PC) from the data port.
const COMMAND_OFFSET: u64 = 4;

// Controller commands (writes to the command port).
const CMD_READ_CONFIG: u8 = 0x20;
const CMD_WRITE_CONFIG: u8 = 0x60;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_RESET_CPU: u8 = 0xfe;

// Status register bits.
const STATUS_OUTPUT_FULL: u8 = 0x01;
/// The next data-port write is a command's parameter, not a byte for the keyboard.
const STATUS_COMMAND_DATA: u8 = 0x08;
const STATUS_KEYBOARD_ENABLED: u8 = 0x10;

// Configuration byte bits.
const CONFIG_KEYBOARD_INTERRUPT: u8 = 0x01;
const CONFIG_POST_PASSED: u8 = 0x04;

/// What the keyboard answers to any command sent to it.
const KEYBOARD_ACK: u8 = 0xfa;
/// Scan code set 2: left Ctrl, left Alt, and Delete (an extended key: 0xE0 first).
const CTRL_ALT_DEL: [&[u8]; 3] = [&[0x14], &[0x11], &[0xe0, 0x71]];
/// The controller's output buffer, in bytes (a real one holds one; Firecracker's 16).
const BUFFER_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum I8042Error {
    #[error("the i8042's output buffer is full: the guest is not reading its keyboard")]
    BufferFull,
}

/// An i8042 whose CPU reset command stops the VM with [`StopReason::Reset`].
#[derive(Debug)]
pub struct I8042 {
    stop: Arc<StopSignal>,
    /// IRQ 1: the keyboard has a byte for the guest.
    irq: EventFd,
    status: u8,
    config: u8,
    output_port: u8,
    /// The command waiting for its parameter byte on the data port.
    pending_command: u8,
    buffer: VecDeque<u8>,
}

impl I8042 {
    /// Creates the controller; a reset command requests a stop on `stop`.
    pub fn new(stop: Arc<StopSignal>) -> io::Result<Self> {
        Ok(Self {
            stop,
            irq: EventFd::new(EFD_NONBLOCK)?,
            status: STATUS_KEYBOARD_ENABLED,
            config: CONFIG_POST_PASSED | CONFIG_KEYBOARD_INTERRUPT,
            output_port: 0,
            pending_command: 0,
            buffer: VecDeque::with_capacity(BUFFER_LEN),
        })
    }

    /// The eventfd written for the keyboard interrupt; the VMM registers it as the irqfd
    /// of IRQ 1.
    pub fn irq_eventfd(&self) -> &EventFd {
        &self.irq
    }

    /// Types Ctrl-Alt-Del on the keyboard: each key's scan codes into the output buffer,
    /// and an interrupt for it. Refused whole when the buffer cannot take all of it.
    pub fn send_ctrl_alt_del(&mut self) -> Result<(), I8042Error> {
        let len: usize = CTRL_ALT_DEL.iter().map(|key| key.len()).sum();
        if BUFFER_LEN - self.buffer.len() < len {
            return Err(I8042Error::BufferFull);
        }
        for key in CTRL_ALT_DEL {
            self.buffer.extend(key.iter());
            self.status |= STATUS_OUTPUT_FULL;
            self.interrupt();
        }
        Ok(())
    }

    /// Raises IRQ 1 unless the guest turned the keyboard interrupt off.
    fn interrupt(&self) {
        if self.config & CONFIG_KEYBOARD_INTERRUPT != 0 {
            // A full eventfd counter still leaves the interrupt pending.
            let _ = self.irq.write(1);
        }
    }

    /// Makes `byte` the only thing the guest reads next (a command's answer).
    fn answer(&mut self, byte: u8) {
        self.buffer.clear();
        self.buffer.push_back(byte);
        self.status |= STATUS_OUTPUT_FULL;
    }

    fn read_data(&mut self) -> u8 {
        let byte = self.buffer.pop_front().unwrap_or(0);
        if self.buffer.is_empty() {
            self.status &= !STATUS_OUTPUT_FULL;
        } else {
            // One interrupt per byte: the guest's handler reads one and waits for the next.
            self.interrupt();
        }
        byte
    }

    fn write_command(&mut self, command: u8) {
        match command {
            CMD_RESET_CPU => self.stop.request(StopReason::Reset),
            CMD_READ_CONFIG => self.answer(self.config),
            CMD_READ_OUTPUT_PORT => self.answer(self.output_port),
            CMD_WRITE_CONFIG | CMD_WRITE_OUTPUT_PORT => {
                self.status |= STATUS_COMMAND_DATA;
                self.pending_command = command;
            }
            // Anything else (self tests, port tests, enabling the aux port) is ignored, as
            // on Firecracker: Linux's driver copes with a controller that does not answer.
            _ => {}
        }
    }

    fn write_data(&mut self, byte: u8) {
        if self.status & STATUS_COMMAND_DATA != 0 {
            self.status &= !STATUS_COMMAND_DATA;
            match self.pending_command {
                CMD_WRITE_CONFIG => self.config = byte,
                CMD_WRITE_OUTPUT_PORT => self.output_port = byte,
                _ => {}
            }
        } else {
            // A command for the keyboard itself: a keyboard with nothing to configure
            // acknowledges it.
            self.answer(KEYBOARD_ACK);
            self.interrupt();
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let value = match offset {
            DATA_OFFSET => self.read_data(),
            COMMAND_OFFSET => self.status,
            _ => return,
        };
        if let Some(byte) = data.first_mut() {
            *byte = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            DATA_OFFSET => self.write_data(value),
            COMMAND_OFFSET => self.write_command(value),
            _ => {}
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

    fn read(dev: &mut I8042, offset: u64) -> u8 {
        let mut data = [0xffu8; 1];
        dev.read(offset, &mut data);
        data[0]
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
    fn i8042_idle_reads_an_empty_buffer_and_a_keyboard_without_data() {
        let (mut dev, _stop) = i8042();
        assert_eq!(read(&mut dev, DATA_OFFSET), 0);
        assert_eq!(read(&mut dev, COMMAND_OFFSET), STATUS_KEYBOARD_ENABLED);
        for offset in [1, 2, 3] {
            assert_eq!(read(&mut dev, offset), 0, "offset {offset}");
        }
    }

    #[test]
    fn ctrl_alt_del_is_typed_in_scan_code_set_2_with_an_interrupt_per_key() {
        let (mut dev, _stop) = i8042();
        dev.send_ctrl_alt_del().unwrap();
        assert_eq!(dev.irq_eventfd().read().unwrap(), 3);
        let mut typed = Vec::new();
        while read(&mut dev, COMMAND_OFFSET) & STATUS_OUTPUT_FULL != 0 {
            typed.push(read(&mut dev, DATA_OFFSET));
        }
        assert_eq!(typed, [0x14, 0x11, 0xe0, 0x71]);
    }

    #[test]
    fn ctrl_alt_del_is_refused_whole_when_the_guest_never_reads() {
        let (mut dev, _stop) = i8042();
        for _ in 0..4 {
            dev.send_ctrl_alt_del().unwrap();
        }
        assert_eq!(dev.send_ctrl_alt_del(), Err(I8042Error::BufferFull));
        assert_eq!(dev.buffer.len(), 16);
    }

    #[test]
    fn keyboard_interrupt_is_not_raised_when_the_guest_turned_it_off() {
        let (mut dev, _stop) = i8042();
        dev.write(COMMAND_OFFSET, &[CMD_WRITE_CONFIG]);
        dev.write(DATA_OFFSET, &[CONFIG_POST_PASSED]);
        dev.send_ctrl_alt_del().unwrap();
        assert!(dev.irq_eventfd().read().is_err());
        assert_eq!(read(&mut dev, DATA_OFFSET), 0x14);
    }

    #[test]
    fn configuration_byte_and_output_port_read_back_what_was_written() {
        let (mut dev, _stop) = i8042();
        dev.write(COMMAND_OFFSET, &[CMD_READ_CONFIG]);
        assert_eq!(
            read(&mut dev, DATA_OFFSET),
            CONFIG_POST_PASSED | CONFIG_KEYBOARD_INTERRUPT
        );
        dev.write(COMMAND_OFFSET, &[CMD_WRITE_OUTPUT_PORT]);
        assert_ne!(read(&mut dev, COMMAND_OFFSET) & STATUS_COMMAND_DATA, 0);
        dev.write(DATA_OFFSET, &[0x03]);
        dev.write(COMMAND_OFFSET, &[CMD_READ_OUTPUT_PORT]);
        assert_eq!(read(&mut dev, DATA_OFFSET), 0x03);
    }

    #[test]
    fn a_keyboard_command_is_acknowledged() {
        let (mut dev, _stop) = i8042();
        dev.write(DATA_OFFSET, &[0xf4]); // enable scanning
        assert_eq!(read(&mut dev, DATA_OFFSET), KEYBOARD_ACK);
        assert_eq!(dev.irq_eventfd().read().unwrap(), 1);
    }
}
