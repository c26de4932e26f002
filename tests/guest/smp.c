/* Application processors. Each AP, however it was started (directly by the VMM at the ELF
 * entry, or by INIT/SIPI through trampoline.S), reaches ap_main with its APIC ID and its own
 * stack, records itself in cpu_slots[] and halts. The BSP waits for the APs the MP table
 * lists and sends INIT + SIPI + SIPI to any that have not checked in. */
#include "guest.h"
#include "x86.h"

#define ICR_INIT_ASSERT 0xc500   /* level triggered, assert, INIT */
#define ICR_INIT_DEASSERT 0x8500 /* level triggered, deassert, INIT */
#define ICR_STARTUP 0x0600       /* STARTUP, vector in bits 0..7 */
#define DIRECT_WAIT_US 20000     /* for APs the VMM started itself */
#define INIT_DELAY_US 10000      /* after INIT, as the MP specification asks */
#define SIPI_DELAY_US 200        /* between the two SIPIs */
#define SIPI_WAIT_US 1000000     /* for the APs to come up through the trampoline */

/* In .data, not .bss: directly started APs may check in before the BSP clears .bss. */
struct cpu_slot cpu_slots[MAX_CPUS] __attribute__((section(".data")));
volatile u32 ap_checked_in __attribute__((section(".data")));

extern char trampoline_start[], trampoline_end[], tramp_cr3[], tramp_boot_gdtr[];

void ap_main(u32 apic_id) {
    map_mmio_gap();
    struct cpu_slot *s = &cpu_slots[apic_id];
    s->cpuid_id = apic_id;
    s->lapic_id = lapic_id();
    atomic_fetch_inc(&s->hits); /* the BSP reads the fields above once hits != 0 */
    /* Last: the BSP waits for this counter to move, then looks at hits (x86 stores are
     * seen in order). */
    s->order = atomic_fetch_inc(&ap_checked_in) + 1;
    halt_forever();
}

static int ap_needs_start(u32 id, u32 bsp_id) {
    return id != bsp_id && id < MAX_CPUS && !cpu_slots[id].hits;
}

static int aps_missing(const struct mp_info *mp, u32 bsp_id) {
    int missing = 0;
    for (int i = 0; i < mp->cpus; i++) {
        u32 id = mp->apic_ids[i];
        if (id >= MAX_CPUS) missing++; /* parked by head.S: never checks in */
        else if (id != bsp_id && cpu_slots[id].hits == 0) missing++;
    }
    return missing;
}

/* Waits up to `us` microseconds for the MP table's APs; returns how many are missing. */
static int wait_for_aps(const struct mp_info *mp, u32 bsp_id, u32 us) {
    int missing = aps_missing(mp, bsp_id);
    lapic_clock_start();
    while (missing && lapic_clock_us() < us) {
        u32 seen = ap_checked_in;
        while (ap_checked_in == seen && lapic_clock_us() < us) pause();
        missing = aps_missing(mp, bsp_id);
    }
    lapic_clock_stop();
    return missing;
}

static void install_trampoline(void) {
    usize len = (usize)(trampoline_end - trampoline_start);
    u8 *dst = (u8 *)TRAMPOLINE_ADDR;
    memcpy(dst, trampoline_start, len);
    u64 cr3 = read_cr3();
    memcpy(dst + (tramp_cr3 - trampoline_start), &cr3, sizeof(cr3));
    __asm__ volatile("sgdt %0" : "=m"(*(dst + (tramp_boot_gdtr - trampoline_start))) : : "memory");
}

/* Starts every AP of the MP table that is not running yet; *sipi_sent counts the APs that
 * needed INIT/SIPI. */
void smp_start_aps(const struct mp_info *mp, u32 bsp_id, int *sipi_sent) {
    *sipi_sent = 0;
    lapic_enable();
    if (!wait_for_aps(mp, bsp_id, DIRECT_WAIT_US)) return;

    install_trampoline();
    /* INIT to every missing AP, one delay, then the two SIPIs to those still missing. */
    for (int i = 0; i < mp->cpus; i++)
        if (ap_needs_start(mp->apic_ids[i], bsp_id)) {
            (*sipi_sent)++;
            lapic_send_ipi(mp->apic_ids[i], ICR_INIT_ASSERT);
            lapic_send_ipi(mp->apic_ids[i], ICR_INIT_DEASSERT);
        }
    delay_us(INIT_DELAY_US);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < mp->cpus; i++)
            if (ap_needs_start(mp->apic_ids[i], bsp_id))
                lapic_send_ipi(mp->apic_ids[i], ICR_STARTUP | (TRAMPOLINE_ADDR >> 12));
        delay_us(SIPI_DELAY_US);
    }
    wait_for_aps(mp, bsp_id, SIPI_WAIT_US);
}
