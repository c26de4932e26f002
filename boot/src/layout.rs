//! Guest physical memory layout for x86_64 boots. Every fixed address used by the boot
//! code lives here, with the reason it is where it is.
//!
//! Conventional memory (below 640 KiB) holds the small boot structures; the kernel is
//! loaded at 1 MiB; the 32-bit MMIO gap sits just below 4 GiB and RAM that does not fit
//! below it continues at 4 GiB. What lives in the gap and on the I/O ports — devices,
//! the IOAPIC and LAPIC, their interrupt lines — is the platform table,
//! [`crate::platform::PLATFORM`].

use vm_memory::GuestAddress;

/// Boot GDT (null, code, data, TSS: 4 × 8 bytes). Low in conventional memory, above the
/// real-mode IVT (0..0x400) and BIOS data area (0x400..0x500) a legacy guest may look at.
pub const BOOT_GDT_START: u64 = 0x500;
/// Boot IDT: a single empty entry right after the 32-byte GDT. The kernel installs its own
/// IDT before enabling interrupts; this one only has to be a valid table.
pub const BOOT_IDT_START: u64 = 0x520;
/// Linux `boot_params` ("zero page", 4 KiB); RSI points here at the 64-bit entry. Same
/// address as Firecracker and Cloud Hypervisor, below the boot stack.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial RSP/RBP: the stack grows down from just below the page tables, above the zero
/// page, so early pushes never clobber either.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 table; CR3 at entry. Its first entry points at [`PDPTE_START`].
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table; its first entry points at [`PDE_START`].
pub const PDPTE_START: u64 = 0xa000;
/// Page directory: 512 × 2 MiB pages identity-mapping the first 1 GiB.
pub const PDE_START: u64 = 0xb000;
/// Kernel command line; Linux reads it through `boot_params.hdr.cmd_line_ptr`. Above the
/// page tables, far below the EBDA, with room for any command line Linux accepts.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Command-line limit (bytes, NUL included) when the kernel does not state one, e.g. an
/// ELF vmlinux, which has no setup header. Linux's x86 `COMMAND_LINE_SIZE` is 2048.
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Extended BIOS data area: the last KiB of the 640 KiB of conventional memory. Linux
/// scans it (639 KiB..640 KiB) for the MP floating pointer.
pub const EBDA_START: u64 = 0x9_fc00;
/// MP table (floating pointer followed by the configuration table), in the EBDA so that
/// Linux's scan finds it; [`EBDA_START`]..[`HIMEM_START`] is reserved in the e820 map.
pub const MPTABLE_START: u64 = EBDA_START;
/// Start of high memory (1 MiB): the kernel is loaded here and up. Below it lie the
/// legacy VGA hole and BIOS ROM area, reported as reserved.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap (3 GiB): devices, the IOAPIC and the LAPIC live between
/// here and 4 GiB ([`crate::platform`]), so RAM stops here and resumes at [`MMIO_GAP_END`].
pub const MMIO_GAP_START: u64 = 0xC000_0000;
/// End of the 32-bit MMIO gap (4 GiB); RAM above the gap starts here.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// KVM's TSS area (3 pages, needed by VMX for real-mode emulation), placed in the MMIO
/// gap just below the BIOS area so it never overlaps guest RAM.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// KVM's identity-map page (1 page), just below [`KVM_TSS_ADDRESS`], also in the gap.
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
/// ACPI root system description pointer: in the BIOS read-only area 0xE0000..0x100000,
/// which Linux scans (16-byte steps) for "RSD PTR " when no firmware hands it the address.
/// The e820 map reserves it ([`EBDA_START`]..[`HIMEM_START`]), so the tables stay intact.
pub const ACPI_RSDP_START: u64 = 0xE_0000;
/// ACPI tables (DSDT, FADT, MADT, XSDT, in that order), right after the RSDP's 36 bytes.
pub const ACPI_TABLES_START: u64 = 0xE_0100;
/// End (exclusive) of the ACPI table area: 60 KiB from the RSDP (the tables of 16 vCPUs
/// and 19 virtio devices take under 4 KiB), then the VM generation ID's page.
pub const ACPI_TABLES_END: u64 = 0xE_F000;
/// The VM generation ID (16 bytes, [`crate::vmgenid`]): in the reserved BIOS area
/// ([`EBDA_START`]..[`HIMEM_START`] in the e820 map), so the guest never uses it as RAM,
/// and below 0xF0000, where Linux scans for the MP floating pointer.
pub const VMGENID_START: u64 = 0xE_F000;
// The fixed boot structures must not overlap one another; checked at compile time.
const _: () = {
    assert!(BOOT_GDT_START + 4 * 8 <= BOOT_IDT_START);
    assert!(BOOT_IDT_START + 8 <= ZERO_PAGE_START);
    assert!(ZERO_PAGE_START + 4096 <= BOOT_STACK_POINTER);
    assert!(BOOT_STACK_POINTER < PML4_START);
    assert!(PDE_START + 4096 <= CMDLINE_START);
    assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= EBDA_START);
    assert!(KVM_IDENTITY_MAP_ADDRESS + 4096 <= KVM_TSS_ADDRESS);
    assert!(
        MMIO_GAP_START <= KVM_IDENTITY_MAP_ADDRESS && KVM_TSS_ADDRESS + 3 * 4096 <= MMIO_GAP_END
    );
    assert!(MPTABLE_START < ACPI_RSDP_START && ACPI_RSDP_START + 36 <= ACPI_TABLES_START);
    assert!(ACPI_TABLES_END <= VMGENID_START && VMGENID_START + 16 <= 0xF_0000);
};

/// End (exclusive) of the RAM below the MMIO gap for a guest of `mem_bytes` bytes.
pub fn low_ram_end(mem_bytes: u64) -> u64 {
    mem_bytes.min(MMIO_GAP_START)
}

/// Guest RAM ranges for a guest of `mem_bytes` bytes: RAM below [`MMIO_GAP_START`] and,
/// if it does not fit there, the rest from [`MMIO_GAP_END`]. One range when it fits.
/// The result feeds `GuestMemoryMmap::from_ranges`.
pub fn ram_ranges(mem_bytes: u64) -> Vec<(GuestAddress, usize)> {
    let low = low_ram_end(mem_bytes);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    let high = mem_bytes - low;
    if high > 0 {
        ranges.push((GuestAddress(MMIO_GAP_END), high as usize));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn ram_fitting_below_the_gap_is_one_range() {
        assert_eq!(
            ram_ranges(512 * MIB),
            vec![(GuestAddress(0), (512 * MIB) as usize)]
        );
        assert_eq!(ram_ranges(3 * GIB).len(), 1);
    }

    #[test]
    fn ram_larger_than_3g_continues_above_4g() {
        let ranges = ram_ranges(5 * GIB);
        assert_eq!(
            ranges,
            vec![
                (GuestAddress(0), (3 * GIB) as usize),
                (GuestAddress(MMIO_GAP_END), (2 * GIB) as usize),
            ]
        );
    }

    #[test]
    fn low_ram_end_stops_at_the_mmio_gap() {
        assert_eq!(low_ram_end(256 * MIB), 256 * MIB);
        assert_eq!(low_ram_end(8 * GIB), MMIO_GAP_START);
    }
}
