//! A 16550A UART, on vm-superio's model; the VMM places it at COM1 (port 0x3f8, IRQ 4:
//! `boot::platform::COM1`).
//!
//! vm-superio's FIFO holds 64 bytes and refuses more; this wrapper keeps whatever does not fit
//! in a pending queue and refills the FIFO when the guest's read of the data register empties
//! it, so no input is lost and the guest sees one receive interrupt per FIFO-full, as with a
//! real 16550's trigger level, rather than one per byte.

use std::collections::VecDeque;
use std::io::{self, Write};

use vm_superio::serial::{Error as SerialError, NoEvents, SerialState};
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;
pub use crate::trigger::EventFdTrigger;

/// Registers of the UART, as offsets from its base port.
pub const REGISTER_COUNT: u64 = 8;
/// Offset of the data register (receive buffer on reads).
const DATA_OFFSET: u8 = 0;
/// Above this many pending input bytes, [`Serial::input_wanted`] says stop reading input.
pub const PENDING_INPUT_LIMIT: usize = 4096;

type Uart = vm_superio::Serial<EventFdTrigger, NoEvents, Box<dyn Write + Send>>;

/// A 16550A UART whose output goes to a `Write` and whose interrupt is an eventfd.
pub struct Serial {
    uart: Uart,
    /// Input that did not fit in the UART's FIFO yet, oldest first.
    pending: VecDeque<u8>,
    /// Capacity of the empty FIFO (vm-superio does not export it).
    fifo_size: usize,
}

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial")
            .field("irq_eventfd", self.irq_eventfd())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What a snapshot keeps of the UART: its registers and FIFO (vm-superio's state), and
/// the input still waiting behind the FIFO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerialSnapshot {
    pub uart: SerialState,
    pub pending: Vec<u8>,
}

impl Serial {
    /// Creates a UART writing guest output to `out`, with a new non-blocking IRQ eventfd.
    pub fn new(out: Box<dyn Write + Send>) -> io::Result<Self> {
        Self::from_snapshot(&SerialSnapshot::default(), out)
    }

    /// Creates a UART in the state `snapshot` describes (a restored VM's), writing guest
    /// output to `out`. An interrupt the UART had raised is raised again on its eventfd.
    /// A FIFO fuller than a 16550's is refused (InvalidData).
    pub fn from_snapshot(
        snapshot: &SerialSnapshot,
        out: Box<dyn Write + Send>,
    ) -> io::Result<Self> {
        let uart =
            vm_superio::Serial::from_state(&snapshot.uart, EventFdTrigger::new()?, NoEvents, out)
                .map_err(|e| match e {
                SerialError::FullFifo => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} bytes in the UART's FIFO", snapshot.uart.in_buffer.len()),
                ),
                SerialError::Trigger(e) | SerialError::IOError(e) => e,
            })?;
        Ok(Self {
            // What is free plus what is in it: vm-superio does not export its FIFO's size.
            fifo_size: uart.fifo_capacity() + snapshot.uart.in_buffer.len(),
            uart,
            pending: snapshot.pending.iter().copied().collect(),
        })
    }

    /// The UART's state, for a snapshot (the guest must not be running).
    pub fn snapshot(&self) -> SerialSnapshot {
        SerialSnapshot {
            uart: self.uart.state(),
            pending: self.pending.iter().copied().collect(),
        }
    }

    /// The eventfd signalled when the UART raises its interrupt (register it as the irqfd for
    /// GSI 4).
    pub fn irq_eventfd(&self) -> &EventFd {
        self.uart.interrupt_evt().eventfd()
    }

    /// Queues input for the guest. Nothing is dropped: what does not fit in the FIFO now
    /// waits until the guest's reads of the data register empty it.
    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        self.pending.extend(bytes);
        self.fill_fifo();
    }

    /// Whether the VMM should keep reading input: false once more than
    /// [`PENDING_INPUT_LIMIT`] bytes wait for the guest (back-pressure).
    pub fn input_wanted(&self) -> bool {
        self.pending.len() <= PENDING_INPUT_LIMIT
    }

    /// Number of input bytes waiting behind the FIFO.
    pub fn pending_input(&self) -> usize {
        self.pending.len()
    }

    /// Moves pending input into the FIFO, as much as fits.
    fn fill_fifo(&mut self) {
        while !self.pending.is_empty() {
            let room = self.uart.fifo_capacity();
            let chunk = self.pending.as_slices().0;
            let n = room.min(chunk.len());
            if n == 0 {
                return;
            }
            let taken = match self.uart.enqueue_raw_bytes(&chunk[..n]) {
                Ok(taken) => taken,
                // The bytes went into the FIFO; only the interrupt eventfd write failed (its
                // counter is saturated, so an interrupt is pending anyway).
                Err(SerialError::Trigger(_)) => n,
                Err(SerialError::FullFifo | SerialError::IOError(_)) => 0,
            };
            if taken == 0 {
                // Loopback mode takes no input; keep it for later.
                return;
            }
            self.pending.drain(..taken);
        }
    }
}

/// The UART register a bus offset names; `None` past the last one.
fn register(offset: u64) -> Option<u8> {
    u8::try_from(offset)
        .ok()
        .filter(|&r| u64::from(r) < REGISTER_COUNT)
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let [byte] = data else { return };
        let Some(offset) = register(offset) else {
            return;
        };
        *byte = self.uart.read(offset);
        if offset == DATA_OFFSET && self.uart.fifo_capacity() == self.fifo_size {
            // The guest took the last byte of the FIFO: refill it from the pending input. The
            // refill raises the receive interrupt again (if enabled), and the guest's
            // `while (LSR & DR) read RBR` loop goes straight on.
            self.fill_fifo();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let [byte] = data else { return };
        let Some(offset) = register(offset) else {
            return;
        };
        // An output error (e.g. a closed stdout) loses this byte but must not stop the guest,
        // which cannot be told; an interrupt eventfd error means one is already pending.
        let _ = self.uart.write(offset, *byte);
        if self.pending.is_empty() {
            return;
        }
        // Leaving loopback mode makes the FIFO accept pending input again.
        self.fill_fifo();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::SharedBuf;

    const IER: u64 = 1;
    const IIR: u64 = 2;
    const MCR: u64 = 4;
    const LSR: u64 = 5;
    const IER_RDA: u8 = 0x01;
    const IER_THR_EMPTY: u8 = 0x02;
    const IIR_THR_EMPTY: u8 = 0x02;
    const LSR_DATA_READY: u8 = 0x01;
    const MCR_LOOP: u8 = 0x10;
    const FIFO_SIZE: usize = 64;

    fn serial() -> (Serial, SharedBuf) {
        let out = SharedBuf::default();
        (Serial::new(Box::new(out.clone())).unwrap(), out)
    }

    fn read_reg(serial: &mut Serial, offset: u64) -> u8 {
        let mut data = [0u8];
        serial.read(offset, &mut data);
        data[0]
    }

    /// Reads the receive buffer the way a driver does: while LSR says data is ready.
    fn drain(serial: &mut Serial) -> Vec<u8> {
        let mut got = Vec::new();
        while read_reg(serial, LSR) & LSR_DATA_READY != 0 {
            got.push(read_reg(serial, 0));
        }
        got
    }

    #[test]
    fn serial_write_reaches_output() {
        let (mut serial, out) = serial();
        for &b in b"hi\n" {
            serial.write(0, &[b]);
        }
        assert_eq!(out.contents(), b"hi\n");
    }

    #[test]
    fn serial_thr_empty_interrupt_signals_eventfd() {
        let (mut serial, _out) = serial();
        serial.write(IER, &[IER_THR_EMPTY]);
        // Enabling THR-empty while the transmitter is empty raises it at once.
        assert_eq!(serial.irq_eventfd().read().unwrap(), 1);
        assert_eq!(read_reg(&mut serial, IIR) & 0x0f, IIR_THR_EMPTY);
        serial.write(0, b"x");
        assert_eq!(serial.irq_eventfd().read().unwrap(), 1);
    }

    #[test]
    fn serial_input_raises_rda_interrupt() {
        let (mut serial, _out) = serial();
        serial.write(IER, &[IER_RDA]);
        serial.enqueue_input(b"a");
        assert_eq!(serial.irq_eventfd().read().unwrap(), 1);
        assert_eq!(drain(&mut serial), b"a");
    }

    #[test]
    fn serial_keeps_input_beyond_fifo_until_guest_reads() {
        let (mut serial, _out) = serial();
        let input: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        serial.enqueue_input(&input[..700]);
        serial.enqueue_input(&input[700..]);
        assert_eq!(serial.pending_input(), input.len() - FIFO_SIZE);
        assert_eq!(drain(&mut serial), input);
        assert_eq!(serial.pending_input(), 0);
    }

    #[test]
    fn serial_refill_raises_rda_interrupt_again() {
        let (mut serial, _out) = serial();
        serial.write(IER, &[IER_RDA]);
        serial.enqueue_input(&[7u8; FIFO_SIZE + 1]);
        assert_eq!(serial.irq_eventfd().read().unwrap(), 1);
        for _ in 0..FIFO_SIZE - 1 {
            read_reg(&mut serial, 0);
        }
        assert!(
            serial.irq_eventfd().read().is_err(),
            "no interrupt per byte"
        );
        read_reg(&mut serial, 0);
        // The byte moved in from the pending queue is announced like new input.
        assert_eq!(serial.irq_eventfd().read().unwrap(), 1);
        assert_eq!(drain(&mut serial), [7]);
    }

    #[test]
    fn serial_input_wanted_false_when_pending_exceeds_limit() {
        let (mut serial, _out) = serial();
        serial.enqueue_input(&vec![b'x'; FIFO_SIZE + PENDING_INPUT_LIMIT]);
        assert!(serial.input_wanted());
        serial.enqueue_input(b"y");
        assert!(!serial.input_wanted());
        for _ in 0..FIFO_SIZE {
            read_reg(&mut serial, 0);
        }
        assert!(serial.input_wanted());
    }

    #[test]
    fn serial_loopback_mode_keeps_input_pending() {
        let (mut serial, _out) = serial();
        serial.write(MCR, &[MCR_LOOP]);
        serial.enqueue_input(b"abc");
        assert_eq!(serial.pending_input(), 3);
        serial.write(MCR, &[0]);
        assert_eq!(drain(&mut serial), b"abc");
    }

    #[test]
    fn serial_restored_from_a_snapshot_has_its_registers_fifo_and_pending_input() {
        let (mut serial, _out) = serial();
        serial.write(IER, &[IER_RDA]);
        serial.write(7, &[0x5a]); // scratch
        serial.enqueue_input(&[b'z'; FIFO_SIZE + 3]);
        let saved = serial.snapshot();

        let out = SharedBuf::default();
        let mut restored = Serial::from_snapshot(&saved, Box::new(out.clone())).unwrap();
        assert_eq!(restored.snapshot(), saved);
        assert_eq!(read_reg(&mut restored, 7), 0x5a);
        assert_eq!(
            restored.irq_eventfd().read().unwrap(),
            1,
            "the pending receive interrupt is raised again"
        );
        assert_eq!(drain(&mut restored), vec![b'z'; FIFO_SIZE + 3]);
        restored.write(0, b"!");
        assert_eq!(out.contents(), b"!");
    }

    #[test]
    fn serial_snapshot_with_an_overfull_fifo_is_refused() {
        let mut saved = SerialSnapshot::default();
        saved.uart.in_buffer = vec![0; FIFO_SIZE + 1];
        let e = Serial::from_snapshot(&saved, Box::new(io::sink())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn serial_ignores_wide_and_out_of_range_accesses() {
        let (mut serial, out) = serial();
        serial.write(0, b"ab");
        serial.write(8, b"c");
        let mut data = [0u8; 2];
        serial.read(LSR, &mut data);
        assert_eq!(data, [0, 0]);
        assert_eq!(out.contents(), b"");
    }
}
