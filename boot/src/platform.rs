//! The platform: every I/O port range, MMIO window and interrupt line a guest can reach,
//! in one table, [`PLATFORM`]. The VMM places its devices from it (`src/vm/devices_setup.rs`,
//! `src/vm/device_slots.rs`), the ACPI tables and the MP table describe it, and
//! `docs/architecture.md` lists it (a unit test checks that listing against this table,
//! both ways). Memory — RAM, the boot structures, the MMIO gap itself — is in
//! [`crate::layout`].
//!
//! Each device is written once, as a row of [`PLATFORM`]; the named constants below are
//! looked up from it by name at compile time, so a row cannot be used without being listed.

use crate::layout::{KVM_IDENTITY_MAP_ADDRESS, MMIO_GAP_START};

/// The address space a device is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// x86 port I/O (IN/OUT); the base is a port number.
    Port,
    /// Memory-mapped I/O, inside the 32-bit MMIO gap below 4 GiB.
    Mmio,
}

/// Who answers the guest's accesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatedBy {
    /// A device model of this VMM, on its port-I/O or MMIO bus.
    Vmm,
    /// KVM's in-kernel irqchip or PIT: accesses never leave the kernel.
    Kvm,
}

/// The IOAPIC pins (GSIs) a device interrupts on; ISA IRQ n is pin n (no overrides, in
/// the MP table, the MADT and KVM's default routing alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Irq {
    None,
    Line(u32),
    /// A pool handed out one per device, `first..=last`.
    Lines {
        first: u32,
        last: u32,
    },
}

/// One row of the platform table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformDevice {
    /// The name `--trace-exits` prints and `docs/architecture.md` lists.
    pub name: &'static str,
    pub space: Space,
    pub base: u64,
    /// Bytes (MMIO) or ports (port I/O) from `base`.
    pub len: u64,
    pub irq: Irq,
    pub emulated_by: EmulatedBy,
}

impl PlatformDevice {
    /// The last address or port of the range.
    pub const fn last(&self) -> u64 {
        self.base + self.len - 1
    }
}

/// Pins of the IOAPIC (an 82093AA has 24); the MP table routes ISA IRQs 0..24 to them.
pub const IOAPIC_PINS: u8 = 24;

const fn vmm(name: &'static str, space: Space, base: u64, len: u64, irq: Irq) -> PlatformDevice {
    PlatformDevice {
        name,
        space,
        base,
        len,
        irq,
        emulated_by: EmulatedBy::Vmm,
    }
}

const fn kvm(name: &'static str, space: Space, base: u64, len: u64, irq: Irq) -> PlatformDevice {
    PlatformDevice {
        name,
        space,
        base,
        len,
        irq,
        emulated_by: EmulatedBy::Kvm,
    }
}

/// Every port range, MMIO window and interrupt line of the guest: ports, then MMIO, each
/// in address order (the order `docs/architecture.md` lists them in).
pub const PLATFORM: [PlatformDevice; 14] = [
    // KVM's in-kernel 8259 PICs (and their edge/level control registers below): present
    // with the in-kernel irqchip even though a guest that uses the IOAPIC masks them.
    kvm("PIC (master)", Space::Port, 0x20, 2, Irq::None),
    // KVM's in-kernel 8254 PIT (three counters and the mode register) on IRQ 0.
    kvm("PIT", Space::Port, 0x40, 4, Irq::Line(0)),
    // The keyboard controller: data at 0x60, command/status at 0x64. Its CPU-reset
    // command (`reboot=k`), and a keyboard that only ever types Ctrl-Alt-Del (the API's
    // `SendCtrlAltDel`), with an interrupt on IRQ 1 for each key.
    vmm("i8042", Space::Port, 0x60, 5, Irq::Line(1)),
    // The PIT's speaker/gate port, which KVM emulates as a dummy (`KVM_PIT_SPEAKER_DUMMY`).
    // It lies inside the i8042's range; KVM answers it before an exit could reach the VMM.
    kvm("PIT speaker", Space::Port, 0x61, 1, Irq::None),
    kvm("PIC (slave)", Space::Port, 0xa0, 2, Irq::None),
    // A write of byte V ends the VM with exit status V (the test guest's way out): QEMU's
    // `isa-debug-exit` port, unused on a PC.
    vmm("debug-exit", Space::Port, 0xf4, 1, Irq::None),
    // COM1, the console: the ports and ISA IRQ of a PC's first serial port, which Linux's
    // `console=ttyS0` expects. The DSDT names them (`PNP0501`): a hardware-reduced ACPI
    // guest has no legacy PIC, so Linux maps no ISA IRQ that no device names.
    vmm("serial (COM1)", Space::Port, 0x3f8, 8, Irq::Line(4)),
    kvm("PIC ELCR", Space::Port, 0x4d0, 2, Irq::None),
    // pvpanic (QEMU's port, `QEMU0001` in the DSDT): the kernel writes 1 when it panics.
    vmm("pvpanic", Space::Port, 0x505, 1, Irq::None),
    // ACPI sleep control and status (one byte, both at this port), named by the
    // hardware-reduced FADT; SLP_EN with SLP_TYP = 5 powers off. Above the legacy ISA
    // range, clear of every other port here.
    vmm("acpi-sleep", Space::Port, 0x600, 1, Irq::None),
    // The boot timer: the first page of the MMIO gap. A guest write of 123 marks "guest
    // code is running" (`--boot-timer`, the Firecracker convention).
    vmm("boot-timer", Space::Mmio, MMIO_GAP_START, 0x1000, Irq::None),
    // Virtio-mmio windows, one per device from the base up, 1 MiB past the boot timer so
    // the two never meet (as Firecracker places them). Pins 0-4 belong to the PIT, the
    // keyboard, the PIC cascade, COM2 and COM1; each device gets one of the rest.
    vmm(
        "virtio-mmio",
        Space::Mmio,
        0xD000_0000,
        0x1000_0000,
        Irq::Lines {
            first: 5,
            last: IOAPIC_PINS as u32 - 1,
        },
    ),
    // The architectural defaults of the IOAPIC and the local APIC (IA32_APIC_BASE's reset
    // value), both in KVM.
    kvm("IOAPIC", Space::Mmio, 0xFEC0_0000, 0x1000, Irq::None),
    kvm("LAPIC", Space::Mmio, 0xFEE0_0000, 0x1000, Irq::None),
];

pub const COM1: PlatformDevice = device("serial (COM1)");
pub const I8042: PlatformDevice = device("i8042");
pub const DEBUG_EXIT: PlatformDevice = device("debug-exit");
pub const PVPANIC: PlatformDevice = device("pvpanic");
pub const ACPI_SLEEP: PlatformDevice = device("acpi-sleep");
pub const BOOT_TIMER: PlatformDevice = device("boot-timer");
pub const VIRTIO_MMIO: PlatformDevice = device("virtio-mmio");
pub const IOAPIC: PlatformDevice = device("IOAPIC");
pub const LAPIC: PlatformDevice = device("LAPIC");

// The scalars the ACPI tables, the MP table and KVM calls take, derived from the rows.
pub const COM1_PORT: u16 = port(COM1);
pub const COM1_IRQ: u32 = line(COM1);
pub const I8042_IRQ: u32 = line(I8042);
pub const DEBUG_EXIT_PORT: u16 = port(DEBUG_EXIT);
pub const PVPANIC_PORT: u16 = port(PVPANIC);
pub const ACPI_SLEEP_PORT: u16 = port(ACPI_SLEEP);
/// A guest write here marks "guest code is running" for boot-time measurements.
pub const BOOT_TIMER_ADDR: u64 = BOOT_TIMER.base;
pub const VIRTIO_MMIO_START: u64 = VIRTIO_MMIO.base;
/// End (exclusive) of the virtio-mmio area.
pub const VIRTIO_MMIO_END: u64 = VIRTIO_MMIO.base + VIRTIO_MMIO.len;
/// Size of one device's virtio-mmio window: the registers (0x000–0x0ff) and config space
/// (0x100–), announced as `4K@base` on the kernel command line.
pub const VIRTIO_MMIO_WINDOW: u64 = 0x1000;
pub const VIRTIO_IRQ_FIRST: u32 = lines(VIRTIO_MMIO).0;
pub const VIRTIO_IRQ_LAST: u32 = lines(VIRTIO_MMIO).1;
pub const IOAPIC_ADDR: u64 = IOAPIC.base;
/// The interrupt of the ACPI Generic Event Device that tells the guest its VM generation
/// ID changed ([`crate::vmgenid`]): ISA line 3 (COM2's, which this machine does not
/// have), edge triggered, active high, as every ISA line here. Not a row of [`PLATFORM`]:
/// the device has no port or MMIO window, only this line and its ID in guest RAM.
pub const VMGENID_IRQ: u32 = 3;
pub const APIC_ADDR: u64 = LAPIC.base;

/// The row named `name`; a misspelt name fails the build.
const fn device(name: &str) -> PlatformDevice {
    let mut i = 0;
    while i < PLATFORM.len() {
        if same_str(PLATFORM[i].name, name) {
            return PLATFORM[i];
        }
        i += 1;
    }
    panic!("no such row in PLATFORM");
}

const fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn port(d: PlatformDevice) -> u16 {
    assert!(matches!(d.space, Space::Port) && d.base <= u16::MAX as u64);
    d.base as u16
}

const fn line(d: PlatformDevice) -> u32 {
    match d.irq {
        Irq::Line(irq) => irq,
        _ => panic!("this row has no single interrupt line"),
    }
}

const fn lines(d: PlatformDevice) -> (u32, u32) {
    match d.irq {
        Irq::Lines { first, last } => (first, last),
        _ => panic!("this row has no pool of interrupt lines"),
    }
}

const fn overlap(a: &PlatformDevice, b: &PlatformDevice) -> bool {
    matches!(
        (a.space, b.space),
        (Space::Port, Space::Port) | (Space::Mmio, Space::Mmio)
    ) && a.base <= b.last()
        && b.base <= a.last()
}

const fn irq_range(irq: Irq) -> Option<(u32, u32)> {
    match irq {
        Irq::None => None,
        Irq::Line(n) => Some((n, n)),
        Irq::Lines { first, last } => Some((first, last)),
    }
}

// The table is consistent; checked at compile time.
const _: () = {
    let mut i = 0;
    while i < PLATFORM.len() {
        let a = &PLATFORM[i];
        assert!(a.len > 0);
        match a.space {
            Space::Port => assert!(a.last() <= u16::MAX as u64),
            // In the gap, below the pages KVM keeps at its top.
            Space::Mmio => {
                assert!(a.base >= MMIO_GAP_START && a.last() < KVM_IDENTITY_MAP_ADDRESS)
            }
        }
        if let Some((first, last)) = irq_range(a.irq) {
            assert!(first <= last && last < IOAPIC_PINS as u32);
        }
        // In order: ports before MMIO, each by address.
        if i + 1 < PLATFORM.len() {
            let next = &PLATFORM[i + 1];
            let same_space = matches!(a.space, Space::Port) == matches!(next.space, Space::Port);
            assert!(
                (same_space && a.base < next.base)
                    || (matches!(a.space, Space::Port) && matches!(next.space, Space::Mmio))
            );
        }
        let mut j = i + 1;
        while j < PLATFORM.len() {
            let b = &PLATFORM[j];
            // A KVM range may sit inside a VMM one: KVM answers first (0x61 in the
            // i8042's 0x60..=0x64). Ranges of the same emulator must not meet.
            let same_emulator = matches!(
                (a.emulated_by, b.emulated_by),
                (EmulatedBy::Vmm, EmulatedBy::Vmm) | (EmulatedBy::Kvm, EmulatedBy::Kvm)
            );
            assert!(!(same_emulator && overlap(a, b)));
            assert!(!same_str(a.name, b.name));
            if let (Some((a0, a1)), Some((b0, b1))) = (irq_range(a.irq), irq_range(b.irq)) {
                assert!(a1 < b0 || b1 < a0, "two rows share an interrupt line");
            }
            j += 1;
        }
        i += 1;
    }
    assert!(VIRTIO_MMIO.len.is_multiple_of(VIRTIO_MMIO_WINDOW));
    // The generation ID's line lies below the virtio devices' (that no row has it is
    // `vmgenid::tests::the_event_line_is_no_other_devices`).
    assert!(VMGENID_IRQ < VIRTIO_IRQ_FIRST);
};

#[cfg(test)]
#[path = "platform_tests.rs"]
mod tests;
