/* kprintf: a small printf to COM1. Supports %s %c %d %u %x %p %% with an optional 0/width
 * and the l/ll length modifiers, which is all the protocol lines need. */
#include "guest.h"

static void put_num(u64 v, unsigned base, int neg, int width, char pad) {
    char buf[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (neg) buf[n++] = '-';
    for (int i = n; i < width; i++) serial_putc(pad);
    while (n) serial_putc(buf[--n]);
}

void kvprintf(const char *fmt, va_list ap) {
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            serial_putc(*p);
            continue;
        }
        p++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*p == '0') {
            pad = '0';
            p++;
        }
        while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
        while (*p == 'l') {
            longs++;
            p++;
        }
        switch (*p) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (*s) serial_putc(*s++);
            break;
        }
        case 'c':
            serial_putc((char)va_arg(ap, int));
            break;
        case 'd': {
            i64 v = longs ? va_arg(ap, i64) : va_arg(ap, int);
            put_num(v < 0 ? (u64)-v : (u64)v, 10, v < 0, width, pad);
            break;
        }
        case 'u':
            put_num(longs ? va_arg(ap, u64) : va_arg(ap, unsigned), 10, 0, width, pad);
            break;
        case 'x':
            put_num(longs ? va_arg(ap, u64) : va_arg(ap, unsigned), 16, 0, width, pad);
            break;
        case 'p':
            serial_putc('0');
            serial_putc('x');
            put_num((u64)va_arg(ap, void *), 16, 0, width, pad);
            break;
        case '%':
            serial_putc('%');
            break;
        case '\0':
            p--;
            break;
        default:
            serial_putc('%');
            serial_putc(*p);
        }
    }
}

void kprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}
