/* The virtio-mmio transport, driver side: device discovery from the command line, the
 * status/feature handshake (virtio 1.x §3.1.1), queue setup (§4.2.3.2), config space. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

_Static_assert(__builtin_offsetof(struct vq_mem, avail_flags) == 256, "avail ring offset");
_Static_assert(__builtin_offsetof(struct vq_mem, used_flags) == 512, "used ring offset");
_Static_assert(sizeof(struct vq_mem) == 4096, "one page per queue");

#define RESET_POLL_LIMIT 1000
#define TOKEN_PREFIX "virtio_mmio.device="

static struct virtio_dev devices[VIRTIO_MAX_DEVICES];
static int device_count = -1;
static int bad_tokens;

u32 virtio_read32(struct virtio_dev *d, u32 reg) { return mmio_read32(d->base + reg); }
void virtio_write32(struct virtio_dev *d, u32 reg, u32 v) { mmio_write32(d->base + reg, v); }
u32 virtio_status(struct virtio_dev *d) { return virtio_read32(d, VIRTIO_MMIO_STATUS); }

u8 virtio_config8(struct virtio_dev *d, u32 off) {
    return *(volatile u8 *)(d->base + VIRTIO_MMIO_CONFIG + off);
}
u32 virtio_config32(struct virtio_dev *d, u32 off) { return virtio_read32(d, VIRTIO_MMIO_CONFIG + off); }
/* A 64-bit field as two 32-bit reads, retried while ConfigGeneration moves (§4.2.2.2). */
u64 virtio_config64(struct virtio_dev *d, u32 off) {
    for (int tries = 0; tries < 4; tries++) {
        u32 gen = virtio_read32(d, VIRTIO_MMIO_CONFIG_GENERATION);
        u64 lo = virtio_config32(d, off), hi = virtio_config32(d, off + 4);
        if (virtio_read32(d, VIRTIO_MMIO_CONFIG_GENERATION) == gen) return lo | (hi << 32);
    }
    return 0;
}
void virtio_config_write32(struct virtio_dev *d, u32 off, u32 v) {
    virtio_write32(d, VIRTIO_MMIO_CONFIG + off, v);
}

/* "4K", "0x1000", "4096" → bytes; -1 when malformed. */
static int parse_size(const char *s, usize len, u64 *out) {
    u64 v = 0, mult = 1;
    if (len && (s[len - 1] == 'K' || s[len - 1] == 'k')) mult = 1024, len--;
    else if (len && (s[len - 1] == 'M' || s[len - 1] == 'm')) mult = 1024 * 1024, len--;
    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        for (usize i = 2; i < len; i++) {
            char c = s[i];
            u64 digit;
            if (c >= '0' && c <= '9') digit = (u64)(c - '0');
            else if (c >= 'a' && c <= 'f') digit = (u64)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') digit = (u64)(c - 'A' + 10);
            else return -1;
            v = v * 16 + digit;
        }
    } else if (parse_u64(s, len, &v)) {
        return -1;
    }
    *out = v * mult;
    return 0;
}

/* One token's value: SIZE@BASE:IRQ[:ID]. */
static void add_device(const char *v, usize len) {
    usize at = 0, colon, end;
    while (at < len && v[at] != '@') at++;
    colon = at;
    while (colon < len && v[colon] != ':') colon++;
    end = colon + 1;
    while (end < len && v[end] != ':') end++;
    u64 size, base, irq;
    if (at >= len || colon >= len || parse_size(v, at, &size) || size < 0x200 ||
        parse_size(v + at + 1, colon - at - 1, &base) || parse_u64(v + colon + 1, end - colon - 1, &irq) ||
        device_count >= VIRTIO_MAX_DEVICES) {
        bad_tokens++;
        return;
    }
    struct virtio_dev *d = &devices[device_count++];
    memset(d, 0, sizeof(*d));
    d->base = base;
    d->irq = (u32)irq;
    if (virtio_read32(d, VIRTIO_MMIO_MAGIC) != VIRTIO_MMIO_MAGIC_VALUE) return; /* id stays 0 */
    d->version = virtio_read32(d, VIRTIO_MMIO_VERSION);
    d->device_id = virtio_read32(d, VIRTIO_MMIO_DEVICE_ID);
}

static void discover(void) {
    if (device_count >= 0) return;
    device_count = 0;
    lapic_enable();
    const char *s = g_cmdline->text;
    usize n = strlen(s), plen = strlen(TOKEN_PREFIX);
    for (usize i = 0; i < n;) {
        while (i < n && s[i] == ' ') i++;
        usize start = i;
        while (i < n && s[i] != ' ') i++;
        if (i - start > plen && str_eq_n(s + start, TOKEN_PREFIX, plen))
            add_device(s + start + plen, i - start - plen);
    }
}

int virtio_device_count(void) {
    discover();
    return device_count;
}

struct virtio_dev *virtio_device(int i) {
    discover();
    return i >= 0 && i < device_count ? &devices[i] : NULL;
}

struct virtio_dev *virtio_find(u32 device_id, int nth) {
    discover();
    for (int i = 0; i < device_count; i++)
        if (devices[i].device_id == device_id && nth-- == 0) return &devices[i];
    return NULL;
}

int virtio_reset(struct virtio_dev *d) {
    virtio_write32(d, VIRTIO_MMIO_STATUS, 0);
    for (int i = 0; i < RESET_POLL_LIMIT; i++)
        if (virtio_status(d) == 0) return 0;
    return -1;
}

int virtio_begin_init(struct virtio_dev *d, u64 wanted, const char **why) {
    *why = "";
    if (d->version != 2) {
        *why = "not a virtio-mmio version 2 device";
        return -1;
    }
    if (virtio_reset(d)) {
        *why = "Status does not read 0 after reset";
        return -1;
    }
    virtio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
    virtio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    u64 lo = virtio_read32(d, VIRTIO_MMIO_DEVICE_FEATURES);
    virtio_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    u64 hi = virtio_read32(d, VIRTIO_MMIO_DEVICE_FEATURES);
    d->features = lo | (hi << 32);
    if (!(d->features & VIRTIO_F_VERSION_1)) {
        *why = "device does not offer VIRTIO_F_VERSION_1";
        virtio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FAILED);
        return -1;
    }
    d->accepted = d->features & (wanted | VIRTIO_F_VERSION_1);
    virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)d->accepted);
    virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, (u32)(d->accepted >> 32));
    virtio_write32(d, VIRTIO_MMIO_STATUS,
                   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    if (!(virtio_status(d) & VIRTIO_STATUS_FEATURES_OK)) {
        *why = "device did not keep FEATURES_OK";
        virtio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_FAILED);
        return -1;
    }
    return 0;
}

int virtq_setup(struct virtio_dev *d, struct vq *q, u16 index, struct vq_mem *mem, const char **why) {
    virtio_write32(d, VIRTIO_MMIO_QUEUE_SEL, index);
    if (virtio_read32(d, VIRTIO_MMIO_QUEUE_READY)) {
        *why = "queue already ready before setup";
        return -1;
    }
    u32 max = virtio_read32(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max == 0) {
        *why = "queue not available (QueueNumMax 0)";
        return -1;
    }
    memset(mem, 0, sizeof(*mem));
    q->dev = d;
    q->index = index;
    q->size = max < VQ_SIZE ? (u16)max : VQ_SIZE;
    q->mem = mem;
    q->avail_idx = 0;
    q->last_used = 0;
    q->free_head = 0;
    q->num_free = q->size;
    for (u16 i = 0; i < q->size; i++) mem->desc[i].next = (u16)(i + 1);
    u64 desc = (u64)mem->desc, avail = (u64)&mem->avail_flags, used = (u64)&mem->used_flags;
    virtio_write32(d, VIRTIO_MMIO_QUEUE_NUM, q->size);
    virtio_write32(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (u32)desc);
    virtio_write32(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (u32)(desc >> 32));
    virtio_write32(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (u32)avail);
    virtio_write32(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (u32)(avail >> 32));
    virtio_write32(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (u32)used);
    virtio_write32(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (u32)(used >> 32));
    virtio_write32(d, VIRTIO_MMIO_QUEUE_READY, 1);
    if (virtio_read32(d, VIRTIO_MMIO_QUEUE_READY) != 1) {
        *why = "QueueReady does not read back 1";
        return -1;
    }
    return 0;
}

void virtio_driver_ok(struct virtio_dev *d) {
    virtio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                              VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

u32 virtio_ack_interrupt(struct virtio_dev *d) {
    u32 bits = virtio_read32(d, VIRTIO_MMIO_INTERRUPT_STATUS);
    if (bits) virtio_write32(d, VIRTIO_MMIO_INTERRUPT_ACK, bits);
    return bits;
}

void virtio_route_irq(struct virtio_dev *d, u8 vector) {
    u32 a, b, c, dd;
    cpuid(1, 0, &a, &b, &c, &dd);
    ioapic_route(d->irq, vector, (u8)(b >> 24));
}

u32 fnv1a32(const void *p, usize n) {
    const u8 *b = p;
    u32 h = 0x811c9dc5u;
    for (usize i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x01000193u;
    }
    return h;
}

/* Test `virtio`: lists the devices the command line announces, as
 * `fact virtio_device=BASE:IRQ:DEVICE_ID` (hex, decimal, decimal), in command-line order. */
void test_virtio(struct test *t) {
    int n = virtio_device_count();
    kprintf("vmmtest: fact virtio_devices=%d\n", n);
    check(t, bad_tokens == 0, "%d virtio_mmio.device= tokens not understood (or too many)", bad_tokens);
    for (int i = 0; i < n; i++) {
        struct virtio_dev *d = &devices[i];
        kprintf("vmmtest: fact virtio_device=0x%lx:%u:%u\n", d->base, d->irq, d->device_id);
        check(t, d->device_id != 0, "no virtio-mmio device (magic) at 0x%lx", d->base);
        check(t, d->device_id == 0 || d->version == 2, "device at 0x%lx is version %u, not 2", d->base,
              d->version);
    }
}
