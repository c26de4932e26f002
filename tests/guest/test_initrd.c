/* Test `initrd`: the VMM loaded the initrd page aligned and told the guest where, through
 * boot_params ramdisk_image/ramdisk_size. The host checks the FNV-1a hash of its bytes. */
#include "guest.h"
#include "x86.h"

#define FNV_OFFSET_BASIS 0x811c9dc5u
#define FNV_PRIME 0x01000193u

static u32 fnv1a(const u8 *p, u64 n) {
    u32 h = FNV_OFFSET_BASIS;
    for (u64 i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

void test_initrd(struct test *t) {
    u64 addr = zp_ramdisk_image(), size = zp_ramdisk_size();
    kprintf("vmmtest: fact initrd_addr=0x%lx\n", addr);
    kprintf("vmmtest: fact initrd_size=%lu\n", size);
    check(t, addr != 0 && size != 0, "no initrd in the zero page");
    if (!addr || !size) return;
    check(t, (addr & 0xfff) == 0, "initrd at 0x%lx is not page aligned", addr);
    kprintf("vmmtest: fact initrd_fnv1a=0x%08x\n", fnv1a((const u8 *)addr, size));
}
