/* Test `smp`: every processor the MP table lists comes online (started by the VMM, or by
 * INIT/SIPI from here), each with its own APIC ID. */
#include "guest.h"
#include "x86.h"

void test_smp(struct test *t) {
    struct mp_info mp;
    mptable_read(&mp);
    check(t, mp.found && mp.cpus > 0, "no MP table with processors");

    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    u32 bsp_id = b >> 24;
    map_mmio_gap();
    check(t, lapic_id() == bsp_id, "BSP LAPIC ID %u differs from its CPUID APIC ID %u", lapic_id(),
          bsp_id);

    int sipi_sent = 0;
    smp_start_aps(&mp, bsp_id, &sipi_sent);
    kprintf("vmmtest: fact sipi_sent=%d\n", sipi_sent);

    int online = 1;
    kprintf("vmmtest: fact cpu=0 apic_id=%u\n", bsp_id);
    for (u32 id = 0; id < MAX_CPUS; id++) {
        struct cpu_slot *s = &cpu_slots[id];
        if (!s->hits) continue;
        kprintf("vmmtest: fact cpu=%d apic_id=%u\n", online, id);
        online++;
        check(t, id != bsp_id, "an AP has the BSP's APIC ID %u", id);
        check(t, s->hits == 1, "%u APs share APIC ID %u", s->hits, id);
        check(t, s->lapic_id == s->cpuid_id, "AP with CPUID APIC ID %u has LAPIC ID %u", s->cpuid_id,
              s->lapic_id);
    }
    kprintf("vmmtest: fact cpus_online=%d\n", online);
    check(t, online == mp.cpus, "%d CPUs online, the MP table lists %d", online, mp.cpus);
}
