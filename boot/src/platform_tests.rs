//! The platform table against what describes it outside the code: the table in
//! `docs/architecture.md` and the test guest's `tests/guest/guest.h`. Both are read at
//! compile time, so editing either rebuilds and reruns these tests.

use super::*;
use crate::layout::{BOOT_STACK_POINTER, PML4_START, ZERO_PAGE_START};

const ARCHITECTURE_MD: &str = include_str!("../../docs/architecture.md");
const GUEST_H: &str = include_str!("../../tests/guest/guest.h");
const DOCS_HEADING: &str = "## Ports, MMIO windows and IRQs";

/// `0x3f8`, `0xD000_0000` or `8`.
fn number(text: &str) -> u64 {
    let text = text.replace('_', "");
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("{text:?} is not a number: {e}"))
}

/// `-`, `4` or `5..=23`.
fn irq(text: &str) -> Irq {
    match text.split_once("..=") {
        _ if text == "-" => Irq::None,
        Some((first, last)) => Irq::Lines {
            first: number(first) as u32,
            last: number(last) as u32,
        },
        None => Irq::Line(number(text) as u32),
    }
}

/// The rows of the docs' platform table, as the table's own type.
fn docs_rows() -> Vec<PlatformDevice> {
    let section = ARCHITECTURE_MD
        .split_once(DOCS_HEADING)
        .unwrap_or_else(|| panic!("docs/architecture.md has no {DOCS_HEADING:?} section"))
        .1;
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|line| line.starts_with('|'))
        .skip(2) // The header and the |---| line.
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert!(cells.len() >= 6, "short row in the docs table: {line}");
            PlatformDevice {
                // Leaked so that a row can be compared with `PLATFORM` as a whole.
                name: Box::leak(cells[0].to_string().into_boxed_str()),
                space: match cells[1] {
                    "port" => Space::Port,
                    "mmio" => Space::Mmio,
                    other => panic!("unknown space {other:?} in: {line}"),
                },
                base: number(cells[2]),
                len: number(cells[3]),
                irq: irq(cells[4]),
                emulated_by: match cells[5] {
                    "vmm" => EmulatedBy::Vmm,
                    "KVM" => EmulatedBy::Kvm,
                    other => panic!("unknown emulator {other:?} in: {line}"),
                },
            }
        })
        .collect()
}

#[test]
fn docs_table_lists_every_platform_row_as_the_code_has_it() {
    let docs = docs_rows();
    for (i, row) in PLATFORM.iter().enumerate() {
        assert_eq!(
            docs.get(i),
            Some(row),
            "docs/architecture.md row {} differs from PLATFORM",
            i + 1
        );
    }
    assert_eq!(
        docs.len(),
        PLATFORM.len(),
        "docs/architecture.md lists rows PLATFORM lacks: {:?}",
        &docs[PLATFORM.len().min(docs.len())..]
    );
}

/// The value of `#define NAME value` in the test guest's header.
fn guest_define(name: &str) -> u64 {
    let value = GUEST_H
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("#define") && words.next() == Some(name))
                .then(|| words.next())
                .flatten()
        })
        .unwrap_or_else(|| panic!("tests/guest/guest.h does not define {name}"));
    number(value.trim_end_matches("UL"))
}

#[test]
fn test_guest_header_mirrors_the_platform_and_layout() {
    assert_eq!(guest_define("COM1_PORT"), COM1.base);
    assert_eq!(guest_define("UART_IOAPIC_PIN"), u64::from(COM1_IRQ));
    assert_eq!(guest_define("KBD_IOAPIC_PIN"), u64::from(I8042_IRQ));
    assert_eq!(guest_define("I8042_DATA_PORT"), I8042.base);
    assert_eq!(guest_define("DEBUG_EXIT_PORT"), DEBUG_EXIT.base);
    // The command register is the i8042's last port (offset 4 from the data port).
    assert_eq!(guest_define("I8042_COMMAND_PORT"), I8042.last());
    assert_eq!(guest_define("BOOT_TIMER_ADDR"), BOOT_TIMER_ADDR);
    assert_eq!(guest_define("IOAPIC_ADDR"), IOAPIC_ADDR);
    assert_eq!(guest_define("LAPIC_ADDR"), APIC_ADDR);
    assert_eq!(guest_define("ZERO_PAGE_ADDR"), ZERO_PAGE_START);
    assert_eq!(guest_define("BOOT_STACK_POINTER"), BOOT_STACK_POINTER);
    assert_eq!(guest_define("PML4_ADDR"), PML4_START);
    assert_eq!(guest_define("VMGENID_IOAPIC_PIN"), u64::from(VMGENID_IRQ));
    assert_eq!(guest_define("VMGENID_ADDR"), crate::layout::VMGENID_START);
}

#[test]
fn virtio_devices_get_pins_5_to_23_and_256_mib_of_windows() {
    assert_eq!((VIRTIO_IRQ_FIRST, VIRTIO_IRQ_LAST), (5, 23));
    assert_eq!(VIRTIO_MMIO_START, 0xD000_0000);
    assert_eq!(VIRTIO_MMIO_END, 0xE000_0000);
}

#[test]
fn docs_number_and_irq_cells_parse() {
    assert_eq!(number("0xD000_0000"), 0xD000_0000);
    assert_eq!(number("8"), 8);
    assert_eq!(irq("-"), Irq::None);
    assert_eq!(irq("4"), Irq::Line(4));
    assert_eq!(irq("5..=23"), Irq::Lines { first: 5, last: 23 });
}
