/* Accessors for the Linux boot_params ("zero page") the VMM wrote; RSI pointed at it on
 * entry. Offsets from Documentation/arch/x86/zero-page.rst and boot.rst. */
#include "guest.h"
#include "x86.h"

#define ZP_E820_ENTRIES 0x1e8    /* u8 */
#define ZP_BOOT_FLAG 0x1fe       /* u16, setup_header starts at 0x1f1 */
#define ZP_HEADER 0x202          /* u32 "HdrS" */
#define ZP_RAMDISK_IMAGE 0x218   /* u32 */
#define ZP_RAMDISK_SIZE 0x21c    /* u32 */
#define ZP_CMD_LINE_PTR 0x228    /* u32 */
#define ZP_CMDLINE_SIZE 0x238    /* u32 */
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE 0x0c4
#define ZP_EXT_CMD_LINE_PTR 0x0c8
#define ZP_E820_TABLE 0x2d0      /* 128 × { u64 addr; u64 size; u32 type } */
#define E820_ENTRY_SIZE 20
#define E820_MAX_ENTRIES 128

/* The zero page as the entry RSI gave it (0x7000 by contract; boot checks that). */
const u8 *zero_page(void) { return (const u8 *)(boot_entry_rsi ? boot_entry_rsi : ZERO_PAGE_ADDR); }

static u64 zp(u32 off) { return (u64)zero_page() + off; }

u16 zp_boot_flag(void) { return phys_read16(zp(ZP_BOOT_FLAG)); }
u32 zp_header_magic(void) { return phys_read32(zp(ZP_HEADER)); }

u32 zp_e820_count(void) {
    u32 n = phys_read8(zp(ZP_E820_ENTRIES));
    return n > E820_MAX_ENTRIES ? E820_MAX_ENTRIES : n;
}

void zp_e820_entry(u32 i, u64 *addr, u64 *size, u32 *type) {
    u64 e = zp(ZP_E820_TABLE) + (u64)i * E820_ENTRY_SIZE;
    *addr = phys_read64(e);
    *size = phys_read64(e + 8);
    *type = phys_read32(e + 16);
}

u64 zp_cmdline_ptr(void) {
    return phys_read32(zp(ZP_CMD_LINE_PTR)) | ((u64)phys_read32(zp(ZP_EXT_CMD_LINE_PTR)) << 32);
}
u32 zp_cmdline_size(void) { return phys_read32(zp(ZP_CMDLINE_SIZE)); }

u64 zp_ramdisk_image(void) {
    return phys_read32(zp(ZP_RAMDISK_IMAGE)) | ((u64)phys_read32(zp(ZP_EXT_RAMDISK_IMAGE)) << 32);
}
u64 zp_ramdisk_size(void) {
    return phys_read32(zp(ZP_RAMDISK_SIZE)) | ((u64)phys_read32(zp(ZP_EXT_RAMDISK_SIZE)) << 32);
}
