//! The e820 memory map the guest kernel is told about through the zero page.

use crate::layout::{low_ram_end, EBDA_START, HIMEM_START, MMIO_GAP_END, MMIO_GAP_START};

/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved, not to be used as RAM.
pub const E820_RESERVED: u32 = 2;

/// One e820 map entry: `size` bytes from `addr`, of type `kind` ([`E820_RAM`] or
/// [`E820_RESERVED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Guest physical start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Entry type.
    pub kind: u32,
}

impl E820Entry {
    fn new(start: u64, end: u64, kind: u32) -> Self {
        E820Entry {
            addr: start,
            size: end - start,
            kind,
        }
    }
}

/// The e820 map for a guest of `mem_bytes` bytes, in address order:
/// RAM [0, EBDA), reserved [EBDA, 1 MiB) (EBDA, VGA hole, BIOS ROM; holds the MP table),
/// RAM [1 MiB, low RAM end), reserved MMIO gap [3 GiB, 4 GiB), RAM above 4 GiB if any.
pub fn e820_map(mem_bytes: u64) -> Vec<E820Entry> {
    let low_end = low_ram_end(mem_bytes);
    let mut map = vec![
        E820Entry::new(0, low_end.min(EBDA_START), E820_RAM),
        E820Entry::new(EBDA_START, HIMEM_START, E820_RESERVED),
    ];
    if low_end > HIMEM_START {
        map.push(E820Entry::new(HIMEM_START, low_end, E820_RAM));
    }
    map.push(E820Entry::new(MMIO_GAP_START, MMIO_GAP_END, E820_RESERVED));
    let high = mem_bytes - low_end;
    if high > 0 {
        map.push(E820Entry::new(MMIO_GAP_END, MMIO_GAP_END + high, E820_RAM));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn ram_total(map: &[E820Entry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum()
    }

    #[test]
    fn e820_small_guest_has_low_ram_reserved_bios_area_and_high_ram() {
        let map = e820_map(256 * MIB);
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: EBDA_START,
                kind: E820_RAM
            }
        );
        assert_eq!(map[1].addr, EBDA_START);
        assert_eq!(map[1].addr + map[1].size, HIMEM_START);
        assert_eq!(map[1].kind, E820_RESERVED);
        assert_eq!(
            map[2],
            E820Entry {
                addr: HIMEM_START,
                size: 255 * MIB,
                kind: E820_RAM
            }
        );
        assert_eq!(map.len(), 4, "no RAM above 4 GiB: {map:?}");
    }

    #[test]
    fn e820_has_gap_below_4g_when_memory_exceeds_3g() {
        let map = e820_map(4 * GIB);
        let gap = map
            .iter()
            .find(|e| e.addr == MMIO_GAP_START)
            .expect("gap entry");
        assert_eq!(gap.kind, E820_RESERVED);
        assert_eq!(gap.size, MMIO_GAP_END - MMIO_GAP_START);
        let high = map.last().unwrap();
        assert_eq!(
            *high,
            E820Entry {
                addr: MMIO_GAP_END,
                size: GIB,
                kind: E820_RAM
            }
        );
        assert!(map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .all(|e| { e.addr + e.size <= MMIO_GAP_START || e.addr >= MMIO_GAP_END }));
    }

    #[test]
    fn e820_ram_adds_up_to_guest_memory_minus_the_bios_area() {
        for mem in [128 * MIB, 3 * GIB, 6 * GIB] {
            assert_eq!(ram_total(&e820_map(mem)), mem - (HIMEM_START - EBDA_START));
        }
    }

    #[test]
    fn e820_entries_are_sorted_and_disjoint() {
        let map = e820_map(6 * GIB);
        for pair in map.windows(2) {
            assert!(pair[0].addr + pair[0].size <= pair[1].addr, "{pair:?}");
        }
    }
}
