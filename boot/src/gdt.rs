//! The boot GDT and IDT, and the KVM segment registers derived from the GDT.
//!
//! A GDT descriptor packs `flags` (access byte in bits 40..48, G/DB/L/AVL in 52..56), a
//! 32-bit base (bits 16..40 and 56..64) and a 20-bit limit (bits 0..16 and 48..52).

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{BOOT_GDT_START, BOOT_IDT_START};
use crate::BootError;

/// GDT index of the 64-bit code segment (selector 0x08).
pub const CODE_INDEX: u8 = 1;
/// GDT index of the data segment (selector 0x10).
pub const DATA_INDEX: u8 = 2;
/// GDT index of the TSS (selector 0x18).
pub const TSS_INDEX: u8 = 3;

/// Code: present, DPL 0, execute/read, accessed; G = 1, L = 1 (64-bit).
pub const CODE_FLAGS: u16 = 0xa09b;
/// Data: present, DPL 0, read/write, accessed; G = 1, DB = 1.
pub const DATA_FLAGS: u16 = 0xc093;
/// TSS: present, 32/64-bit busy TSS; G = 1.
pub const TSS_FLAGS: u16 = 0x808b;

/// The boot GDT: null, code, data, TSS; base 0, limit 0xfffff (4 GiB with G = 1).
pub const BOOT_GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(CODE_FLAGS, 0, 0xfffff),
    gdt_entry(DATA_FLAGS, 0, 0xfffff),
    gdt_entry(TSS_FLAGS, 0, 0xfffff),
];

/// Encodes a GDT descriptor.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    ((base & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

fn bits(entry: u64, shift: u32, width: u32) -> u8 {
    ((entry >> shift) & ((1 << width) - 1)) as u8
}

fn base_of(entry: u64) -> u64 {
    ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff)
}

fn limit_of(entry: u64) -> u32 {
    let raw = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    // With G set the limit counts 4 KiB pages; KVM wants it in bytes.
    if bits(entry, 55, 1) == 1 {
        (raw << 12) | 0xfff
    } else {
        raw
    }
}

/// The KVM segment register for the descriptor `entry` at GDT index `table_index`.
pub fn kvm_segment_from_gdt(entry: u64, table_index: u8) -> kvm_segment {
    let present = bits(entry, 47, 1);
    kvm_segment {
        base: base_of(entry),
        limit: limit_of(entry),
        selector: u16::from(table_index) * 8,
        type_: bits(entry, 40, 4),
        present,
        dpl: bits(entry, 45, 2),
        db: bits(entry, 54, 1),
        s: bits(entry, 44, 1),
        l: bits(entry, 53, 1),
        g: bits(entry, 55, 1),
        avl: bits(entry, 52, 1),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Writes `table` at [`BOOT_GDT_START`].
pub fn write_gdt<M: GuestMemoryBackend>(mem: &M, table: &[u64]) -> Result<(), BootError> {
    for (i, entry) in table.iter().enumerate() {
        let addr = BOOT_GDT_START + (i * 8) as u64;
        mem.write_obj(*entry, GuestAddress(addr))
            .map_err(BootError::mem("boot GDT", addr))?;
    }
    Ok(())
}

/// Writes the single, empty boot IDT entry at [`BOOT_IDT_START`].
pub fn write_idt<M: GuestMemoryBackend>(mem: &M) -> Result<(), BootError> {
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(BootError::mem("boot IDT", BOOT_IDT_START))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn gdt_entry_encodes_base_limit_and_flags() {
        let entry = gdt_entry(0xa09b, 0x1234_5678, 0xabcde);
        assert_eq!(base_of(entry), 0x1234_5678);
        assert_eq!(entry & 0xffff, 0xbcde);
        assert_eq!((entry >> 48) & 0xf, 0xa);
        assert_eq!((entry >> 40) & 0xf0ff, 0xa09b);
    }

    #[test]
    fn gdt_code_segment_is_64bit() {
        let cs = kvm_segment_from_gdt(BOOT_GDT[1], CODE_INDEX);
        assert_eq!(cs.l, 1);
        assert_eq!(cs.db, 0, "L and D must not both be set");
        assert_eq!((cs.present, cs.s, cs.dpl, cs.type_), (1, 1, 0, 0xb));
        assert_eq!((cs.base, cs.limit, cs.g), (0, 0xffff_ffff, 1));
        assert_eq!(cs.selector, 0x08);
        assert_eq!(cs.unusable, 0);
    }

    #[test]
    fn gdt_data_and_tss_segments_match_their_descriptors() {
        let ds = kvm_segment_from_gdt(BOOT_GDT[2], DATA_INDEX);
        assert_eq!(
            (ds.type_, ds.db, ds.l, ds.s, ds.selector),
            (0x3, 1, 0, 1, 0x10)
        );
        let tr = kvm_segment_from_gdt(BOOT_GDT[3], TSS_INDEX);
        assert_eq!((tr.type_, tr.s, tr.present, tr.selector), (0xb, 0, 1, 0x18));
    }

    #[test]
    fn null_descriptor_is_unusable() {
        let null = kvm_segment_from_gdt(BOOT_GDT[0], 0);
        assert_eq!((null.present, null.unusable), (0, 1));
    }

    #[test]
    fn gdt_and_idt_are_written_at_their_layout_addresses() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        write_gdt(&mem, &BOOT_GDT).unwrap();
        mem.write_obj(u64::MAX, GuestAddress(BOOT_IDT_START))
            .unwrap();
        write_idt(&mem).unwrap();
        for (i, want) in BOOT_GDT.iter().enumerate() {
            let got: u64 = mem
                .read_obj(GuestAddress(BOOT_GDT_START + i as u64 * 8))
                .unwrap();
            assert_eq!(got, *want);
        }
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(BOOT_IDT_START)).unwrap(),
            0
        );
    }
}
