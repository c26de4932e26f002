/* The boot page tables identity-map only the first 1 GiB; the devices the tests talk to
 * (boot timer 0xC000_0000, IOAPIC, LAPIC) are in the 3..4 GiB MMIO gap. map_mmio_gap()
 * points PDPT[3] at mmio_gap_pd (paging.S: uncached 2 MiB pages) and flushes the TLB.
 * Safe to run on every CPU concurrently: each writes the same value. */
#include "guest.h"
#include "x86.h"

#define PTE_PRESENT 0x1UL
#define PTE_WRITABLE 0x2UL
#define PTE_ADDR_MASK 0x000ffffffffff000UL
#define PDPT_INDEX_3G 3

extern u64 mmio_gap_pd[512];

void map_mmio_gap(void) {
    u64 cr3 = read_cr3();
    volatile u64 *pml4 = (volatile u64 *)(cr3 & PTE_ADDR_MASK);
    volatile u64 *pdpt = (volatile u64 *)(pml4[0] & PTE_ADDR_MASK); /* 0xa000 at boot */
    pdpt[PDPT_INDEX_3G] = (u64)mmio_gap_pd | PTE_PRESENT | PTE_WRITABLE;
    write_cr3(cr3);
}
