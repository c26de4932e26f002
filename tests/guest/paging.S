/* Page directory for the 3..4 GiB MMIO gap (boot timer, IOAPIC, LAPIC): 512 × 2 MiB
 * identity pages, uncached. It is built here, in .data, rather than filled at run time in
 * .bss, so that an AP started directly by the VMM can install it (paging.c) without
 * waiting for the BSP: both write the same PDPT entry. */

#define PD_FLAGS 0x9b   /* present | writable | PWT | PCD | PS (2 MiB page) */

    .data
    .balign 4096
    .globl mmio_gap_pd
mmio_gap_pd:
    .set i, 0
    .rept 512
    .quad 0xC0000000 + (i << 21) + PD_FLAGS
    .set i, i + 1
    .endr

    .section .note.GNU-stack, "", @progbits
