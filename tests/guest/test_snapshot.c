/* Tests for snapshots (the host takes them; the guest cannot tell):
 * `memcount` fills pages with a pattern, then counts in steps, each updating every page
 * and sleeping in hlt on the LAPIC timer, and prints the count and a checksum of the
 * pages at the end. Snapshotted mid-run and restored, it must end with the count and
 * checksum of a run that was never interrupted. The sleeps keep it under ~3*10^4
 * instructions while it runs for about half a second, so a snapshot lands mid-run.
 * It also watches the VM generation ID: it reads the 16 bytes at VMGENID_ADDR first,
 * takes the ID's event line (IOAPIC pin 3), and at the end says whether the ID changed,
 * how many events came, and the ID it ends with (its first 8 bytes): a restore must
 * change the ID and announce it once; a run never interrupted sees neither.
 * `spin` prints one line and then reads an unassigned port forever: a guest whose every
 * turn is a VM exit (`vmm bench restore` times a restore to its first exit). */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define MEMCOUNT_PAGES 64
#define WORDS_PER_PAGE 512
#define WORDS_TOUCHED 8        /* per page: one every 512 bytes */
#define MEMCOUNT_STEPS 20
#define STEP_SLEEP_US 25000
#define TIMER_DIVIDE_BY_1 0xb
#define LVT_TIMER_PERIODIC (1u << 17)
#define TICKS_PER_US 1000      /* KVM's APIC timer: 1 GHz (apic.c) */
#define SPIN_PORT 0x80         /* no device there: every read exits to the VMM */

static u64 pages[MEMCOUNT_PAGES * WORDS_PER_PAGE] __attribute__((section(".noinit"), aligned(4096)));
static volatile u32 count;

static u64 *word(u32 page, u32 w) { return &pages[page * WORDS_PER_PAGE + w * (WORDS_PER_PAGE / WORDS_TOUCHED)]; }

/* Sleeps `us` in hlt, woken by the LAPIC timer (periodic, so a lost tick is followed by
 * another rather than a hang). Only the wake-up costs instructions. Also used by
 * blkswap_test.c. */
void sleep_halted(u32 us) {
    u32 before = irq_count[VEC_TIMER];
    lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    lapic_write(LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | VEC_TIMER);
    lapic_write(LAPIC_TIMER_INITIAL, us * TICKS_PER_US);
    while (irq_count[VEC_TIMER] == before) __asm__ volatile("sti; hlt; cli" ::: "memory");
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | VEC_TIMER);
}

static u64 vmgenid_word(u32 i) { return ((volatile u64 *)VMGENID_ADDR)[i]; }

void test_memcount(struct test *t) {
    lapic_enable();
    u64 id_at_start[2] = {vmgenid_word(0), vmgenid_word(1)};
    u32 events_before = irq_count[VEC_VMGENID];
    ioapic_route(VMGENID_IOAPIC_PIN, VEC_VMGENID, (u8)lapic_id());
    for (u32 p = 0; p < MEMCOUNT_PAGES; p++)
        for (u32 w = 0; w < WORDS_TOUCHED; w++) *word(p, w) = ((u64)p << 32) | w;
    count = 0;
    for (u32 step = 0; step < MEMCOUNT_STEPS; step++) {
        for (u32 p = 0; p < MEMCOUNT_PAGES; p++) {
            u64 *x = word(p, step % WORDS_TOUCHED);
            *x = *x * 6364136223846793005UL + ((u64)step << 8) + p;
        }
        count++;
        kprintf("vmmtest: memcount step=%u\n", step);
        sleep_halted(STEP_SLEEP_US);
    }
    u64 h = 0xcbf29ce484222325UL; /* 64-bit FNV-1a over the touched words */
    for (u32 p = 0; p < MEMCOUNT_PAGES; p++)
        for (u32 w = 0; w < WORDS_TOUCHED; w++) {
            h ^= *word(p, w);
            h *= 0x100000001b3UL;
        }
    ioapic_mask(VMGENID_IOAPIC_PIN);
    kprintf("vmmtest: fact vmgenid_set=%u\n", (id_at_start[0] | id_at_start[1]) != 0);
    kprintf("vmmtest: fact vmgenid_changed=%u\n",
            vmgenid_word(0) != id_at_start[0] || vmgenid_word(1) != id_at_start[1]);
    kprintf("vmmtest: fact vmgenid_events=%u\n", irq_count[VEC_VMGENID] - events_before);
    kprintf("vmmtest: fact vmgenid=0x%016lx\n", vmgenid_word(0));
    kprintf("vmmtest: fact memcount_count=%u\n", count);
    kprintf("vmmtest: fact memcount_checksum=0x%016lx\n", h);
    check(t, count == MEMCOUNT_STEPS, "count %u after %u steps", count, MEMCOUNT_STEPS);
}

/* `devcount`: memcount's steps with the first virtio-blk and the virtio-rng busy across
 * them: each step queues a read of one sector and a 16-byte rng request, notifies, sleeps
 * (the requests are in flight meanwhile; a rate-limited rng holds its request for part
 * of the sleep) and then takes both used entries. The queues stay set up from step to
 * step, so a snapshot taken mid-run must carry their indices and any request not yet
 * answered. Ends with the count, a checksum of the sectors read and the rng bytes. */
#define DEV_STEPS 12
#define DEV_WAIT_US 2000000
#define RNG_REQ 16
static struct vq_mem dev_blk_ring, dev_rng_ring;
static u8 dev_sector[512] __attribute__((aligned(512)));
static u8 dev_rng[RNG_REQ] __attribute__((aligned(64)));

void test_devcount(struct test *t) {
    const char *why = "";
    struct virtio_dev *blk = virtio_find(VIRTIO_ID_BLOCK, 0), *rng = virtio_find(VIRTIO_ID_RNG, 0);
    struct vq bq, rq;
    check(t, blk && rng, "needs a virtio-blk and a virtio-rng");
    if (!blk || !rng) return;
    if (blk_init(blk, &bq, &dev_blk_ring, &why) || virtio_begin_init(rng, 0, &why) ||
        virtq_setup(rng, &rq, 0, &dev_rng_ring, &why)) {
        check(t, 0, "%s", why);
        return;
    }
    virtio_driver_ok(rng);
    lapic_enable();
    u32 steps = 0, rng_bytes = 0, blk_ok = 0;
    u64 h = 0xcbf29ce484222325UL;
    for (u32 step = 0; step < DEV_STEPS; step++) {
        memset(dev_sector, 0, sizeof(dev_sector));
        int bh = blk_submit(&bq, VIRTIO_BLK_T_IN, step % 8, dev_sector, sizeof(dev_sector), 1);
        struct vbuf rb = {(u64)dev_rng, RNG_REQ, 1};
        int rh = vq_add(&rq, &rb, 1);
        if (rh >= 0) vq_kick(&rq);
        kprintf("vmmtest: devcount step=%u\n", step);
        sleep_halted(STEP_SLEEP_US);
        u32 len = 0;
        if (bh >= 0 && vq_wait_used(&bq, &len, DEV_WAIT_US, 0) >= 0) {
            blk_ok++;
            h ^= fnv1a32(dev_sector, sizeof(dev_sector));
            h *= 0x100000001b3UL;
        }
        virtio_ack_interrupt(blk);
        if (rh >= 0 && vq_wait_used(&rq, &len, DEV_WAIT_US, 0) >= 0) rng_bytes += len;
        virtio_ack_interrupt(rng);
        steps++;
    }
    virtio_reset(blk);
    virtio_reset(rng);
    kprintf("vmmtest: fact devcount_count=%u\n", steps);
    kprintf("vmmtest: fact devcount_blk_reads=%u\n", blk_ok);
    kprintf("vmmtest: fact devcount_blk_checksum=0x%016lx\n", h);
    kprintf("vmmtest: fact devcount_rng_bytes=%u\n", rng_bytes);
    check(t, blk_ok == DEV_STEPS, "%u of %u blk reads answered", blk_ok, DEV_STEPS);
    check(t, rng_bytes == DEV_STEPS * RNG_REQ, "%u rng bytes, want %u", rng_bytes, DEV_STEPS * RNG_REQ);
}

void test_spin(struct test *t) {
    (void)t;
    kprintf("vmmtest: spinning\n");
    for (;;) (void)inb(SPIN_PORT);
}
