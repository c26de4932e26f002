/* Shared declarations of the vmm test guest: fixed addresses, types, and the small
 * interfaces each source file provides. One header keeps the guest easy to read. */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h> /* the compiler's own header: freestanding */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef unsigned long usize;
typedef long i64;

#define NULL ((void *)0)

/* ---- fixed addresses (mirror boot/src/layout.rs and boot/src/platform.rs; boot's
 * platform_tests.rs checks them) ---- */
#define ZERO_PAGE_ADDR 0x7000UL
#define BOOT_STACK_POINTER 0x8ff0UL
#define PML4_ADDR 0x9000UL
#define BOOT_TIMER_ADDR 0xC0000000UL
#define BOOT_TIMER_MAGIC 123
#define IOAPIC_ADDR 0xFEC00000UL
#define LAPIC_ADDR 0xFEE00000UL
/* Page the INIT/SIPI trampoline is copied to: free conventional memory between the
 * boot IDT (0x520) and the zero page (0x7000). Must match TRAMPOLINE_BASE in trampoline.S. */
#define TRAMPOLINE_ADDR 0x3000UL

/* ---- I/O ports (boot/src/platform.rs) ---- */
#define COM1_PORT 0x3f8
#define DEBUG_EXIT_PORT 0xf4
#define I8042_DATA_PORT 0x60
#define I8042_COMMAND_PORT 0x64
#define I8042_RESET 0xfe
#define I8042_STATUS_OUTPUT_FULL 0x01

/* ---- interrupt vectors used by the tests ---- */
#define VEC_UART 0x34     /* IOAPIC pin 4 (COM1) */
#define VEC_TIMER 0x40    /* LAPIC timer */
#define VEC_SPURIOUS 0xff /* LAPIC spurious vector */
#define UART_IOAPIC_PIN 4
#define VEC_KBD 0x31      /* IOAPIC pin 1 (i8042 keyboard) */
#define KBD_IOAPIC_PIN 1
#define VEC_VMGENID 0x33  /* IOAPIC pin 3: the VM generation ID's event (boot/src/vmgenid.rs) */
#define VMGENID_IOAPIC_PIN 3
#define VMGENID_ADDR 0xEF000 /* its 16 bytes (boot/src/layout.rs) */

/* ---- SMP ---- */
#define MAX_CPUS 64 /* APIC IDs at or above this are parked; must match head.S */

/* ---- lib.c ---- */
void *memcpy(void *dst, const void *src, usize n);
void *memset(void *dst, int c, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
int str_eq_n(const char *a, const char *b, usize n);
int parse_u64(const char *s, usize len, u64 *out);

/* ---- serial.c ---- */
void serial_init(void);
void serial_putc(char c);
int serial_try_getc(void); /* -1 when no byte is waiting */
void serial_write_reg(int offset, u8 value);
u8 serial_read_reg(int offset);
#define UART_IER 1
#define UART_IIR 2
#define UART_IER_THRE 0x02

/* ---- print.c ---- */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);

/* ---- zeropage.c: boot_params fields ---- */
const u8 *zero_page(void);
u16 zp_boot_flag(void);
u32 zp_header_magic(void);
u32 zp_e820_count(void);
void zp_e820_entry(u32 i, u64 *addr, u64 *size, u32 *type);
u64 zp_cmdline_ptr(void);
u32 zp_cmdline_size(void);
u64 zp_ramdisk_image(void);
u64 zp_ramdisk_size(void);

/* ---- cmdline.c ---- */
enum end_kind { END_DEFAULT, END_EXIT, END_RESET, END_TRIPLEFAULT, END_HALT, END_UNSUPPORTED };
struct cmdline {
    const char *text;   /* the whole command line, NUL terminated */
    const char *tests;  /* value of tests=, not NUL terminated */
    usize tests_len;
    enum end_kind end;
    u8 exit_code;       /* for END_EXIT */
    int boottimer;
    int bad_end;        /* end= had a value we do not know */
};
void cmdline_parse(struct cmdline *out);

/* ---- paging.c ---- */
void map_mmio_gap(void);

/* ---- mptable.c ---- */
struct mp_info {
    int found;
    u64 fps_addr;       /* floating pointer structure */
    u64 table_addr;     /* configuration table */
    int fps_checksum_ok;
    int table_checksum_ok;
    int cpus;           /* enabled processor entries */
    u8 apic_ids[MAX_CPUS];
    int bsp_index;      /* entry flagged BSP, -1 if none */
};
void mptable_read(struct mp_info *mp);

/* ---- idt.c ---- */
struct irq_frame {
    u64 r15, r14, r13, r12, r11, r10, r9, r8;
    u64 rdi, rsi, rbp, rbx, rdx, rcx, rax;
    u64 vector, error;
    u64 rip, cs, rflags, rsp, ss;
};
void idt_init(void);
void idt_load_empty(void);
u32 wait_for_irq(u8 vector, u32 before, u32 spins);
extern volatile u32 irq_count[256];

/* ---- pic.c ---- */
void pic_disable(void);

/* ---- apic.c ---- */
void lapic_enable(void);
/* test_snapshot.c: sleeps `us` in hlt on the LAPIC timer (lapic_enable first). */
void sleep_halted(u32 us);
u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 value);
void lapic_eoi(void);
u32 lapic_id(void);
int lapic_send_ipi(u32 apic_id, u32 icr_low); /* 0 when delivered */
void lapic_clock_start(void);
u32 lapic_clock_us(void); /* microseconds since lapic_clock_start */
void lapic_clock_stop(void);
void delay_us(u32 us);
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0
#define LAPIC_LVT_MASKED (1u << 16)

/* ---- ioapic.c ---- */
u32 ioapic_read(u32 reg);
void ioapic_route(u32 pin, u8 vector, u8 dest_apic_id);
void ioapic_mask(u32 pin);

/* ---- smp.c ---- */
struct cpu_slot {
    volatile u32 hits;       /* APs that claimed this APIC ID (1 unless IDs clash) */
    volatile u32 cpuid_id;   /* APIC ID from CPUID leaf 1 */
    volatile u32 lapic_id;   /* APIC ID from the LAPIC ID register */
    volatile u32 order;      /* check-in order, 1-based */
};
extern struct cpu_slot cpu_slots[MAX_CPUS];
extern volatile u32 ap_checked_in;
void ap_main(u32 apic_id);
void smp_start_aps(const struct mp_info *mp, u32 bsp_id, int *sipi_sent);

/* ---- tests ---- */
struct test {
    const char *name;
    int failures;
};
void check(struct test *t, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_boot(struct test *t);
void test_initrd(struct test *t);
void test_serial(struct test *t);
void test_echo(struct test *t);
void test_ioapic(struct test *t);
void test_timer(struct test *t);
void test_smp(struct test *t);
void test_ctrlaltdel(struct test *t);
void kbd_drain(void);
void test_memcount(struct test *t);
void test_devcount(struct test *t);
void test_spin(struct test *t);
extern const struct cmdline *g_cmdline;

/* ---- head.S: entry state saved before anything else ---- */
extern u64 boot_entry_rsi, boot_entry_rsp, boot_entry_rflags;

#endif
