/* The few libc routines the guest (and GCC's struct copies) need. */
#include "guest.h"

void *memcpy(void *dst, const void *src, usize n) {
    void *d = dst;
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

void *memset(void *dst, int c, usize n) {
    void *d = dst;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

int memcmp(const void *a, const void *b, usize n) {
    const u8 *x = a, *y = b;
    for (usize i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

usize strlen(const char *s) {
    usize n = 0;
    while (s[n]) n++;
    return n;
}

/* 1 when the first n bytes of a and b are equal. */
int str_eq_n(const char *a, const char *b, usize n) { return memcmp(a, b, n) == 0; }

/* Parses len decimal digits; 0 on success. */
int parse_u64(const char *s, usize len, u64 *out) {
    u64 v = 0;
    if (len == 0) return -1;
    for (usize i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (u64)(s[i] - '0');
    }
    *out = v;
    return 0;
}
