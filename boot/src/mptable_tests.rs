//! Tests for the MP table: parse back what `write_mptable` wrote and check it.

use super::*;
use vm_memory::GuestMemoryMmap;

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

struct Parsed {
    floating_pointer: Vec<u8>,
    table: Vec<u8>,
    /// Entries after the header, each with its own type byte first.
    entries: Vec<Vec<u8>>,
}

impl Parsed {
    fn of_type(&self, kind: u8) -> Vec<&Vec<u8>> {
        self.entries.iter().filter(|e| e[0] == kind).collect()
    }
}

fn write_and_parse(num_cpus: u8) -> Parsed {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    write_mptable(&mem, num_cpus).unwrap();
    let mut floating_pointer = vec![0u8; 16];
    mem.read_slice(&mut floating_pointer, GuestAddress(MPTABLE_START))
        .unwrap();
    let table_addr = u64::from(u32_at(&floating_pointer, 4));
    let mut header = vec![0u8; HEADER_SIZE];
    mem.read_slice(&mut header, GuestAddress(table_addr))
        .unwrap();
    let mut table = vec![0u8; usize::from(u16_at(&header, 4))];
    mem.read_slice(&mut table, GuestAddress(table_addr))
        .unwrap();

    let mut entries = Vec::new();
    let mut at = HEADER_SIZE;
    for _ in 0..u16_at(&table, 34) {
        let len = if table[at] == ENTRY_PROCESSOR {
            PROCESSOR_SIZE
        } else {
            ENTRY_SIZE
        };
        entries.push(table[at..at + len].to_vec());
        at += len;
    }
    assert_eq!(at, table.len(), "entry count matches the table length");
    Parsed {
        floating_pointer,
        table,
        entries,
    }
}

#[test]
fn mptable_checksums_are_valid() {
    for num_cpus in [1, 2, 7, MAX_SUPPORTED_CPUS] {
        let parsed = write_and_parse(num_cpus);
        assert_eq!(
            sum(&parsed.floating_pointer),
            0,
            "floating pointer, {num_cpus} vCPUs"
        );
        assert_eq!(
            sum(&parsed.table),
            0,
            "configuration table, {num_cpus} vCPUs"
        );
    }
}

#[test]
fn mptable_floating_pointer_is_where_linux_scans() {
    let fp = write_and_parse(2).floating_pointer;
    assert_eq!(&fp[0..4], b"_MP_");
    assert_eq!((fp[8], fp[9]), (1, 4), "one paragraph, spec 1.4");
    assert_eq!(
        fp[11], 0,
        "configuration table present, not a default config"
    );
    // Linux scans 639 KiB..640 KiB (the last KiB of base memory) on 16-byte boundaries.
    assert!((639 * 1024..640 * 1024).contains(&MPTABLE_START));
    assert_eq!(MPTABLE_START % 16, 0);
}

#[test]
fn mptable_header_names_the_lapic_and_spec() {
    let table = write_and_parse(2).table;
    assert_eq!(&table[0..4], b"PCMP");
    assert_eq!(table[6], 4);
    assert_eq!(u64::from(u32_at(&table, 36)), APIC_ADDR);
}

#[test]
fn mptable_has_one_processor_entry_per_cpu() {
    let parsed = write_and_parse(4);
    let cpus = parsed.of_type(ENTRY_PROCESSOR);
    assert_eq!(cpus.len(), 4);
    for (index, cpu) in cpus.iter().enumerate() {
        assert_eq!(usize::from(cpu[1]), index, "APIC ID");
        assert_eq!(cpu[2], APIC_VERSION);
        assert_ne!(cpu[3] & CPU_ENABLED, 0, "enabled");
        assert_eq!(cpu[3] & CPU_BSP != 0, index == 0, "BSP only on vCPU 0");
        assert_eq!(u32_at(cpu, 4), CPU_SIGNATURE);
        assert_ne!(u32_at(cpu, 8) & (1 << 9), 0, "APIC feature");
    }
}

#[test]
fn mptable_has_isa_bus_and_ioapic_after_the_cpus() {
    let parsed = write_and_parse(3);
    let bus = parsed.of_type(ENTRY_BUS);
    assert_eq!(bus.len(), 1);
    assert_eq!(&bus[0][2..8], b"ISA   ");
    let ioapic = parsed.of_type(ENTRY_IOAPIC);
    assert_eq!(ioapic.len(), 1);
    assert_eq!((ioapic[0][1], ioapic[0][2], ioapic[0][3]), (3, 0x11, 1));
    assert_eq!(u64::from(u32_at(ioapic[0], 4)), IOAPIC_ADDR);
}

#[test]
fn mptable_routes_isa_irqs_0_to_23_to_the_ioapic() {
    let parsed = write_and_parse(2);
    let ints = parsed.of_type(ENTRY_IO_INTERRUPT);
    assert_eq!(ints.len(), 24);
    for (irq, int) in ints.iter().enumerate() {
        assert_eq!(int[1], INT_TYPE_INT);
        assert_eq!(
            (usize::from(int[5]), int[6], usize::from(int[7])),
            (irq, 2, irq)
        );
    }
}

#[test]
fn mptable_wires_lint0_to_extint_and_lint1_to_nmi() {
    let parsed = write_and_parse(2);
    let lints = parsed.of_type(ENTRY_LOCAL_INTERRUPT);
    assert_eq!(lints.len(), 2);
    assert_eq!((lints[0][1], lints[0][7]), (INT_TYPE_EXTINT, 0));
    assert_eq!(
        (lints[1][1], lints[1][6], lints[1][7]),
        (INT_TYPE_NMI, 0xff, 1)
    );
}

#[test]
fn mptable_rejects_zero_and_too_many_cpus() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    for num_cpus in [0, MAX_SUPPORTED_CPUS + 1] {
        let err = write_mptable(&mem, num_cpus).unwrap_err();
        assert!(matches!(err, BootError::TooManyCpus { requested, .. } if requested == num_cpus));
    }
}

#[test]
fn mptable_outside_guest_memory_is_an_error() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x9_0000)]).unwrap();
    assert!(matches!(
        write_mptable(&mem, 1),
        Err(BootError::GuestMemory { .. })
    ));
}
