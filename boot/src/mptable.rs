//! Intel MultiProcessor Specification 1.4 tables: a floating pointer at [`MPTABLE_START`]
//! followed by the configuration table, which lists the vCPUs, one ISA bus, the IOAPIC,
//! the ISA IRQ routing and the LAPIC LINT wiring. Without ACPI, Linux finds the vCPUs
//! and the IOAPIC here.
//!
//! The tables are encoded byte by byte (all fields little-endian, no padding) so that no
//! packed structs or `unsafe` are needed.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{HIMEM_START, MPTABLE_START};
use crate::platform::IOAPIC_PINS;
use crate::platform::{APIC_ADDR, IOAPIC_ADDR};
use crate::BootError;

/// Most vCPUs the MP table describes: xAPIC IDs are 8 bits, 0xff is the broadcast ID and
/// the IOAPIC takes the ID after the last vCPU.
pub const MAX_SUPPORTED_CPUS: u8 = 254;

/// IOAPIC version reported in the table (82093AA-compatible, as KVM's IOAPIC).
pub const IOAPIC_VERSION: u8 = 0x11;
/// Local APIC version reported for each processor (integrated xAPIC).
pub const APIC_VERSION: u8 = 0x14;

const SPEC_REV_1_4: u8 = 4;
const FLOATING_POINTER_SIZE: usize = 16;
const HEADER_SIZE: usize = 44;
const PROCESSOR_SIZE: usize = 20;
const ENTRY_SIZE: usize = 8;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

const CPU_ENABLED: u8 = 1 << 0;
const CPU_BSP: u8 = 1 << 1;
/// CPU signature: family 6, model 0, stepping 0 (a generic P6-class processor).
const CPU_SIGNATURE: u32 = 0x600;
/// CPUID.1:EDX feature flags reported: FPU (bit 0) and on-chip APIC (bit 9).
const CPU_FEATURES: u32 = (1 << 9) | (1 << 0);
const IOAPIC_USABLE: u8 = 1 << 0;

const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Polarity and trigger mode: "conforms to the bus" (edge, active high for ISA).
const INT_FLAGS_CONFORMING: u16 = 0;
const ISA_BUS_ID: u8 = 0;
const ALL_LAPICS: u8 = 0xff;

/// Bytes of floating pointer plus configuration table for `num_cpus` vCPUs.
pub const fn mptable_size(num_cpus: u8) -> usize {
    FLOATING_POINTER_SIZE
        + HEADER_SIZE
        + num_cpus as usize * PROCESSOR_SIZE
        + ENTRY_SIZE * (2 + IOAPIC_PINS as usize + 2)
}

// The table for the largest supported vCPU count fits in the reserved area below 1 MiB.
const _: () =
    assert!(MPTABLE_START as usize + mptable_size(MAX_SUPPORTED_CPUS) <= HIMEM_START as usize);

/// Writes the MP floating pointer and configuration table for `num_cpus` vCPUs (APIC IDs
/// 0..num_cpus, vCPU 0 the bootstrap processor) at [`MPTABLE_START`].
pub fn write_mptable<M: GuestMemoryBackend>(mem: &M, num_cpus: u8) -> Result<(), BootError> {
    if num_cpus == 0 || num_cpus > MAX_SUPPORTED_CPUS {
        return Err(BootError::TooManyCpus {
            requested: num_cpus,
            max: MAX_SUPPORTED_CPUS,
        });
    }
    let config_addr = MPTABLE_START + FLOATING_POINTER_SIZE as u64;
    let mut bytes = floating_pointer(config_addr as u32).to_vec();
    bytes.extend(config_table(num_cpus));
    debug_assert_eq!(bytes.len(), mptable_size(num_cpus));
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START))
        .map_err(BootError::mem("MP table", MPTABLE_START))
}

/// The byte that makes `bytes` sum to zero (mod 256) when added.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_sub(*b))
}

fn floating_pointer(config_addr: u32) -> [u8; FLOATING_POINTER_SIZE] {
    let mut fp = [0u8; FLOATING_POINTER_SIZE];
    fp[0..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&config_addr.to_le_bytes());
    fp[8] = 1; // Length in 16-byte paragraphs.
    fp[9] = SPEC_REV_1_4;
    // fp[11..16]: feature bytes 0 = a configuration table is present; virtual-wire mode.
    fp[10] = checksum(&fp);
    fp
}

fn config_table(num_cpus: u8) -> Vec<u8> {
    let ioapic_id = num_cpus;
    let mut entries = Vec::new();
    for cpu in 0..num_cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BSP } else { 0 };
        entries.extend([ENTRY_PROCESSOR, cpu, APIC_VERSION, flags]);
        entries.extend(CPU_SIGNATURE.to_le_bytes());
        entries.extend(CPU_FEATURES.to_le_bytes());
        entries.extend([0u8; 8]);
    }
    entries.extend([ENTRY_BUS, ISA_BUS_ID]);
    entries.extend(b"ISA   ");
    entries.extend([ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, IOAPIC_USABLE]);
    entries.extend((IOAPIC_ADDR as u32).to_le_bytes());
    // Each IOAPIC pin from the ISA IRQ of the same number, as the platform table assumes.
    for irq in 0..IOAPIC_PINS {
        entries.extend(interrupt(
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            irq,
            ioapic_id,
            irq,
        ));
    }
    entries.extend(interrupt(ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, 0));
    entries.extend(interrupt(
        ENTRY_LOCAL_INTERRUPT,
        INT_TYPE_NMI,
        0,
        ALL_LAPICS,
        1,
    ));
    let count = u16::from(num_cpus) + 2 + u16::from(IOAPIC_PINS) + 2;

    let mut table = Vec::with_capacity(HEADER_SIZE + entries.len());
    table.extend(b"PCMP");
    table.extend(((HEADER_SIZE + entries.len()) as u16).to_le_bytes());
    table.extend([SPEC_REV_1_4, 0]); // Checksum filled in below.
    table.extend(b"VMM     "); // OEM ID, 8 bytes.
    table.extend(b"MICROVM     "); // Product ID, 12 bytes.
    table.extend([0u8; 6]); // No OEM table: pointer and size 0.
    table.extend(count.to_le_bytes());
    table.extend((APIC_ADDR as u32).to_le_bytes());
    table.extend([0u8; 4]); // No extended table.
    debug_assert_eq!(table.len(), HEADER_SIZE);
    table.extend(entries);
    table[7] = checksum(&table);
    table
}

/// An I/O (type 3) or local (type 4) interrupt assignment entry from ISA IRQ `src_irq`
/// to pin `dst_pin` of the IOAPIC or LAPIC `dst_id`.
fn interrupt(kind: u8, int_type: u8, src_irq: u8, dst_id: u8, dst_pin: u8) -> [u8; 8] {
    let [flags_lo, flags_hi] = INT_FLAGS_CONFORMING.to_le_bytes();
    [
        kind, int_type, flags_lo, flags_hi, ISA_BUS_ID, src_irq, dst_id, dst_pin,
    ]
}

#[cfg(test)]
#[path = "mptable_tests.rs"]
mod tests;
