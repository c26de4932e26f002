//! Tests for the ACPI tables: parse back what `write_acpi_tables` wrote, the way a guest
//! walks them (RSDP → XSDT → FADT → DSDT, XSDT → MADT), and check each table.

use super::*;
use vm_memory::GuestMemoryMmap;

const VIRTIO: [(u64, u64, u32); 2] = [(0xD000_0000, 0x1000, 5), (0xD000_1000, 0x1000, 6)];

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap()
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    mem.read_slice(&mut bytes, GuestAddress(addr)).unwrap();
    bytes
}

/// A whole system description table at `addr` (its length from the header).
fn table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
    let len = u32_at(&read(mem, addr, 8), 4) as usize;
    read(mem, addr, len)
}

struct Tables {
    rsdp: Vec<u8>,
    xsdt: Vec<u8>,
    fadt: Vec<u8>,
    madt: Vec<u8>,
    dsdt: Vec<u8>,
    addrs: Vec<u64>,
}

fn written(num_cpus: u8, virtio: &[(u64, u64, u32)]) -> Tables {
    let mem = guest_memory();
    let rsdp_addr = write_acpi_tables(&mem, num_cpus, virtio).unwrap();
    assert_eq!(rsdp_addr, ACPI_RSDP_START);
    let rsdp = read(&mem, rsdp_addr, 36);
    let xsdt_addr = u64_at(&rsdp, 24);
    let xsdt = table(&mem, xsdt_addr);
    let entries: Vec<u64> = (36..xsdt.len())
        .step_by(8)
        .map(|at| u64_at(&xsdt, at))
        .collect();
    assert_eq!(entries.len(), 2, "XSDT lists the FADT and the MADT");
    let fadt = table(&mem, entries[0]);
    let madt = table(&mem, entries[1]);
    let dsdt_addr = u64_at(&fadt, 140);
    let dsdt = table(&mem, dsdt_addr);
    Tables {
        rsdp,
        xsdt,
        fadt,
        madt,
        dsdt,
        addrs: vec![xsdt_addr, entries[0], entries[1], dsdt_addr],
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// An extended interrupt descriptor (0x89) as our DSDT writes each: consumer, edge,
/// active high, exclusive, the one GSI `irq`.
fn interrupt_descriptor(irq: u32) -> Vec<u8> {
    let mut desc = vec![0x89, 6, 0, 0b011, 1];
    desc.extend(irq.to_le_bytes());
    desc
}

#[test]
fn rsdp_is_version_2_with_valid_checksums() {
    let t = written(1, &[]);
    assert_eq!(&t.rsdp[0..8], b"RSD PTR ");
    assert_eq!(t.rsdp[15], 2, "revision 2: ACPI 2.0+ with an XSDT");
    assert_eq!(sum(&t.rsdp[0..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(sum(&t.rsdp), 0, "extended checksum");
    assert_eq!(u32_at(&t.rsdp, 20), 36);
}

#[test]
fn every_table_has_its_signature_and_checksum() {
    let t = written(4, &VIRTIO);
    for (bytes, sig) in [
        (&t.xsdt, b"XSDT"),
        (&t.fadt, b"FACP"),
        (&t.madt, b"APIC"),
        (&t.dsdt, b"DSDT"),
    ] {
        assert_eq!(&bytes[0..4], sig);
        assert_eq!(
            sum(bytes),
            0,
            "checksum of {}",
            String::from_utf8_lossy(sig)
        );
    }
}

#[test]
fn tables_lie_in_the_acpi_area_without_overlapping() {
    let t = written(8, &VIRTIO);
    let lens = [t.xsdt.len(), t.fadt.len(), t.madt.len(), t.dsdt.len()];
    let mut spans: Vec<(u64, u64)> = t
        .addrs
        .iter()
        .zip(lens)
        .map(|(&a, l)| (a, a + l as u64))
        .collect();
    spans.sort();
    for (start, end) in &spans {
        assert!(*start >= ACPI_TABLES_START && *end <= ACPI_TABLES_END);
    }
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "{:x?} overlaps {:x?}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn fadt_is_hardware_reduced_with_the_sleep_port() {
    let t = written(1, &[]);
    let flags = u32_at(&t.fadt, 112);
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_eq!(t.fadt[8], 6, "FADT major revision 6");
    // sleep_control_reg (offset 244) and sleep_status_reg (256): system I/O, 8 bits.
    for at in [244, 256] {
        assert_eq!(t.fadt[at], 1, "address space: system I/O");
        assert_eq!(t.fadt[at + 1], 8, "register width");
        assert_eq!(u64_at(&t.fadt, at + 4), u64::from(ACPI_SLEEP_PORT));
    }
    let iapc = u16::from_le_bytes([t.fadt[109], t.fadt[110]]);
    assert_eq!(
        iapc & (1 << 1),
        0,
        "no 8042 advertised: Linux skips probing it"
    );
}

#[test]
fn madt_lists_one_enabled_lapic_per_vcpu_and_the_ioapic() {
    let t = written(4, &[]);
    assert_eq!(u32_at(&t.madt, 36), APIC_ADDR as u32);
    let mut lapic_ids = Vec::new();
    let mut ioapics = Vec::new();
    let mut at = 44;
    while at < t.madt.len() {
        let (kind, len) = (t.madt[at], t.madt[at + 1] as usize);
        match kind {
            0 => {
                assert_eq!(u32_at(&t.madt, at + 4) & 1, 1, "LAPIC enabled");
                lapic_ids.push(t.madt[at + 3]);
            }
            1 => ioapics.push((
                t.madt[at + 2],
                u32_at(&t.madt, at + 4),
                u32_at(&t.madt, at + 8),
            )),
            other => panic!("unexpected MADT entry type {other}"),
        }
        at += len;
    }
    assert_eq!(lapic_ids, vec![0, 1, 2, 3]);
    assert_eq!(ioapics, vec![(4, IOAPIC_ADDR as u32, 0)]);
}

#[test]
fn dsdt_describes_each_virtio_window_and_s5() {
    let t = written(1, &VIRTIO);
    assert_eq!(count(&t.dsdt, b"LNRO0005"), 2);
    assert_eq!(count(&t.dsdt, b"_S5_"), 1);
    assert_eq!(count(&t.dsdt, b"QEMU0001"), 1);
    assert_eq!(count(&t.dsdt, b"COM1"), 1);
    // Memory32Fixed descriptor (0x86, length 9, read-write) with each base and size.
    for (base, len, _) in VIRTIO {
        let mut desc = vec![0x86, 9, 0, 1];
        desc.extend((base as u32).to_le_bytes());
        desc.extend((len as u32).to_le_bytes());
        assert_eq!(count(&t.dsdt, &desc), 1, "window {base:#x}");
    }
    // Extended interrupt descriptor (0x89): consumer, edge, active high, one GSI; the
    // console's IRQ 4 as well as each virtio device's.
    for irq in [COM1_IRQ, VIRTIO[0].2, VIRTIO[1].2] {
        assert_eq!(count(&t.dsdt, &interrupt_descriptor(irq)), 1, "irq {irq}");
    }
}

#[test]
fn dsdt_without_virtio_devices_still_has_s5() {
    let t = written(1, &[]);
    assert_eq!(count(&t.dsdt, b"LNRO0005"), 0);
    assert_eq!(count(&t.dsdt, b"_S5_"), 1);
}

#[test]
fn zero_or_too_many_cpus_are_rejected() {
    let mem = guest_memory();
    assert!(matches!(
        write_acpi_tables(&mem, 0, &[]),
        Err(BootError::TooManyCpus { requested: 0, .. })
    ));
    assert!(write_acpi_tables(&mem, MAX_SUPPORTED_CPUS + 1, &[]).is_err());
    assert!(write_acpi_tables(&mem, MAX_SUPPORTED_CPUS, &VIRTIO).is_ok());
}

#[test]
fn virtio_window_above_4g_is_rejected() {
    let mem = guest_memory();
    let result = write_acpi_tables(&mem, 1, &[(0x1_0000_0000, 0x1000, 5)]);
    assert!(matches!(result, Err(BootError::GuestMemory { .. })));
}

#[test]
fn dsdt_describes_the_vm_generation_id_and_its_event_device() {
    let t = written(1, &VIRTIO);
    assert_eq!(count(&t.dsdt, b"VMGENCTR"), 1);
    assert_eq!(count(&t.dsdt, b"VM_GEN_COUNTER"), 1);
    assert_eq!(count(&t.dsdt, b"ACPI0013"), 1);
    // ADDR: a package of two DWord constants (0x0C), the address's low and high halves.
    let mut addr = vec![0x0C];
    addr.extend((crate::layout::VMGENID_START as u32).to_le_bytes());
    assert_eq!(count(&t.dsdt, &addr), 1, "ADDR's low half");
    // The event device's interrupt: consumer, edge, active high, the generation ID's line.
    let desc = interrupt_descriptor(crate::platform::VMGENID_IRQ);
    assert_eq!(count(&t.dsdt, &desc), 1);
    // Notify (\_SB_.VGEN, 0x80): NotifyOp, a rooted two-part name, ByteConst 0x80.
    let notify = [&[0x86, b'\\', 0x2E][..], b"_SB_VGEN", &[0x0A, 0x80]].concat();
    assert_eq!(count(&t.dsdt, &notify), 1);
}

/// The DSDT as ACPICA's disassembler reads it back: well-formed AML whose every name
/// resolves, with the generation ID device, its event device and the notification.
#[test]
fn iasl_disassembles_the_dsdt_with_every_device() {
    let Some(iasl) = iasl_on_path() else {
        eprintln!("SKIP iasl_disassembles_the_dsdt_with_every_device: no iasl (apt-get install acpica-tools)");
        return;
    };
    let t = written(2, &VIRTIO);
    let dir = std::env::temp_dir().join(format!("vmm-dsdt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let aml = dir.join("dsdt.dat");
    std::fs::write(&aml, &t.dsdt).unwrap();
    let out = std::process::Command::new(iasl)
        .arg("-d")
        .arg(&aml)
        .current_dir(&dir)
        .output()
        .unwrap();
    let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && !dsl.is_empty(),
        "iasl -d failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "Device (VGEN)",
        "Name (_HID, \"VMGENCTR\")",
        "Name (ADDR, Package (0x02)",
        "Device (GED0)",
        "Name (_HID, \"ACPI0013\"",
        "Method (_EVT, 1, Serialized)",
        "Notify (\\_SB.VGEN, 0x80)",
        "Device (COM1)",
        "Name (_HID, \"LNRO0005\"",
    ] {
        assert!(dsl.contains(expected), "no {expected:?} in:\n{dsl}");
    }
}

fn iasl_on_path() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("iasl"))
        .find(|p| p.is_file())
}
