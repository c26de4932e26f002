/* COM1 (8250/16550 at 0x3f8), polled: output waits for LSR THRE, input polls LSR DR. */
#include "guest.h"
#include "x86.h"

#define UART_DATA 0
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_DLL 0
#define UART_DLM 1
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LCR_8N1 0x03
#define LCR_DLAB 0x80
#define MCR_DTR_RTS_OUT2 0x0b
#define THRE_POLL_LIMIT 100000

void serial_write_reg(int offset, u8 value) { outb((u16)(COM1_PORT + offset), value); }
u8 serial_read_reg(int offset) { return inb((u16)(COM1_PORT + offset)); }

void serial_init(void) {
    serial_write_reg(UART_IER, 0);          /* polled: no interrupts */
    serial_write_reg(UART_LCR, LCR_DLAB);
    serial_write_reg(UART_DLL, 1);          /* 115200 baud */
    serial_write_reg(UART_DLM, 0);
    serial_write_reg(UART_LCR, LCR_8N1);
    serial_write_reg(UART_FCR, 0x07);       /* enable and clear FIFOs */
    serial_write_reg(UART_MCR, MCR_DTR_RTS_OUT2);
}

void serial_putc(char c) {
    /* Bounded: a UART that never reports THRE must not hang the guest. */
    for (u32 i = 0; i < THRE_POLL_LIMIT; i++)
        if (serial_read_reg(UART_LSR) & LSR_THRE) break;
    serial_write_reg(UART_DATA, (u8)c);
}

int serial_try_getc(void) {
    if (!(serial_read_reg(UART_LSR) & LSR_DR)) return -1;
    return serial_read_reg(UART_DATA);
}
