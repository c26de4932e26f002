/* Tests `blk` (the first virtio-blk device: capacity, read, write, FLUSH, GET_ID, and its
 * interrupt through the IOAPIC), `blkro` (the second one, attached read-only: a write
 * fails with IOERR or UNSUPP, a read works) and `blkrate` (reads from the first one, which
 * the host rate limits and times). The host built the disk images and checks the hashes
 * and what landed on disk. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define SECTOR 512
#define REQ_TIMEOUT_US 4000000
/* FLUSH is an fdatasync of the image: on a busy host disk it has taken over 2 s. */
#define FLUSH_TIMEOUT_US 4000000
#define WRITE_SECTOR 8
#define RO_WRITE_SECTOR 1
#define BLK_ID_BYTES 20
static const char write_pattern[] = "vmm-blk-write-test";

static struct vq_mem blk_ring;
static u8 blk_data[4096] __attribute__((section(".noinit"), aligned(4096)));
static struct blk_req_hdr blk_hdr __attribute__((aligned(16)));
static volatile u8 blk_status_byte;

int blk_init(struct virtio_dev *d, struct vq *q, struct vq_mem *ring, const char **why) {
    if (virtio_begin_init(d, VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO, why)) return -1;
    if (virtq_setup(d, q, 0, ring, why)) return -1;
    virtio_driver_ok(d);
    u32 status = virtio_status(d);
    if (!(status & VIRTIO_STATUS_DRIVER_OK) || (status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED))) {
        *why = "device did not take DRIVER_OK";
        return -1;
    }
    return 0;
}

int blk_submit(struct vq *q, u32 type, u64 sector, void *data, u32 len, int device_writes) {
    blk_hdr.type = type;
    blk_hdr.reserved = 0;
    blk_hdr.sector = sector;
    blk_status_byte = 0xff;
    struct vbuf bufs[3] = {{(u64)&blk_hdr, sizeof(blk_hdr), 0}, {(u64)data, len, device_writes},
                           {(u64)&blk_status_byte, 1, 1}};
    int n = 3;
    if (!data) {
        bufs[1] = bufs[2];
        n = 2;
    }
    int head = vq_add(q, bufs, n);
    if (head >= 0) vq_kick(q);
    return head;
}

int blk_request(struct vq *q, u32 type, u64 sector, void *data, u32 len, int device_writes, int irqs_on) {
    if (blk_submit(q, type, sector, data, len, device_writes) < 0) return -2;
    u32 used_len, timeout = type == VIRTIO_BLK_T_FLUSH ? FLUSH_TIMEOUT_US : REQ_TIMEOUT_US;
    if (vq_wait_used(q, &used_len, timeout, irqs_on) < 0) return -1;
    virtio_ack_interrupt(q->dev);
    return blk_status_byte;
}

/* The first read waits, interrupts on, for both its used entry and the device's
 * interrupt (edge, through the IOAPIC), the interrupt for at most IRQ_WAIT_US: a poll can
 * see the used entry before the irqfd's interrupt is delivered. Returns the status byte,
 * -1 on timeout; *irq_us is when the interrupt came (µs after the notify) or -1. */
/* Generous: on a loaded host the irqfd injection (a kernel work item) can be late. */
#define IRQ_WAIT_US 3000000
static int blk_request_with_irq(struct vq *q, u8 vector, void *data, u32 len, i64 *irq_us) {
    u32 before = irq_count[vector];
    *irq_us = -1;
    if (blk_submit(q, VIRTIO_BLK_T_IN, 0, data, len, 1) < 0) return -2;
    int head = -1;
    lapic_clock_start();
    sti();
    for (;;) {
        if (head < 0) head = vq_get_used(q, NULL);
        if (*irq_us < 0 && irq_count[vector] != before) *irq_us = lapic_clock_us();
        u32 now = lapic_clock_us();
        if ((head >= 0 && (*irq_us >= 0 || now >= IRQ_WAIT_US)) || now >= REQ_TIMEOUT_US) break;
        pause();
    }
    cli();
    lapic_clock_stop();
    if (*irq_us < 0) {
        /* Where did it stop? The device's InterruptStatus (did it raise?), the pin's
         * redirection entry, and the vector's LAPIC IRR and ISR bits. */
        u32 bit = 1u << (vector % 32), reg = 0x10 * (vector / 32);
        kprintf("vmmtest: fact blk_irq_lost=int_status:0x%x redir:0x%x irr:%d isr:%d\n",
                virtio_read32(q->dev, VIRTIO_MMIO_INTERRUPT_STATUS), ioapic_read(0x10 + 2 * q->dev->irq),
                (lapic_read(0x200 + reg) & bit) != 0, (lapic_read(0x100 + reg) & bit) != 0);
    }
    virtio_ack_interrupt(q->dev);
    return head >= 0 ? blk_status_byte : -1;
}

static void fill_write_pattern(u8 *p, usize n) {
    usize plen = sizeof(write_pattern) - 1;
    for (usize i = 0; i < n; i++) p[i] = (u8)write_pattern[i % plen];
}

void test_blk(struct test *t) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_BLOCK, 0);
    check(t, d != NULL, "no virtio-blk device on the command line (%d virtio devices)", virtio_device_count());
    if (!d) return;
    struct vq q;
    const char *why;
    if (blk_init(d, &q, &blk_ring, &why)) {
        check(t, 0, "init: %s (status 0x%x)", why, virtio_status(d));
        return;
    }
    check(t, (d->accepted & ~(VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO)) == 0,
          "accepted features 0x%lx", d->accepted);
    u8 vector = (u8)(VEC_VIRTIO_BASE + d->irq);
    u32 irqs_before = irq_count[vector];
    virtio_route_irq(d, vector);

    u64 capacity = virtio_config64(d, VIRTIO_BLK_CFG_CAPACITY);
    kprintf("vmmtest: fact blk_capacity=%lu\n", capacity);
    check(t, capacity > WRITE_SECTOR, "capacity %lu sectors is too small for the test", capacity);

    /* Read sectors 0..7. */
    memset(blk_data, 0, sizeof(blk_data));
    i64 irq_us;
    int st = blk_request_with_irq(&q, vector, blk_data, sizeof(blk_data), &irq_us);
    kprintf("vmmtest: fact blk_read_status=%d\n", st);
    kprintf("vmmtest: fact blk_irq_us=%ld\n", irq_us);
    check(t, st == VIRTIO_BLK_S_OK, "read of sectors 0..7: status %d", st);
    if (st == VIRTIO_BLK_S_OK) kprintf("vmmtest: fact blk_read_fnv1a=0x%08x\n", fnv1a32(blk_data, sizeof(blk_data)));

    /* Write the pattern to sector 8, FLUSH. */
    fill_write_pattern(blk_data, SECTOR);
    st = blk_request(&q, VIRTIO_BLK_T_OUT, WRITE_SECTOR, blk_data, SECTOR, 0, 1);
    kprintf("vmmtest: fact blk_write_status=%d\n", st);
    check(t, st == VIRTIO_BLK_S_OK, "write of sector %d: status %d", WRITE_SECTOR, st);
    if (d->accepted & VIRTIO_BLK_F_FLUSH) {
        st = blk_request(&q, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 0, 1);
        kprintf("vmmtest: fact blk_flush_status=%d\n", st);
        check(t, st == VIRTIO_BLK_S_OK, "FLUSH: status %d", st);
    } else {
        check(t, 0, "device does not offer VIRTIO_BLK_F_FLUSH (features 0x%lx)", d->features);
    }

    /* Read sector 8 back. */
    memset(blk_data, 0, SECTOR);
    st = blk_request(&q, VIRTIO_BLK_T_IN, WRITE_SECTOR, blk_data, SECTOR, 1, 1);
    int same = st == VIRTIO_BLK_S_OK;
    usize plen = sizeof(write_pattern) - 1;
    for (usize i = 0; same && i < SECTOR; i++) same = blk_data[i] == (u8)write_pattern[i % plen];
    check(t, same, "sector %d does not read back the pattern (status %d)", WRITE_SECTOR, st);

    /* GET_ID: up to 20 bytes, NUL terminated when shorter. */
    memset(blk_data, 0, BLK_ID_BYTES + 1);
    st = blk_request(&q, VIRTIO_BLK_T_GET_ID, 0, blk_data, BLK_ID_BYTES, 1, 1);
    kprintf("vmmtest: fact blk_id_status=%d\n", st);
    check(t, st == VIRTIO_BLK_S_OK, "GET_ID: status %d", st);
    if (st == VIRTIO_BLK_S_OK) {
        blk_data[BLK_ID_BYTES] = 0;
        for (int i = 0; i < BLK_ID_BYTES && blk_data[i]; i++)
            if (blk_data[i] < 0x20 || blk_data[i] > 0x7e) blk_data[i] = '?';
        kprintf("vmmtest: fact blk_id=%s\n", (const char *)blk_data);
    }

    /* A request past the end of the disk. */
    st = blk_request(&q, VIRTIO_BLK_T_IN, capacity, blk_data, SECTOR, 1, 1);
    kprintf("vmmtest: fact blk_past_end_status=%d\n", st);
    check(t, st == VIRTIO_BLK_S_IOERR, "read past the end: status %d, want IOERR", st);

    u32 irqs = irq_count[vector] - irqs_before;
    ioapic_mask(d->irq);
    kprintf("vmmtest: fact blk_irqs=%u\n", irqs);
    check(t, irqs >= 1, "no interrupt from the device on IOAPIC pin %u", d->irq);
    virtio_reset(d);
}

void test_blkro(struct test *t) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_BLOCK, 1);
    check(t, d != NULL, "no second virtio-blk device");
    if (!d) return;
    struct vq q;
    const char *why;
    if (blk_init(d, &q, &blk_ring, &why)) {
        check(t, 0, "init: %s (status 0x%x)", why, virtio_status(d));
        return;
    }
    kprintf("vmmtest: fact blkro_feature_ro=%d\n", (d->accepted & VIRTIO_BLK_F_RO) ? 1 : 0);
    memset(blk_data, 0, SECTOR);
    int st = blk_request(&q, VIRTIO_BLK_T_IN, 0, blk_data, SECTOR, 1, 0);
    kprintf("vmmtest: fact blkro_read_status=%d\n", st);
    check(t, st == VIRTIO_BLK_S_OK, "read: status %d", st);
    if (st == VIRTIO_BLK_S_OK) kprintf("vmmtest: fact blkro_read_fnv1a=0x%08x\n", fnv1a32(blk_data, SECTOR));

    fill_write_pattern(blk_data, SECTOR);
    st = blk_request(&q, VIRTIO_BLK_T_OUT, RO_WRITE_SECTOR, blk_data, SECTOR, 0, 0);
    kprintf("vmmtest: fact blkro_write_status=%d\n", st);
    check(t, st == VIRTIO_BLK_S_IOERR || st == VIRTIO_BLK_S_UNSUPP, "write to a read-only disk: status %d", st);
    virtio_reset(d);
}

/* `blkrate`: BLKRATE_READS reads of sectors 0..7 (4 KiB) from the first virtio-blk, one
 * after the other, between the lines `vmmtest: blkrate start` and `vmmtest: blkrate done`,
 * which the host times: it limited the disk's bandwidth, so the reads wait in the device
 * (each up to REQ_TIMEOUT_US). A handful of requests, polled: little guest work. */
#define BLKRATE_READS 6
void test_blkrate(struct test *t) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_BLOCK, 0);
    check(t, d != NULL, "no virtio-blk device on the command line");
    if (!d) return;
    struct vq q;
    const char *why;
    if (blk_init(d, &q, &blk_ring, &why)) {
        check(t, 0, "init: %s (status 0x%x)", why, virtio_status(d));
        return;
    }
    int done = 0;
    kprintf("vmmtest: blkrate start\n");
    for (int i = 0; i < BLKRATE_READS; i++) {
        int st = blk_request(&q, VIRTIO_BLK_T_IN, 0, blk_data, sizeof(blk_data), 1, 0);
        if (st != VIRTIO_BLK_S_OK) {
            check(t, 0, "read %d of %d: status %d", i + 1, BLKRATE_READS, st);
            break;
        }
        done++;
    }
    kprintf("vmmtest: blkrate done\n");
    kprintf("vmmtest: fact blkrate_reads=%d\n", done);
    if (done) kprintf("vmmtest: fact blkrate_fnv1a=0x%08x\n", fnv1a32(blk_data, sizeof(blk_data)));
    virtio_reset(d);
}
