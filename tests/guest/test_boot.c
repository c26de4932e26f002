/* Test `boot`: what the VMM set up before the first guest instruction — zero page, e820
 * map, command line, paging and segments, CPUID, MP table. */
#include "guest.h"
#include "x86.h"

#define BOOT_FLAG_MAGIC 0xaa55
#define HDRS_MAGIC 0x53726448 /* "HdrS" */
#define E820_RAM 1
#define CR0_PE (1UL << 0)
#define CR0_PG (1UL << 31)
#define CR4_PAE (1UL << 5)
#define MSR_EFER 0xc0000080
#define EFER_LMA (1UL << 10)
#define RFLAGS_IF (1UL << 9)
#define CPUID_HYPERVISOR (1u << 31)

static void check_zero_page(struct test *t) {
    check(t, zp_boot_flag() == BOOT_FLAG_MAGIC, "boot_flag=0x%x, want 0xaa55", zp_boot_flag());
    check(t, zp_header_magic() == HDRS_MAGIC, "header=0x%x, want HdrS", zp_header_magic());
    u32 n = zp_e820_count();
    u64 ram = 0;
    for (u32 i = 0; i < n; i++) {
        u64 addr, size;
        u32 type;
        zp_e820_entry(i, &addr, &size, &type);
        kprintf("vmmtest: fact e820=0x%lx:0x%lx:%u\n", addr, size, type);
        if (type == E820_RAM) ram += size;
    }
    kprintf("vmmtest: fact e820_ram_kib=%lu\n", ram / 1024);
    check(t, n > 0, "empty e820 map");
    kprintf("vmmtest: fact cmdline=%s\n", g_cmdline->text);
    check(t, g_cmdline->text[0] != 0, "empty command line");
}

static void check_cpu_state(struct test *t) {
    u64 cr0 = read_cr0(), cr3 = read_cr3(), cr4 = read_cr4(), efer = rdmsr(MSR_EFER);
    check(t, (cr0 & (CR0_PE | CR0_PG)) == (CR0_PE | CR0_PG), "cr0=0x%lx lacks PE|PG", cr0);
    check(t, cr4 & CR4_PAE, "cr4=0x%lx lacks PAE", cr4);
    check(t, efer & EFER_LMA, "efer=0x%lx lacks LMA", efer);
    check(t, (cr3 & ~0xfffUL) == PML4_ADDR, "cr3=0x%lx, want 0x9000", cr3);
    check(t, read_cs() == 0x08, "cs=0x%x, want 0x08", read_cs());
    check(t, read_ss() == 0x10, "ss=0x%x, want 0x10", read_ss());
    check(t, read_ds() == 0x10 && read_es() == 0x10, "ds=0x%x es=0x%x, want 0x10", read_ds(),
          read_es());
    check(t, read_tr() == 0x18, "tr=0x%x, want 0x18", read_tr());
    check(t, boot_entry_rsi == ZERO_PAGE_ADDR, "entry rsi=0x%lx, want 0x7000", boot_entry_rsi);
    check(t, boot_entry_rsp == BOOT_STACK_POINTER, "entry rsp=0x%lx, want 0x8ff0", boot_entry_rsp);
    check(t, !(boot_entry_rflags & RFLAGS_IF), "interrupts on at entry (rflags=0x%lx)",
          boot_entry_rflags);
}

static void check_cpuid(struct test *t) {
    u32 a, b, c, d, max;
    cpuid(0, 0, &max, &b, &c, &d);
    cpuid(1, 0, &a, &b, &c, &d);
    check(t, c & CPUID_HYPERVISOR, "cpuid 1 ecx=0x%x lacks the hypervisor bit", c);
    kprintf("vmmtest: fact bsp_apic_id=%u\n", b >> 24);
    kprintf("vmmtest: fact tsc_deadline=%u\n", (c >> 24) & 1);
    u32 sig[3];
    cpuid(0x40000000, 0, &a, &sig[0], &sig[1], &sig[2]);
    char name[13];
    memcpy(name, sig, 12);
    name[12] = 0;
    for (int i = 0; i < 12; i++)
        if (name[i] == 0) break;
        else if (name[i] < 0x20 || name[i] > 0x7e) name[i] = '.';
    kprintf("vmmtest: fact hypervisor=%s\n", name);
    u32 pmu = 0;
    if (max >= 0xa) cpuid(0xa, 0, &pmu, &b, &c, &d);
    kprintf("vmmtest: fact cpuid_max_leaf=0x%x\n", max);
    kprintf("vmmtest: fact pmu_version=%u\n", pmu & 0xff);
    check(t, pmu == 0, "cpuid 0xa eax=0x%x: the PMU is not hidden", pmu);
}

static void check_mptable(struct test *t) {
    struct mp_info mp;
    mptable_read(&mp);
    check(t, mp.found, "no MP floating pointer in the EBDA or BIOS area");
    if (!mp.found) return;
    kprintf("vmmtest: fact mptable_addr=0x%lx\n", mp.fps_addr);
    check(t, mp.fps_checksum_ok, "MP floating pointer checksum is wrong");
    check(t, mp.table_checksum_ok, "MP configuration table at 0x%lx: bad signature or checksum",
          mp.table_addr);
    kprintf("vmmtest: fact mptable_cpus=%d\n", mp.cpus);
    check(t, mp.cpus > 0, "MP table lists no enabled processor");
    check(t, mp.bsp_index >= 0, "MP table flags no processor as the BSP");
}

/* A port nobody decodes reads as all ones, as on a PC's floating bus. Linux's PCI probe
 * takes zeros at 0xcf8/0xcfa for a "type 2" host bridge and scans a bus that is not there. */
static void check_unassigned_ports(struct test *t) {
    u8 cf8 = inb(0xcf8), cfa = inb(0xcfa);
    kprintf("vmmtest: fact unassigned_port_reads=0x%x\n", cf8);
    check(t, cf8 == 0xff && cfa == 0xff, "unassigned ports 0xcf8/0xcfa read 0x%x/0x%x, want 0xff",
          cf8, cfa);
}

void test_boot(struct test *t) {
    check_zero_page(t);
    check_unassigned_ports(t);
    check_cpu_state(t);
    check_cpuid(t);
    check_mptable(t);
}
