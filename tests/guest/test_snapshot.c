/* Tests for snapshots (the host takes them; the guest cannot tell):
 * `memcount` fills pages with a pattern, then counts in steps, each updating every page
 * and sleeping in hlt on the LAPIC timer, and prints the count and a checksum of the
 * pages at the end. Snapshotted mid-run and restored, it must end with the count and
 * checksum of a run that was never interrupted. The sleeps keep it under ~3*10^4
 * instructions while it runs for about half a second, so a snapshot lands mid-run.
 * `spin` prints one line and then reads an unassigned port forever: a guest whose every
 * turn is a VM exit (`vmm bench restore` times a restore to its first exit). */
#include "guest.h"
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
 * another rather than a hang). Only the wake-up costs instructions. */
static void sleep_halted(u32 us) {
    u32 before = irq_count[VEC_TIMER];
    lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    lapic_write(LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | VEC_TIMER);
    lapic_write(LAPIC_TIMER_INITIAL, us * TICKS_PER_US);
    while (irq_count[VEC_TIMER] == before) __asm__ volatile("sti; hlt; cli" ::: "memory");
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | VEC_TIMER);
}

void test_memcount(struct test *t) {
    lapic_enable();
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
    kprintf("vmmtest: fact memcount_count=%u\n", count);
    kprintf("vmmtest: fact memcount_checksum=0x%016lx\n", h);
    check(t, count == MEMCOUNT_STEPS, "count %u after %u steps", count, MEMCOUNT_STEPS);
}

void test_spin(struct test *t) {
    (void)t;
    kprintf("vmmtest: spinning\n");
    for (;;) (void)inb(SPIN_PORT);
}
