/* Test `balloon`: the virtio-balloon device (§5.5). Touches a 4 MiB buffer (one write per
 * 4 KiB page), gives its 1024 page frames to the host through the inflate queue (256 PFNs
 * per buffer) and sets `actual`; after a pause deflates them again and checks that the
 * host dropped their contents (they read back as zero). Each phase prints a line and
 * pauses, so that the host test can sample the VMM's RSS:
 *   vmmtest: balloon ready     (baseline)
 *   vmmtest: balloon touched   (+4 MiB)
 *   vmmtest: balloon inflated  (the 4 MiB returned to the host) */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define PAGE 4096
#define BALLOON_BYTES (4UL << 20)
#define BALLOON_PAGES (BALLOON_BYTES / PAGE)
#define PFNS_PER_BUF 256
#define INFLATE_QUEUE 0
#define DEFLATE_QUEUE 1
#define CFG_NUM_PAGES 0
#define CFG_ACTUAL 4
#define PHASE_PAUSE_US 400000
#define INFLATED_PAUSE_US 1000000
#define USED_TIMEOUT_US 500000
#define TOUCH_MAGIC 0xa5

/* Page aligned and not zeroed by head.S (NOLOAD, not in .bss): its pages stay untouched,
 * and so out of the VMM's RSS, until this test writes them. (Not 2 MiB aligned: that
 * alignment would pad the ELF file, and so the vmm binary that embeds it, by up to 2 MiB.) */
static u8 balloon_mem[BALLOON_BYTES] __attribute__((section(".noinit"), aligned(4096)));
static u32 pfns[BALLOON_PAGES] __attribute__((section(".noinit"), aligned(4096)));
static struct vq_mem infl_ring, defl_ring;

/* Sends all PFNs through q, PFNS_PER_BUF per buffer; returns how many the device used. */
static u32 send_pfns(struct vq *q) {
    u32 used = 0, queued = 0;
    for (u32 i = 0; i < BALLOON_PAGES; i += PFNS_PER_BUF) {
        struct vbuf b = {(u64)&pfns[i], PFNS_PER_BUF * sizeof(u32), 0};
        if (vq_add(q, &b, 1) < 0) break;
        queued++;
    }
    vq_kick(q);
    while (used < queued && vq_wait_used(q, NULL, USED_TIMEOUT_US, 0) >= 0) used++;
    return used * PFNS_PER_BUF;
}

void test_balloon(struct test *t) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_BALLOON, 0);
    check(t, d != NULL, "no virtio-balloon device on the command line");
    if (!d) return;
    struct vq infl, defl;
    const char *why;
    if (virtio_begin_init(d, 0, &why) || virtq_setup(d, &infl, INFLATE_QUEUE, &infl_ring, &why) ||
        virtq_setup(d, &defl, DEFLATE_QUEUE, &defl_ring, &why)) {
        check(t, 0, "init: %s (status 0x%x)", why, virtio_status(d));
        return;
    }
    virtio_driver_ok(d);
    u32 status = virtio_status(d);
    check(t, !(status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)), "status 0x%x after DRIVER_OK", status);
    kprintf("vmmtest: fact balloon_features=0x%lx\n", d->features);
    kprintf("vmmtest: fact balloon_target_pages=%u\n", virtio_config32(d, CFG_NUM_PAGES));
    kprintf("vmmtest: balloon ready\n");
    delay_us(PHASE_PAUSE_US);

    for (u32 i = 0; i < BALLOON_PAGES; i++) {
        balloon_mem[i * PAGE] = TOUCH_MAGIC;
        pfns[i] = (u32)(((u64)balloon_mem >> 12) + i);
    }
    kprintf("vmmtest: fact balloon_touched_kib=%lu\n", BALLOON_BYTES / 1024);
    kprintf("vmmtest: balloon touched\n");
    delay_us(PHASE_PAUSE_US);

    u32 inflated = send_pfns(&infl);
    virtio_config_write32(d, CFG_ACTUAL, inflated);
    kprintf("vmmtest: fact balloon_inflated_pages=%u\n", inflated);
    kprintf("vmmtest: fact balloon_actual=%u\n", virtio_config32(d, CFG_ACTUAL));
    check(t, inflated == BALLOON_PAGES, "the device used %u of %lu inflated pages", inflated, BALLOON_PAGES);
    kprintf("vmmtest: balloon inflated\n");
    delay_us(INFLATED_PAUSE_US);

    u32 deflated = send_pfns(&defl);
    virtio_config_write32(d, CFG_ACTUAL, 0);
    kprintf("vmmtest: fact balloon_deflated_pages=%u\n", deflated);
    check(t, deflated == BALLOON_PAGES, "the device used %u of %lu deflated pages", deflated, BALLOON_PAGES);
    u32 zeroed = 0;
    for (u32 i = 0; i < BALLOON_PAGES; i++) zeroed += ((volatile u8 *)balloon_mem)[i * PAGE] == 0;
    kprintf("vmmtest: fact balloon_zeroed_pages=%u\n", zeroed);
    status = virtio_status(d);
    check(t, !(status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)), "status 0x%x at the end", status);
    virtio_reset(d);
}

/* `balloonstats`: a driver that accepts VIRTIO_BALLOON_F_STATS_VQ, as Linux's does, and
 * sets up the statistics queue: the device's activation (on the vCPU that writes
 * DRIVER_OK) then makes and arms its statistics timer. Reports the status it reached. */
#define STATS_QUEUE 2
#define VIRTIO_BALLOON_F_STATS_VQ (1UL << 1)
static struct vq_mem stats_ring, infl2_ring, defl2_ring;

void test_balloonstats(struct test *t) {
    const char *why = "";
    struct virtio_dev *d = virtio_find(VIRTIO_ID_BALLOON, 0);
    check(t, d != 0, "no virtio-balloon device on the command line");
    if (!d) return;
    struct vq infl, defl, stats;
    if (virtio_begin_init(d, VIRTIO_BALLOON_F_STATS_VQ, &why) ||
        virtq_setup(d, &infl, INFLATE_QUEUE, &infl2_ring, &why) ||
        virtq_setup(d, &defl, DEFLATE_QUEUE, &defl2_ring, &why) ||
        virtq_setup(d, &stats, STATS_QUEUE, &stats_ring, &why)) {
        check(t, 0, "%s", why);
        return;
    }
    virtio_driver_ok(d);
    u32 status = virtio_status(d);
    kprintf("vmmtest: fact balloonstats_status=0x%x\n", status);
    check(t, (status & VIRTIO_STATUS_DRIVER_OK) && !(status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)),
          "status 0x%x after DRIVER_OK", status);
    virtio_reset(d);
}
