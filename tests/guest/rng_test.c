/* Test `rng`: 64 bytes from the virtio-rng device (one device-writable buffer; the device
 * may fill less than asked, so ask again until 64 have come). */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define RNG_BYTES 64
#define RNG_TIMEOUT_US 500000
#define RNG_MAX_REQUESTS 8

static struct vq_mem rng_ring;
static u8 rng_buf[RNG_BYTES] __attribute__((aligned(64)));

/* Reads up to RNG_BYTES into rng_buf; returns the byte count, or -1 with *why. */
int rng_read64(const char **why, u8 *out) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_RNG, 0);
    if (!d) {
        *why = "no virtio-rng device on the command line";
        return -1;
    }
    struct vq q;
    if (virtio_begin_init(d, 0, why) || virtq_setup(d, &q, 0, &rng_ring, why)) return -1;
    virtio_driver_ok(d);
    u32 got = 0;
    memset(rng_buf, 0, sizeof(rng_buf));
    for (int i = 0; i < RNG_MAX_REQUESTS && got < RNG_BYTES; i++) {
        struct vbuf b = {(u64)rng_buf + got, RNG_BYTES - got, 1};
        i64 len = vq_transfer(&q, &b, 1, RNG_TIMEOUT_US);
        if (len < 0) {
            *why = "no used buffer within 500 ms";
            break;
        }
        got += (u32)len > RNG_BYTES - got ? RNG_BYTES - got : (u32)len;
    }
    virtio_reset(d);
    memcpy(out, rng_buf, RNG_BYTES);
    return (int)got;
}

void test_rng(struct test *t) {
    const char *why = "";
    u8 bytes[RNG_BYTES];
    int n = rng_read64(&why, bytes);
    check(t, n >= 0, "%s", why);
    if (n < 0) return;
    kprintf("vmmtest: fact rng_len=%d\n", n);
    check(t, n == RNG_BYTES, "got %d bytes, want %d (%s)", n, RNG_BYTES, why);
    int all_equal = 1;
    for (int i = 1; i < n; i++) all_equal &= bytes[i] == bytes[0];
    check(t, !all_equal, "all %d bytes are 0x%02x", n, bytes[0]);
    kprintf("vmmtest: fact rng_first8=%02x%02x%02x%02x%02x%02x%02x%02x\n", bytes[0], bytes[1], bytes[2],
            bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]);
}
