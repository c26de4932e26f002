/* MP specification 1.4 table: the floating pointer "_MP_" on a 16-byte boundary in the
 * last KiB of conventional memory (EBDA) or the BIOS ROM area, pointing at the "PCMP"
 * configuration table whose processor entries list the CPUs. */
#include "guest.h"
#include "x86.h"

#define MPF_SIGNATURE 0x5f504d5fU   /* "_MP_" */
#define MPC_SIGNATURE 0x504d4350U   /* "PCMP" */
#define MPC_HEADER_SIZE 44
#define MPC_ENTRY_PROCESSOR 0
#define MPC_PROCESSOR_SIZE 20
#define MPC_OTHER_SIZE 8
#define CPU_ENABLED 0x1
#define CPU_BSP 0x2

static u8 checksum(u64 addr, u32 len) {
    u8 sum = 0;
    for (u32 i = 0; i < len; i++) sum = (u8)(sum + phys_read8(addr + i));
    return sum;
}

static u64 find_fps(u64 start, u64 end) {
    for (u64 a = start; a + 16 <= end; a += 16)
        if (phys_read32(a) == MPF_SIGNATURE) return a;
    return 0;
}

static void read_table(struct mp_info *mp) {
    u64 t = mp->table_addr;
    if (phys_read32(t) != MPC_SIGNATURE) return;
    u16 length = phys_read16(t + 4);
    u16 count = phys_read16(t + 0x22);
    mp->table_checksum_ok = length >= MPC_HEADER_SIZE && checksum(t, length) == 0;
    u64 e = t + MPC_HEADER_SIZE, end = t + length;
    for (u16 i = 0; i < count && e < end; i++) {
        u8 type = phys_read8(e);
        if (type == MPC_ENTRY_PROCESSOR) {
            u8 apic_id = phys_read8(e + 1), flags = phys_read8(e + 3);
            if ((flags & CPU_ENABLED) && mp->cpus < MAX_CPUS) {
                if (flags & CPU_BSP) mp->bsp_index = mp->cpus;
                mp->apic_ids[mp->cpus++] = apic_id;
            }
            e += MPC_PROCESSOR_SIZE;
        } else if (type <= 4) {
            e += MPC_OTHER_SIZE;
        } else {
            break; /* unknown entry type: its size is unknown too */
        }
    }
}

void mptable_read(struct mp_info *mp) {
    memset(mp, 0, sizeof(*mp));
    mp->bsp_index = -1;
    u64 fps = find_fps(0x9fc00, 0xa0000);
    if (!fps) fps = find_fps(0xf0000, 0x100000);
    if (!fps) return;
    mp->found = 1;
    mp->fps_addr = fps;
    u8 len16 = phys_read8(fps + 8);
    mp->fps_checksum_ok = len16 != 0 && checksum(fps, (u32)len16 * 16) == 0;
    mp->table_addr = phys_read32(fps + 4);
    if (mp->table_addr) read_table(mp);
}
