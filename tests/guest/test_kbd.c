/* Test `ctrlaltdel`: the guest's side of the API's SendCtrlAltDel. It routes the i8042's
 * IOAPIC pin 1, says it is ready, and waits in hlt (interrupts on, so waiting costs no
 * instructions) while the interrupt handler drains the keyboard's output buffer. Once the
 * keys are Ctrl, Alt and Delete (scan code set 2: 14 11 E0 71) it resets the machine
 * through the i8042, as Linux does on Ctrl-Alt-Del with reboot=k: the VMM ends with
 * status 0. Keys typed before it was ready wait in the controller and are read once the
 * pin is routed. It gives up after 30 s (a one-shot LAPIC timer wakes it). */
#include "guest.h"
#include "x86.h"

#define TIMER_DIVIDE_BY_128 0xa
/* 30 s at 1 ns per bus tick, divided by 128. */
#define TIMEOUT_TICKS 234375000u
#define MAX_TYPED 16

static const u8 ctrl_alt_del[] = {0x14, 0x11, 0xe0, 0x71};
static volatile u8 typed[MAX_TYPED];
static volatile u32 typed_len;

/* From the interrupt handler (vector VEC_KBD): takes every byte the controller holds. */
void kbd_drain(void) {
    while (inb(I8042_COMMAND_PORT) & I8042_STATUS_OUTPUT_FULL) {
        u8 byte = inb(I8042_DATA_PORT);
        if (typed_len < MAX_TYPED) typed[typed_len++] = byte;
    }
}

static int saw_ctrl_alt_del(void) {
    if (typed_len < sizeof(ctrl_alt_del)) return 0;
    for (u32 i = 0; i < sizeof(ctrl_alt_del); i++)
        if (typed[i] != ctrl_alt_del[i]) return 0;
    return 1;
}

void test_ctrlaltdel(struct test *t) {
    lapic_enable();
    ioapic_route(KBD_IOAPIC_PIN, VEC_KBD, (u8)lapic_id());
    u32 timer_before = irq_count[VEC_TIMER];
    lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_128);
    lapic_write(LAPIC_LVT_TIMER, VEC_TIMER); /* one shot, unmasked: the time-out */
    lapic_write(LAPIC_TIMER_INITIAL, TIMEOUT_TICKS);
    kprintf("vmmtest: ctrlaltdel ready\n");
    /* Keys typed before the pin was routed raised an interrupt nobody took: read them. */
    kbd_drain();

    /* sti's one-instruction shadow covers hlt: no interrupt slips in between. */
    while (typed_len < sizeof(ctrl_alt_del) && irq_count[VEC_TIMER] == timer_before)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    ioapic_mask(KBD_IOAPIC_PIN);

    kprintf("vmmtest: fact ctrlaltdel_irqs=%u\n", irq_count[VEC_KBD]);
    kprintf("vmmtest: fact ctrlaltdel_scancodes=");
    for (u32 i = 0; i < typed_len; i++) kprintf("%s%x", i ? "," : "", typed[i]);
    kprintf("\n");
    check(t, typed_len > 0, "no key in 30 s");
    check(t, !typed_len || saw_ctrl_alt_del(), "the keys typed are not Ctrl-Alt-Del");
    if (t->failures) return;
    kprintf("vmmtest: ctrlaltdel received, resetting\n");
    outb(I8042_COMMAND_PORT, I8042_RESET);
    halt_forever();
}
