/* Test `blkswap`: the first virtio-blk's backing file is replaced by the host while the
 * guest runs (PATCH /drives/{id} after boot, tests/api_drive_swap.rs). The guest reads
 * sector 0 and the capacity, prints `vmmtest: blkswap ready`, then waits (sleeping in hlt,
 * polling ConfigGeneration every 20 ms, up to 20 s) for the configuration change, checks
 * that InterruptStatus shows it (bit 1, VIRTIO_MMIO_INT_CONFIG) and that its interrupt
 * came, and reads the capacity and sector 0 again.
 * Facts: blkswap_capacity_before, blkswap_byte_before (first byte of sector 0),
 * blkswap_generation_before, blkswap_generation_after, blkswap_int_status,
 * blkswap_config_irqs, blkswap_capacity_after, blkswap_byte_after. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define SWAP_SECTOR 512
#define SWAP_POLL_US 20000
#define SWAP_POLLS 1000 /* 20 s: the host PATCHes once it sees `ready` */
#define VIRTIO_MMIO_INT_CONFIG 0x2

static struct vq_mem swap_ring;
static u8 swap_data[SWAP_SECTOR] __attribute__((aligned(512)));

static int read_first_byte(struct test *t, struct vq *q, const char *when) {
    memset(swap_data, 0, sizeof(swap_data));
    int st = blk_request(q, VIRTIO_BLK_T_IN, 0, swap_data, SWAP_SECTOR, 1, 0);
    check(t, st == VIRTIO_BLK_S_OK, "read of sector 0 %s: status %d", when, st);
    return st == VIRTIO_BLK_S_OK ? swap_data[0] : -1;
}

void test_blkswap(struct test *t) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_BLOCK, 0);
    check(t, d != NULL, "no virtio-blk device on the command line");
    if (!d) return;
    struct vq q;
    const char *why;
    if (blk_init(d, &q, &swap_ring, &why)) {
        check(t, 0, "init: %s (status 0x%x)", why, virtio_status(d));
        return;
    }
    lapic_enable();
    u8 vector = (u8)(VEC_VIRTIO_BASE + d->irq);
    virtio_route_irq(d, vector);
    kprintf("vmmtest: fact blkswap_capacity_before=%lu\n", virtio_config64(d, VIRTIO_BLK_CFG_CAPACITY));
    kprintf("vmmtest: fact blkswap_byte_before=%d\n", read_first_byte(t, &q, "before"));
    virtio_ack_interrupt(d);
    u32 generation = virtio_read32(d, VIRTIO_MMIO_CONFIG_GENERATION);
    kprintf("vmmtest: fact blkswap_generation_before=%u\n", generation);
    u32 irqs_before = irq_count[vector];
    kprintf("vmmtest: blkswap ready\n");

    u32 now = generation;
    for (u32 i = 0; i < SWAP_POLLS && now == generation; i++) {
        sleep_halted(SWAP_POLL_US);
        now = virtio_read32(d, VIRTIO_MMIO_CONFIG_GENERATION);
    }
    kprintf("vmmtest: fact blkswap_generation_after=%u\n", now);
    check(t, now != generation, "ConfigGeneration stayed %u", generation);
    /* The interrupt is raised right after the generation moves: give it one more tick. */
    if (irq_count[vector] == irqs_before) sleep_halted(SWAP_POLL_US);
    u32 status = virtio_ack_interrupt(d);
    kprintf("vmmtest: fact blkswap_int_status=%u\n", status);
    kprintf("vmmtest: fact blkswap_config_irqs=%u\n", irq_count[vector] - irqs_before);
    check(t, status & VIRTIO_MMIO_INT_CONFIG, "InterruptStatus 0x%x lacks the config change", status);
    kprintf("vmmtest: fact blkswap_capacity_after=%lu\n", virtio_config64(d, VIRTIO_BLK_CFG_CAPACITY));
    kprintf("vmmtest: fact blkswap_byte_after=%d\n", read_first_byte(t, &q, "after"));
    ioapic_mask(d->irq);
    virtio_reset(d);
}
