//! Wiring the legacy devices onto the port-I/O and MMIO buses, each at its row of the
//! platform table (`boot::platform`).

use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use boot::platform::{self, PlatformDevice, Space};
use devices::acpi_pm::{AcpiPm, PvPanic};
use devices::serial::SerialSnapshot;
use devices::{BootTimer, Bus, BusDevice, DebugExit, Serial, StopSignal, I8042};
use kvm_ioctls::VmFd;

use super::console_log::ConsoleLogWriter;
use super::error::VmError;
use super::exit_stats::{DeviceNames, Registers};
use super::snapshot::SnapshotError;
use super::Console;

// Each device model's registers fill its row of the platform table exactly.
const _: () = {
    assert!(platform::COM1.len == devices::serial::REGISTER_COUNT);
    assert!(platform::I8042.len == devices::i8042::I8042_LEN);
    assert!(platform::ACPI_SLEEP.len == devices::acpi_pm::ACPI_SLEEP_LEN);
    assert!(platform::PVPANIC.len == devices::acpi_pm::PVPANIC_LEN);
};

pub struct Devices {
    pub io_bus: Bus,
    /// More devices (virtio) join this bus before the vCPUs start.
    pub mmio_bus: Bus,
    pub serial: Arc<Mutex<Serial>>,
    /// The keyboard controller, which a controller of the VM types Ctrl-Alt-Del on.
    pub i8042: Arc<Mutex<I8042>>,
    /// When the guest reached the boot timer (`--boot-timer`), once it has.
    pub boot_time: Arc<OnceLock<Duration>>,
    pub stop: Arc<StopSignal>,
    /// What lives where on both buses, for `--trace-exits`.
    pub names: DeviceNames,
}

/// `boot_timer_origin` is the VMM's start instant when `--boot-timer` was given; `console`
/// says where the guest's console output goes; `stop` is the VM's stop signal;
/// `serial_state` the serial port's state when the VM is restored from a snapshot.
pub fn setup_devices(
    vm: &VmFd,
    boot_timer_origin: Option<Instant>,
    console: &Console,
    stop: Arc<StopSignal>,
    serial_state: Option<&SerialSnapshot>,
) -> Result<Devices, VmError> {
    let console: Box<dyn Write + Send> = match console {
        Console::Terminal => Box::new(UnbufferedStdout::new()),
        Console::TerminalWithCopy(copy) => Box::new(TeeConsole {
            stdout: UnbufferedStdout::new(),
            copy: copy.clone(),
        }),
        Console::Log(log) => Box::new(ConsoleLogWriter(log.clone())),
    };
    let serial = match serial_state {
        None => Serial::new(console).map_err(VmError::io("creating the serial port"))?,
        Some(state) => Serial::from_snapshot(state, console)
            .map_err(|e| VmError::Snapshot(SnapshotError::SerialState(e)))?,
    };
    vm.register_irqfd(serial.irq_eventfd(), platform::COM1_IRQ)
        .map_err(VmError::kvm("registering the serial port's irqfd"))?;
    let serial = Arc::new(Mutex::new(serial));
    let i8042 = I8042::new(stop.clone()).map_err(VmError::io("creating the i8042"))?;
    vm.register_irqfd(i8042.irq_eventfd(), platform::I8042_IRQ)
        .map_err(VmError::kvm("registering the i8042's irqfd"))?;
    let i8042 = Arc::new(Mutex::new(i8042));
    let boot_time = Arc::new(OnceLock::new());
    let buses = place_legacy_devices(
        serial.clone(),
        i8042.clone(),
        &stop,
        boot_timer_origin.map(|origin| (origin, boot_time.clone())),
    )?;
    Ok(Devices {
        io_bus: buses.io,
        mmio_bus: buses.mmio,
        serial,
        i8042,
        boot_time,
        stop,
        names: buses.names,
    })
}

/// Puts every device the VMM emulates (apart from virtio, which comes later) at its
/// platform row; the boot timer only when `boot_timer` (the VMM's start, and where to keep
/// the time the guest reached it) is given.
fn place_legacy_devices(
    serial: Arc<Mutex<Serial>>,
    i8042: Arc<Mutex<I8042>>,
    stop: &Arc<StopSignal>,
    boot_timer: Option<(Instant, Arc<OnceLock<Duration>>)>,
) -> Result<Buses, VmError> {
    let mut buses = Buses {
        io: Bus::new(),
        mmio: Bus::new(),
        names: DeviceNames::default(),
    };
    buses.place(platform::COM1, serial, Registers::Uart16550)?;
    buses.place(platform::I8042, i8042, Registers::I8042)?;
    buses.place(
        platform::DEBUG_EXIT,
        Arc::new(Mutex::new(DebugExit::new(stop.clone()))),
        Registers::None,
    )?;
    // ACPI power-off (the FADT's sleep control register) and pvpanic (a guest panic).
    buses.place(
        platform::ACPI_SLEEP,
        Arc::new(Mutex::new(AcpiPm::new(stop.clone()))),
        Registers::None,
    )?;
    buses.place(
        platform::PVPANIC,
        Arc::new(Mutex::new(PvPanic::new(stop.clone()))),
        Registers::None,
    )?;
    if let Some((origin, slot)) = boot_timer {
        let timer = BootTimer::new(origin, Box::new(std::io::stderr())).keeping_time_in(slot);
        buses.place(
            platform::BOOT_TIMER,
            Arc::new(Mutex::new(timer)),
            Registers::None,
        )?;
    }
    Ok(buses)
}

/// The two buses being filled, and the names of what is on them.
struct Buses {
    io: Bus,
    mmio: Bus,
    names: DeviceNames,
}

impl Buses {
    /// Puts `device` at its platform row `at` and names the range for `--trace-exits`.
    fn place(
        &mut self,
        at: PlatformDevice,
        device: Arc<Mutex<dyn BusDevice>>,
        registers: Registers,
    ) -> Result<(), VmError> {
        let bus = match at.space {
            Space::Port => &mut self.io,
            Space::Mmio => &mut self.mmio,
        };
        bus.insert(at.base, at.len, device)
            .map_err(|source| VmError::BusPlacement {
                device: at.name.to_owned(),
                bus: match at.space {
                    Space::Port => "I/O port",
                    Space::Mmio => "MMIO",
                },
                source,
            })?;
        match at.space {
            Space::Port => self.names.add_io(at.base, at.len, at.name, registers),
            Space::Mmio => self.names.add_mmio(at.base, at.len, at.name, registers),
        }
        Ok(())
    }
}

/// The guest console goes straight to fd 1: every byte the guest writes is already a VM
/// exit, so a userspace buffer would only delay output (e.g. a prompt without newline).
struct UnbufferedStdout {
    file: std::mem::ManuallyDrop<std::fs::File>,
}

impl UnbufferedStdout {
    fn new() -> Self {
        const STDOUT: RawFd = 1;
        // SAFETY: fd 1 is open for the life of the process; ManuallyDrop keeps this File
        // from closing it.
        let file = unsafe { std::fs::File::from_raw_fd(STDOUT) };
        Self {
            file: std::mem::ManuallyDrop::new(file),
        }
    }
}

impl Write for UnbufferedStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The console to stdout, and a copy for the caller (`vmm demo` reads the guest's report).
struct TeeConsole {
    stdout: UnbufferedStdout,
    copy: Arc<Mutex<Vec<u8>>>,
}

impl Write for TeeConsole {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.copy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        // The copy is what matters to the caller; a closed stdout must not stop the guest.
        let _ = self.stdout.write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boot::platform::{EmulatedBy, PLATFORM};

    #[test]
    fn every_platform_row_the_vmm_emulates_answers_on_its_bus() {
        let stop = Arc::new(StopSignal::new().unwrap());
        let serial = Serial::new(Box::new(std::io::sink())).unwrap();
        let i8042 = Arc::new(Mutex::new(I8042::new(stop.clone()).unwrap()));
        let boot_timer = Some((Instant::now(), Arc::new(OnceLock::new())));
        let buses =
            place_legacy_devices(Arc::new(Mutex::new(serial)), i8042, &stop, boot_timer).unwrap();
        let vmm_rows = PLATFORM
            .iter()
            .filter(|row| row.emulated_by == EmulatedBy::Vmm);
        // Virtio windows are placed per device, later (virtio_setup).
        for row in vmm_rows.filter(|row| row.name != platform::VIRTIO_MMIO.name) {
            let bus = match row.space {
                Space::Port => &buses.io,
                Space::Mmio => &buses.mmio,
            };
            let mut byte = [0u8];
            assert!(bus.read(row.base, &mut byte), "{} at its base", row.name);
            assert!(bus.read(row.last(), &mut byte), "{} at its end", row.name);
            assert!(
                !bus.read(row.last() + 1, &mut byte),
                "{} past its end",
                row.name
            );
        }
    }
}
