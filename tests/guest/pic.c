/* The legacy 8259 PICs: remapped away from the exception vectors (0x20..0x2f) and fully
 * masked, so that only the IOAPIC and LAPIC deliver interrupts. KVM's in-kernel PIC is
 * wired to the BSP's LINT0 (ExtINT) at reset. */
#include "guest.h"
#include "x86.h"

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xa0
#define PIC2_DATA 0xa1

void pic_disable(void) {
    outb(PIC1_CMD, 0x11);   /* ICW1: edge, cascade, ICW4 needed */
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, 0x20);  /* ICW2: vector base */
    outb(PIC2_DATA, 0x28);
    outb(PIC1_DATA, 0x04);  /* ICW3: slave on IR2 */
    outb(PIC2_DATA, 0x02);
    outb(PIC1_DATA, 0x01);  /* ICW4: 8086 mode */
    outb(PIC2_DATA, 0x01);
    outb(PIC1_DATA, 0xff);  /* OCW1: mask everything */
    outb(PIC2_DATA, 0xff);
}
