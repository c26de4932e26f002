/* The IDT: every vector goes through isr.S to isr_dispatch. Exceptions (vectors 0..31) are
 * fatal: the guest reports them and ends with debug exit 4. Other vectors are counted in
 * irq_count[] for the tests, acknowledged at the LAPIC, and return. */
#include "guest.h"
#include "x86.h"

#define EXCEPTION_EXIT_CODE 4
#define IDT_ENTRIES 256
#define ISR_STUB_SIZE 16
#define GATE_INTERRUPT 0x8e /* present, DPL 0, 64-bit interrupt gate */

struct idt_gate {
    u16 offset_lo;
    u16 selector;
    u8 ist;
    u8 type_attr;
    u16 offset_mid;
    u32 offset_hi;
    u32 reserved;
} __attribute__((packed));

struct idt_ptr {
    u16 limit;
    u64 base;
} __attribute__((packed));

extern char isr_stubs[];
static struct idt_gate idt[IDT_ENTRIES] __attribute__((aligned(16)));
volatile u32 irq_count[256];

void idt_init(void) {
    u16 cs = read_cs();
    for (int v = 0; v < IDT_ENTRIES; v++) {
        u64 handler = (u64)isr_stubs + (u64)v * ISR_STUB_SIZE;
        idt[v].offset_lo = (u16)handler;
        idt[v].selector = cs;
        idt[v].ist = 0;
        idt[v].type_attr = GATE_INTERRUPT;
        idt[v].offset_mid = (u16)(handler >> 16);
        idt[v].offset_hi = (u32)(handler >> 32);
        idt[v].reserved = 0;
    }
    struct idt_ptr p = {sizeof(idt) - 1, (u64)idt};
    __asm__ volatile("lidt %0" ::"m"(p));
}

/* An IDT of limit 0: the next exception becomes a triple fault (end=triplefault). */
void idt_load_empty(void) {
    struct idt_ptr p = {0, 0};
    __asm__ volatile("lidt %0" ::"m"(p));
}

void isr_dispatch(struct irq_frame *f) {
    if (f->vector < 32) {
        kprintf("vmmtest: FAIL exception vector=%lu rip=0x%lx error=0x%lx\n", f->vector, f->rip,
                f->error);
        outb(DEBUG_EXIT_PORT, EXCEPTION_EXIT_CODE);
        halt_forever();
    }
    irq_count[f->vector]++;
    if (f->vector == VEC_UART) (void)serial_read_reg(UART_IIR); /* acknowledges THR empty */
    if (f->vector == VEC_KBD) kbd_drain();
    if (f->vector != VEC_SPURIOUS) lapic_eoi();
}

/* Enables interrupts and spins (bounded) until irq_count[vector] moves past `before`.
 * Returns the number of interrupts seen. Interrupts are off again on return. */
u32 wait_for_irq(u8 vector, u32 before, u32 spins) {
    sti();
    for (u32 i = 0; i < spins && irq_count[vector] == before; i++) pause();
    cli();
    return irq_count[vector] - before;
}
