/* The IOAPIC at 0xFEC0_0000: IOREGSEL at +0, IOWIN at +0x10; redirection entry n is
 * registers 0x10 + 2n (low: vector, mode, mask) and 0x11 + 2n (high: destination). */
#include "guest.h"
#include "x86.h"

#define IOREGSEL 0x00
#define IOWIN 0x10
#define REDIR_LOW(pin) (0x10 + 2 * (pin))
#define REDIR_HIGH(pin) (0x11 + 2 * (pin))
#define REDIR_MASKED (1u << 16)

u32 ioapic_read(u32 reg) {
    mmio_write32(IOAPIC_ADDR + IOREGSEL, reg);
    return mmio_read32(IOAPIC_ADDR + IOWIN);
}

static void ioapic_write(u32 reg, u32 value) {
    mmio_write32(IOAPIC_ADDR + IOREGSEL, reg);
    mmio_write32(IOAPIC_ADDR + IOWIN, value);
}

/* Edge triggered, active high, fixed delivery, physical destination, unmasked. */
void ioapic_route(u32 pin, u8 vector, u8 dest_apic_id) {
    ioapic_write(REDIR_LOW(pin), REDIR_MASKED | vector);
    ioapic_write(REDIR_HIGH(pin), (u32)dest_apic_id << 24);
    ioapic_write(REDIR_LOW(pin), vector);
}

void ioapic_mask(u32 pin) { ioapic_write(REDIR_LOW(pin), REDIR_MASKED | ioapic_read(REDIR_LOW(pin))); }
