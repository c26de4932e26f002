/* Tests `ioapic` (the UART's IRQ 4 through the in-kernel IOAPIC to the BSP) and `timer`
 * (the LAPIC timer, one shot). Both spin with interrupts on, bounded, for the vector. */
#include "guest.h"
#include "x86.h"

#define IRQ_WAIT_SPINS 100000
#define TIMER_DIVIDE_BY_1 0xb
#define TIMER_INITIAL_COUNT 100000

static u8 bsp_apic_id(void) {
    u32 a, b, c, d;
    cpuid(1, 0, &a, &b, &c, &d);
    return (u8)(b >> 24);
}

void test_ioapic(struct test *t) {
    lapic_enable();
    u32 version = ioapic_read(1);
    check(t, version != 0xffffffffu && version != 0, "IOAPIC version register reads 0x%x", version);
    kprintf("vmmtest: fact ioapic_pins=%u\n", ((version >> 16) & 0xff) + 1);

    u32 before = irq_count[VEC_UART];
    ioapic_route(UART_IOAPIC_PIN, VEC_UART, bsp_apic_id());
    (void)serial_read_reg(UART_IIR);
    serial_write_reg(UART_IER, UART_IER_THRE); /* THR is empty: the UART raises IRQ 4 */
    u32 got = wait_for_irq(VEC_UART, before, IRQ_WAIT_SPINS);
    serial_write_reg(UART_IER, 0);             /* before printing, which would re-raise it */
    (void)serial_read_reg(UART_IIR);
    ioapic_mask(UART_IOAPIC_PIN);

    kprintf("vmmtest: fact ioapic_irqs=%u\n", got);
    check(t, got >= 1, "no interrupt on vector 0x%x from IOAPIC pin %u", VEC_UART, UART_IOAPIC_PIN);
}

void test_timer(struct test *t) {
    lapic_enable();
    u32 before = irq_count[VEC_TIMER];
    lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    lapic_write(LAPIC_LVT_TIMER, VEC_TIMER); /* one shot, unmasked */
    lapic_write(LAPIC_TIMER_INITIAL, TIMER_INITIAL_COUNT);
    u32 got = wait_for_irq(VEC_TIMER, before, IRQ_WAIT_SPINS);
    u32 current = lapic_read(LAPIC_TIMER_CURRENT);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | VEC_TIMER);
    lapic_write(LAPIC_TIMER_INITIAL, 0);

    kprintf("vmmtest: fact timer_irqs=%u\n", got);
    check(t, got >= 1, "no LAPIC timer interrupt (vector 0x%x)", VEC_TIMER);
    check(t, !got || current == 0, "one-shot timer still counting after its interrupt (current=%u)", current);
}
