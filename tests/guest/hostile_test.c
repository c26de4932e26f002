/* Test `hostile`: a broken driver against the first virtio-blk device. Each case submits
 * one malformed request (a descriptor loop, a header outside RAM, a 4 GiB buffer, a read
 * into a device-readable buffer, avail.idx 1000 ahead, a head past the table) or misuses
 * the transport (notify before setup and before DRIVER_OK, rings outside RAM, a queue
 * larger than QueueNumMax, a reset with requests in flight), then reports the Status
 * register (`fact hostile_<case>_status`, DEVICE_NEEDS_RESET is 0x40), what came back in
 * the used ring (`hostile_<case>_used`: the request's status byte, or `none`), and whether
 * a good request on the same queue still completes without a reset (`hostile_<case>_next`:
 * ok, fail, or needs_reset). Every case ends with a device reset and a fresh init, which
 * must give a working device (`hostile_<case>_reinit=ok`). At the end, another device
 * (virtio-rng) must still work and the disk must read after the resets. The VMM must
 * neither crash nor hang: the host checks that the summary line and the exit status come.
 * Descriptors and the available ring are written by hand here, not through virtq.c. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define SECTOR 512
#define CASE_TIMEOUT_US 300000
#define GOOD_TIMEOUT_US 300000
/* After a used entry comes back, how long the device may take to also flag NEEDS_RESET
 * (it returns a broken chain's buffers first, then stops the queue). */
#define SETTLE_US 20000
#define OUTSIDE_RAM 0x700000000000UL
#define LEN_4G 0xffffffffu
#define CANARY 0x5a
#define SCRATCH_BYTES 4096
/* Descriptors 0..7 for the malformed request, 8..10 for the good one after it. */
#define GOOD_DESC 8

static struct vq_mem hostile_ring;
static u8 data_buf[SECTOR] __attribute__((aligned(4096)));
/* The target of the 4 GiB buffer: the last page of the image (guest.ld puts .noinit.last
 * at the end), so that a device writing past the end of a buffer would hit only memory the
 * guest does not use. Checked for the canary afterwards. */
static u8 scratch[SCRATCH_BYTES] __attribute__((section(".noinit.last"), aligned(4096)));
static struct blk_req_hdr hdr, good_hdr;
static volatile u8 status_byte, good_status;

static struct virtio_dev *dev;
static struct vq q;

static void set_desc(u16 i, u64 addr, u32 len, u16 flags, u16 next) {
    volatile struct vring_desc *d = &q.mem->desc[i];
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

/* Puts head in the next available slot and publishes it (idx_extra more on top). */
static void publish(u16 head, u16 idx_extra) {
    volatile struct vq_mem *m = q.mem;
    m->avail_ring[q.avail_idx % q.size] = head;
    barrier();
    q.avail_idx = (u16)(q.avail_idx + 1 + idx_extra);
    m->avail_idx = q.avail_idx;
    barrier();
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static u32 last_used_len;

/* Waits for a used entry or NEEDS_RESET; returns the used entry's id (its length in
 * last_used_len), or -1. */
static int wait_outcome(u32 timeout_us, u32 *status) {
    volatile struct vq_mem *m = q.mem;
    int id = -1;
    lapic_clock_start();
    for (;;) {
        *status = virtio_status(dev);
        if (m->used_idx != q.last_used) {
            barrier();
            id = (int)m->used_ring[q.last_used % q.size].id;
            last_used_len = m->used_ring[q.last_used % q.size].len;
            q.last_used++;
            break;
        }
        if ((*status & VIRTIO_STATUS_NEEDS_RESET) || lapic_clock_us() >= timeout_us) break;
        pause();
    }
    lapic_clock_stop();
    *status = virtio_status(dev);
    return id;
}

/* wait_outcome for a malformed request: also gives the device time to flag NEEDS_RESET
 * after returning the chain. */
static int wait_bad_outcome(u32 *status) {
    int id = wait_outcome(CASE_TIMEOUT_US, status);
    if (!(*status & VIRTIO_STATUS_NEEDS_RESET)) {
        delay_us(SETTLE_US);
        *status = virtio_status(dev);
    }
    return id;
}

/* A read of sector 0 through descriptors GOOD_DESC.. on the current queue state. */
static int good_request(void) {
    good_hdr.type = VIRTIO_BLK_T_IN;
    good_hdr.reserved = 0;
    good_hdr.sector = 0;
    good_status = 0xff;
    set_desc(GOOD_DESC, (u64)&good_hdr, sizeof(good_hdr), VIRTQ_DESC_F_NEXT, GOOD_DESC + 1);
    set_desc(GOOD_DESC + 1, (u64)data_buf, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, GOOD_DESC + 2);
    set_desc(GOOD_DESC + 2, (u64)&good_status, 1, VIRTQ_DESC_F_WRITE, 0);
    publish(GOOD_DESC, 0);
    u32 status;
    for (int tries = 0; tries < 4; tries++) { /* skip a late used entry of the bad request */
        int id = wait_outcome(GOOD_TIMEOUT_US, &status);
        if (id == GOOD_DESC) return good_status == VIRTIO_BLK_S_OK;
        if (id < 0) return 0;
    }
    return 0;
}

static int reinit(void) {
    const char *why;
    if (blk_init(dev, &q, &hostile_ring, &why)) {
        kprintf("vmmtest: fact hostile_reinit_error=%s\n", why);
        return -1;
    }
    return 0;
}

static void header(u32 type, u64 sector) {
    hdr.type = type;
    hdr.reserved = 0;
    hdr.sector = sector;
    status_byte = 0xff;
}

/* Reports the outcome of a malformed request, probes the queue, resets and re-inits. */
static void finish_case(struct test *t, const char *name, int id, u32 status) {
    kprintf("vmmtest: fact hostile_%s_status=0x%02x\n", name, status);
    if (id >= 0) {
        kprintf("vmmtest: fact hostile_%s_used=%u\n", name, status_byte);
        kprintf("vmmtest: fact hostile_%s_used_len=%u\n", name, last_used_len);
    } else
        kprintf("vmmtest: fact hostile_%s_used=none\n", name);
    check(t, !(status & VIRTIO_STATUS_FAILED), "%s: Status 0x%x has FAILED", name, status);
    const char *next = "needs_reset";
    if (!(status & VIRTIO_STATUS_NEEDS_RESET)) next = good_request() ? "ok" : "fail";
    kprintf("vmmtest: fact hostile_%s_next=%s\n", name, next);
    int ok = reinit() == 0;
    if (ok) {
        q.avail_idx = 0;
        ok = good_request();
    }
    kprintf("vmmtest: fact hostile_%s_reinit=%s\n", name, ok ? "ok" : "fail");
    check(t, ok, "%s: the device does not work after a reset and re-init", name);
}

static void case_loop(struct test *t) {
    header(VIRTIO_BLK_T_IN, 0);
    set_desc(0, (u64)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
    set_desc(1, (u64)data_buf, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0); /* back to 0 */
    publish(0, 0);
    u32 status;
    int id = wait_bad_outcome(&status);
    finish_case(t, "loop", id, status);
}

static void case_oob_addr(struct test *t) {
    header(VIRTIO_BLK_T_IN, 0);
    set_desc(0, OUTSIDE_RAM, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
    set_desc(1, (u64)data_buf, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    set_desc(2, (u64)&status_byte, 1, VIRTQ_DESC_F_WRITE, 0);
    publish(0, 0);
    u32 status;
    int id = wait_bad_outcome(&status);
    check(t, id < 0 || status_byte != VIRTIO_BLK_S_OK, "oob_addr: header outside RAM got status OK");
    finish_case(t, "oob_addr", id, status);
}

static void case_len4g(struct test *t) {
    header(VIRTIO_BLK_T_IN, 0);
    memset(scratch, CANARY, sizeof(scratch));
    set_desc(0, (u64)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
    set_desc(1, (u64)scratch, LEN_4G, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    set_desc(2, (u64)&status_byte, 1, VIRTQ_DESC_F_WRITE, 0);
    publish(0, 0);
    u32 status;
    int id = wait_bad_outcome(&status);
    u32 changed = 0;
    for (u32 i = 0; i < sizeof(scratch); i++) changed += scratch[i] != CANARY;
    kprintf("vmmtest: fact hostile_len4g_scratch_changed=%u\n", changed);
    check(t, id < 0 || status_byte != VIRTIO_BLK_S_OK, "len4g: a 4 GiB read got status OK");
    finish_case(t, "len4g", id, status);
}

static void case_rowrite(struct test *t) {
    header(VIRTIO_BLK_T_IN, 0);
    memset(data_buf, CANARY, sizeof(data_buf));
    set_desc(0, (u64)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
    set_desc(1, (u64)data_buf, SECTOR, VIRTQ_DESC_F_NEXT, 2); /* device-readable only */
    set_desc(2, (u64)&status_byte, 1, VIRTQ_DESC_F_WRITE, 0);
    publish(0, 0);
    u32 status;
    int id = wait_bad_outcome(&status);
    int intact = 1;
    for (u32 i = 0; i < sizeof(data_buf); i++) intact &= data_buf[i] == CANARY;
    kprintf("vmmtest: fact hostile_rowrite_buffer_intact=%d\n", intact);
    check(t, intact, "rowrite: the device wrote into a device-readable buffer");
    check(t, id < 0 || status_byte != VIRTIO_BLK_S_OK, "rowrite: a read into a read-only buffer got status OK");
    finish_case(t, "rowrite", id, status);
}

static void case_idxjump(struct test *t) {
    header(VIRTIO_BLK_T_IN, 0);
    set_desc(0, (u64)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
    set_desc(1, (u64)data_buf, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    set_desc(2, (u64)&status_byte, 1, VIRTQ_DESC_F_WRITE, 0);
    publish(0, 1000); /* avail.idx moves 1001 entries on a 16-entry queue */
    u32 status;
    int id = wait_bad_outcome(&status);
    finish_case(t, "idxjump", id, status);
}

static void case_badhead(struct test *t) {
    header(VIRTIO_BLK_T_IN, 0);
    publish(0xffff, 0); /* a head index far past the descriptor table */
    u32 status;
    int id = wait_bad_outcome(&status);
    finish_case(t, "badhead", id, status);
}

/* QueueNotify with no queue set up, then a request queued and notified before DRIVER_OK:
 * the device must not use it until DRIVER_OK. */
static void case_early_notify(struct test *t) {
    const char *why;
    virtio_reset(dev);
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 7);
    u32 status_after_reset = virtio_status(dev);
    kprintf("vmmtest: fact hostile_early_notify_reset_status=0x%02x\n", status_after_reset);
    int used_early = 0;
    if (virtio_begin_init(dev, VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO, &why) ||
        virtq_setup(dev, &q, 0, &hostile_ring, &why)) {
        check(t, 0, "early_notify: init after the early notify: %s", why);
    } else {
        header(VIRTIO_BLK_T_IN, 0);
        set_desc(0, (u64)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
        set_desc(1, (u64)data_buf, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
        set_desc(2, (u64)&status_byte, 1, VIRTQ_DESC_F_WRITE, 0);
        publish(0, 0);
        delay_us(50000);
        used_early = q.mem->used_idx != 0;
        kprintf("vmmtest: fact hostile_early_notify_used_before_driver_ok=%d\n", used_early);
        check(t, !used_early, "early_notify: the device used a buffer before DRIVER_OK");
        virtio_driver_ok(dev);
        virtio_write32(dev, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    }
    u32 status;
    int id = used_early ? 0 : wait_outcome(CASE_TIMEOUT_US, &status);
    status = virtio_status(dev);
    finish_case(t, "early_notify", id, status);
}

/* A reset while requests are in flight: Status must read 0 (the worker stopped) within
 * the bound, and the device must work after a re-init. */
static void case_reset_inflight(struct test *t) {
    static struct blk_req_hdr hdrs[4];
    static volatile u8 statuses[4];
    for (u16 i = 0; i < 4; i++) {
        hdrs[i].type = VIRTIO_BLK_T_IN;
        hdrs[i].reserved = 0;
        hdrs[i].sector = 0;
        statuses[i] = 0xff;
        u16 base = (u16)(i * 3);
        set_desc(base, (u64)&hdrs[i], sizeof(hdrs[i]), VIRTQ_DESC_F_NEXT, (u16)(base + 1));
        set_desc((u16)(base + 1), (u64)scratch, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (u16)(base + 2));
        set_desc((u16)(base + 2), (u64)&statuses[i], 1, VIRTQ_DESC_F_WRITE, 0);
        publish(base, 0);
    }
    int reset_ok = virtio_reset(dev) == 0;
    kprintf("vmmtest: fact hostile_reset_inflight_reset=%s\n", reset_ok ? "ok" : "timeout");
    check(t, reset_ok, "reset_inflight: Status does not read 0 after a reset with requests in flight");
    int ok = reinit() == 0;
    if (ok) ok = good_request();
    kprintf("vmmtest: fact hostile_reset_inflight_reinit=%s\n", ok ? "ok" : "fail");
    check(t, ok, "reset_inflight: the device does not work after a reset and re-init");
}

/* Queue setup a device must refuse: rings outside guest RAM, or a size above QueueNumMax.
 * QueueReady and DRIVER_OK are written anyway, then a request is notified. */
static void case_bad_queue(struct test *t, const char *name, u64 desc_addr, int oversize) {
    const char *why;
    if (virtio_begin_init(dev, VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO, &why)) {
        check(t, 0, "%s: init: %s", name, why);
        return;
    }
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_SEL, 0);
    u32 max = virtio_read32(dev, VIRTIO_MMIO_QUEUE_NUM_MAX);
    memset(&hostile_ring, 0, sizeof(hostile_ring));
    q.mem = &hostile_ring;
    q.size = VQ_SIZE;
    q.avail_idx = q.last_used = 0;
    u64 avail = (u64)&hostile_ring.avail_flags, used = (u64)&hostile_ring.used_flags;
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_NUM, oversize ? max + 1 : VQ_SIZE);
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_DESC_LOW, (u32)desc_addr);
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_DESC_HIGH, (u32)(desc_addr >> 32));
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (u32)avail);
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (u32)used);
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
    virtio_write32(dev, VIRTIO_MMIO_QUEUE_READY, 1);
    kprintf("vmmtest: fact hostile_%s_queue_ready=%u\n", name, virtio_read32(dev, VIRTIO_MMIO_QUEUE_READY));
    virtio_driver_ok(dev);
    header(VIRTIO_BLK_T_IN, 0);
    set_desc(0, (u64)&hdr, sizeof(hdr), VIRTQ_DESC_F_NEXT, 1);
    set_desc(1, (u64)data_buf, SECTOR, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    set_desc(2, (u64)&status_byte, 1, VIRTQ_DESC_F_WRITE, 0);
    publish(0, 0);
    u32 status;
    int id = wait_bad_outcome(&status);
    finish_case(t, name, id, status);
}

void test_hostile(struct test *t) {
    dev = virtio_find(VIRTIO_ID_BLOCK, 0);
    check(t, dev != NULL, "no virtio-blk device on the command line");
    if (!dev) return;
    if (reinit()) {
        check(t, 0, "first init failed");
        return;
    }
    case_loop(t);
    case_oob_addr(t);
    case_len4g(t);
    case_rowrite(t);
    case_idxjump(t);
    case_badhead(t);
    case_early_notify(t);
    case_bad_queue(t, "ring_oob", OUTSIDE_RAM, 0);
    case_bad_queue(t, "qsize_over_max", (u64)hostile_ring.desc, 1);
    case_reset_inflight(t);

    const char *why = "";
    u8 bytes[64];
    int n = rng_read64(&why, bytes);
    kprintf("vmmtest: fact hostile_rng_after=%s\n", n == 64 ? "ok" : "fail");
    check(t, n == 64, "rng after the hostile cases: %d bytes (%s)", n, why);

    int ok = reinit() == 0;
    if (ok) {
        q.avail_idx = 0;
        ok = good_request();
    }
    kprintf("vmmtest: fact hostile_blk_after_reset=%s\n", ok ? "ok" : "fail");
    check(t, ok, "the disk does not read after the resets");
    virtio_reset(dev);
}
