/* The local APIC in xAPIC mode, at its default MMIO base 0xFEE0_0000 (mapped by paging.c). */
#include "guest.h"
#include "x86.h"

#define SVR_ENABLE 0x100
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_POLL_LIMIT 10000

u32 lapic_read(u32 reg) { return mmio_read32(LAPIC_ADDR + reg); }
void lapic_write(u32 reg, u32 value) { mmio_write32(LAPIC_ADDR + reg, value); }
void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }
u32 lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

/* Software-enables the LAPIC (spurious vector VEC_SPURIOUS) and masks LINT0/LINT1, so the
 * legacy PIC cannot inject ExtINT interrupts. */
void lapic_enable(void) {
    lapic_write(LAPIC_SVR, SVR_ENABLE | VEC_SPURIOUS);
    lapic_write(LAPIC_LVT_LINT0, LAPIC_LVT_MASKED);
    lapic_write(LAPIC_LVT_LINT1, LAPIC_LVT_MASKED);
}

int lapic_send_ipi(u32 apic_id, u32 icr_low) {
    lapic_write(LAPIC_ICR_HIGH, apic_id << 24);
    lapic_write(LAPIC_ICR_LOW, icr_low);
    for (u32 i = 0; i < ICR_POLL_LIMIT; i++)
        if (!(lapic_read(LAPIC_ICR_LOW) & ICR_DELIVERY_PENDING)) return 0;
    return -1;
}

/* A clock for bounded waits: the LAPIC timer, masked, counting down once from 0xffffffff
 * with divide-by-1. KVM's APIC timer runs at 1 GHz (1 ns per tick), so this measures up
 * to 4.29 s in microseconds. Loop counts would not do: ring-0 code is emulated (about
 * 1 µs per instruction) under PVM but native under other KVMs. */
#define LAPIC_TICKS_PER_US 1000
#define TIMER_DIVIDE_BY_1 0xb

void lapic_clock_start(void) {
    lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | VEC_TIMER);
    lapic_write(LAPIC_TIMER_INITIAL, 0xffffffffu);
}

u32 lapic_clock_us(void) { return (0xffffffffu - lapic_read(LAPIC_TIMER_CURRENT)) / LAPIC_TICKS_PER_US; }

void lapic_clock_stop(void) { lapic_write(LAPIC_TIMER_INITIAL, 0); }

void delay_us(u32 us) {
    lapic_clock_start();
    while (lapic_clock_us() < us) pause();
    lapic_clock_stop();
}
