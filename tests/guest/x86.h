/* Thin wrappers over the x86 instructions the guest uses. Only instructions the PVM
 * emulator runs: no popcnt, cmpxchg16b, xsave, int n, rdtscp or SSE. */
#ifndef X86_H
#define X86_H

#include "guest.h"

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u64 rdmsr(u32 msr) {
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d) {
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline u64 read_cr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u64 read_cr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline u64 read_cr4(void) { u64 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline u16 read_cs(void) { u16 v; __asm__ volatile("mov %%cs, %0" : "=r"(v)); return v; }
static inline u16 read_ss(void) { u16 v; __asm__ volatile("mov %%ss, %0" : "=r"(v)); return v; }
static inline u16 read_ds(void) { u16 v; __asm__ volatile("mov %%ds, %0" : "=r"(v)); return v; }
static inline u16 read_es(void) { u16 v; __asm__ volatile("mov %%es, %0" : "=r"(v)); return v; }
static inline u16 read_tr(void) { u16 v; __asm__ volatile("str %0" : "=r"(v)); return v; }
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline u32 mmio_read32(u64 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u64 addr, u32 v) { *(volatile u32 *)addr = v; }
static inline void mmio_write8(u64 addr, u8 v) { *(volatile u8 *)addr = v; }
static inline u8 phys_read8(u64 addr) { return *(volatile const u8 *)addr; }
static inline u16 phys_read16(u64 addr) { return *(volatile const u16 *)addr; }
static inline u32 phys_read32(u64 addr) { return *(volatile const u32 *)addr; }
static inline u64 phys_read64(u64 addr) { return *(volatile const u64 *)addr; }
/* Atomically adds 1 to *p and returns the old value (lock xadd; no cmpxchg16b). */
static inline u32 atomic_fetch_inc(volatile u32 *p) {
    u32 v = 1;
    __asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
    return v;
}
static inline void halt_forever(void) {
    for (;;) __asm__ volatile("cli; hlt" ::: "memory");
}
/* Busy-waits about n loop iterations (each a pause and a compare). */
static inline void spin(u32 n) {
    for (u32 i = 0; i < n; i++) pause();
}

#endif
