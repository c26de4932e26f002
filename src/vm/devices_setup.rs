//! Wiring the legacy devices onto the port-I/O and MMIO buses.

use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use boot::layout::BOOT_TIMER_ADDR;
use devices::{BootTimer, Bus, DebugExit, Serial, StopSignal, DEBUG_EXIT_PORT, I8042};
use kvm_ioctls::VmFd;

use super::console_log::ConsoleLogWriter;
use super::error::VmError;
use super::exit_stats::{DeviceNames, Registers};
use super::Console;

pub const SERIAL_PORT_BASE: u64 = 0x3f8;
pub const SERIAL_PORT_LEN: u64 = 8;
pub const SERIAL_GSI: u32 = 4;
pub const I8042_PORT_BASE: u64 = 0x60;
pub const I8042_PORT_LEN: u64 = 5;
pub const BOOT_TIMER_LEN: u64 = 0x1000;

pub struct Devices {
    pub io_bus: Bus,
    /// More devices (virtio) join this bus before the vCPUs start.
    pub mmio_bus: Bus,
    pub serial: Arc<Mutex<Serial>>,
    pub stop: Arc<StopSignal>,
    /// What lives where on both buses, for `--trace-exits`.
    pub names: DeviceNames,
}

/// `boot_timer_origin` is the VMM's start instant when `--boot-timer` was given; `console`
/// says where the guest's console output goes; `stop` is the VM's stop signal.
pub fn setup_devices(
    vm: &VmFd,
    boot_timer_origin: Option<Instant>,
    console: &Console,
    stop: Arc<StopSignal>,
) -> Result<Devices, VmError> {
    let console: Box<dyn Write + Send> = match console {
        Console::Terminal => Box::new(UnbufferedStdout::new()),
        Console::TerminalWithCopy(copy) => Box::new(TeeConsole {
            stdout: UnbufferedStdout::new(),
            copy: copy.clone(),
        }),
        Console::Log(log) => Box::new(ConsoleLogWriter(log.clone())),
    };
    let serial = Serial::new(console).map_err(VmError::io("creating the serial port"))?;
    vm.register_irqfd(serial.irq_eventfd(), SERIAL_GSI)
        .map_err(VmError::kvm("registering the serial port's irqfd"))?;
    let serial = Arc::new(Mutex::new(serial));

    let i8042 = I8042::new(stop.clone()).map_err(VmError::io("creating the i8042"))?;
    let debug_exit = DebugExit::new(stop.clone());

    let mut io_bus = Bus::new();
    let mut names = DeviceNames::default();
    let bus_err = |e: devices::BusError| VmError::Io {
        op: "placing a device on the bus",
        source: std::io::Error::other(e.to_string()),
    };
    io_bus
        .insert(SERIAL_PORT_BASE, SERIAL_PORT_LEN, serial.clone())
        .map_err(bus_err)?;
    names.add_io(
        SERIAL_PORT_BASE,
        SERIAL_PORT_LEN,
        "serial (COM1)",
        Registers::Uart16550,
    );
    io_bus
        .insert(I8042_PORT_BASE, I8042_PORT_LEN, Arc::new(Mutex::new(i8042)))
        .map_err(bus_err)?;
    names.add_io(I8042_PORT_BASE, I8042_PORT_LEN, "i8042", Registers::I8042);
    io_bus
        .insert(
            u64::from(DEBUG_EXIT_PORT),
            1,
            Arc::new(Mutex::new(debug_exit)),
        )
        .map_err(bus_err)?;
    names.add_io(u64::from(DEBUG_EXIT_PORT), 1, "debug-exit", Registers::None);

    // ACPI power-off (the FADT's sleep control register) and pvpanic (a guest panic).
    io_bus
        .insert(
            u64::from(boot::layout::ACPI_SLEEP_PORT),
            devices::acpi_pm::ACPI_SLEEP_LEN,
            Arc::new(Mutex::new(devices::acpi_pm::AcpiPm::new(stop.clone()))),
        )
        .map_err(bus_err)?;
    names.add_io(
        u64::from(boot::layout::ACPI_SLEEP_PORT),
        devices::acpi_pm::ACPI_SLEEP_LEN,
        "acpi-sleep",
        Registers::None,
    );
    io_bus
        .insert(
            u64::from(boot::layout::PVPANIC_PORT),
            devices::acpi_pm::PVPANIC_LEN,
            Arc::new(Mutex::new(devices::acpi_pm::PvPanic::new(stop.clone()))),
        )
        .map_err(bus_err)?;
    names.add_io(
        u64::from(boot::layout::PVPANIC_PORT),
        devices::acpi_pm::PVPANIC_LEN,
        "pvpanic",
        Registers::None,
    );

    let mut mmio_bus = Bus::new();
    if let Some(origin) = boot_timer_origin {
        let timer = BootTimer::new(origin, Box::new(std::io::stderr()));
        mmio_bus
            .insert(BOOT_TIMER_ADDR, BOOT_TIMER_LEN, Arc::new(Mutex::new(timer)))
            .map_err(bus_err)?;
        names.add_mmio(
            BOOT_TIMER_ADDR,
            BOOT_TIMER_LEN,
            "boot-timer",
            Registers::None,
        );
    }

    Ok(Devices {
        io_bus,
        mmio_bus,
        serial,
        stop,
        names,
    })
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
