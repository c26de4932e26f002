/* A tiny virtio-mmio (version 2, VIRTIO_F_VERSION_1) driver with split virtqueues, for the
 * virtio tests. Devices are found from the `virtio_mmio.device=4K@0xd0000000:5` tokens of
 * the command line (Linux's format), each a register window in the MMIO gap (mapped
 * uncached by paging.c) with an IOAPIC pin. Everything is polled with bounded waits on the
 * LAPIC-timer clock; the blk test also routes the pin and counts interrupts. */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "guest.h"

/* ---- virtio-mmio registers (virtio 1.x §4.2.2) ---- */
#define VIRTIO_MMIO_MAGIC 0x000 /* "virt" = 0x74726976 */
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100
#define VIRTIO_MMIO_MAGIC_VALUE 0x74726976u

/* ---- device status bits (§2.1) ---- */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTIO_F_VERSION_1 (1UL << 32)

/* ---- device IDs ---- */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

/* ---- split virtqueue layout (§2.7) ---- */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

struct vring_desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};
struct vring_used_elem {
    u32 id;
    u32 len;
};

/* Entries per queue this driver uses (or QueueNumMax, if smaller). */
#define VQ_SIZE 16

/* The memory of one queue, one page: descriptor table, available ring, used ring. */
struct vq_mem {
    struct vring_desc desc[VQ_SIZE];                          /* 256 bytes, 16 aligned */
    u16 avail_flags, avail_idx, avail_ring[VQ_SIZE], used_event; /* at 256, 2 aligned */
    u8 pad[256 - 6 - 2 * VQ_SIZE];
    u16 used_flags, used_idx;                                 /* at 512, 4 aligned */
    struct vring_used_elem used_ring[VQ_SIZE];
    u16 avail_event;
} __attribute__((aligned(4096)));

struct virtio_dev;

struct vq {
    struct virtio_dev *dev;
    u16 index;
    u16 size;          /* entries in use: min(VQ_SIZE, QueueNumMax) */
    struct vq_mem *mem;
    u16 free_head;     /* free descriptors, linked by .next */
    u16 num_free;
    u16 avail_idx;     /* our copy of avail.idx */
    u16 last_used;     /* used entries consumed so far */
};

/* One buffer of a chain; device_writes marks a device-writable (VIRTQ_DESC_F_WRITE) one. */
struct vbuf {
    u64 addr;
    u32 len;
    int device_writes;
};

#define VIRTIO_MAX_DEVICES 16

struct virtio_dev {
    u64 base;          /* MMIO window */
    u32 irq;           /* IOAPIC pin */
    u32 device_id;
    u32 version;
    u64 features;      /* what the device offered */
    u64 accepted;      /* what we accepted */
};

/* ---- virtio.c ---- */
/* Parses the command line's virtio_mmio.device= tokens (once) and probes each window. */
int virtio_device_count(void);
struct virtio_dev *virtio_device(int i);
/* The n-th (0-based) device with this device ID, or NULL. */
struct virtio_dev *virtio_find(u32 device_id, int nth);
u32 virtio_read32(struct virtio_dev *d, u32 reg);
void virtio_write32(struct virtio_dev *d, u32 reg, u32 v);
u8 virtio_config8(struct virtio_dev *d, u32 off);
u32 virtio_config32(struct virtio_dev *d, u32 off);
u64 virtio_config64(struct virtio_dev *d, u32 off);
void virtio_config_write32(struct virtio_dev *d, u32 off, u32 v);
u32 virtio_status(struct virtio_dev *d);
/* Writes 0 to Status and waits (bounded) until it reads back 0. */
int virtio_reset(struct virtio_dev *d);
/* Reset, ACKNOWLEDGE, DRIVER, features (VERSION_1 | (offered & wanted)), FEATURES_OK.
 * 0 on success; -1 with a reason in *why. */
int virtio_begin_init(struct virtio_dev *d, u64 wanted, const char **why);
/* Sets up queue `index` on `mem`; 0 on success. */
int virtq_setup(struct virtio_dev *d, struct vq *q, u16 index, struct vq_mem *mem, const char **why);
void virtio_driver_ok(struct virtio_dev *d);
/* Reads and acknowledges InterruptStatus; returns the bits that were set. */
u32 virtio_ack_interrupt(struct virtio_dev *d);
/* Routes the device's IOAPIC pin to `vector` on the BSP (edge, as irqfd pulses it). */
void virtio_route_irq(struct virtio_dev *d, u8 vector);

/* ---- virtq.c ---- */
/* Puts a chain of n buffers in the descriptor table and the available ring (no notify).
 * Returns the head index, or -1 when the queue is out of descriptors. */
int vq_add(struct vq *q, const struct vbuf *bufs, int n);
void vq_kick(struct vq *q);
/* Takes one used entry, if there is one: returns its head (and *len), frees its chain. */
int vq_get_used(struct vq *q, u32 *len);
/* Waits up to timeout_us for a used entry (interrupts on while waiting when irqs_on). */
int vq_wait_used(struct vq *q, u32 *len, u32 timeout_us, int irqs_on);
/* Adds, notifies and waits for the chain; returns the used length or -1 on timeout. */
i64 vq_transfer(struct vq *q, const struct vbuf *bufs, int n, u32 timeout_us);

/* ---- helpers shared by the virtio tests ---- */
u32 fnv1a32(const void *p, usize n);
/* Microseconds since the clock was last started (lapic_clock_start). */
static inline u32 clock_us(void) { return lapic_clock_us(); }

/* Vectors for the virtio devices' pins: 0x50 + pin. */
#define VEC_VIRTIO_BASE 0x50

/* ---- virtio-blk (§5.2) ---- */
#define VIRTIO_BLK_F_RO (1UL << 5)
#define VIRTIO_BLK_F_FLUSH (1UL << 9)
#define VIRTIO_BLK_CFG_CAPACITY 0 /* le64, in 512-byte sectors */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
struct blk_req_hdr {
    u32 type;
    u32 reserved;
    u64 sector;
};
/* blk_test.c: init (VERSION_1, FLUSH, RO) with queue 0 on `ring`; 0 or -1 with *why. */
int blk_init(struct virtio_dev *d, struct vq *q, struct vq_mem *ring, const char **why);
/* Queues header / data / status (data NULL: header / status) and notifies; head or -1. */
int blk_submit(struct vq *q, u32 type, u64 sector, void *data, u32 len, int device_writes);
/* blk_submit and wait: the status byte, -1 on timeout, -2 when the queue is full. */
int blk_request(struct vq *q, u32 type, u64 sector, void *data, u32 len, int device_writes, int irqs_on);

/* ---- virtio-net (§5.1) ---- */
#define NET_HDR_LEN 12 /* virtio_net_hdr_v1, num_buffers included */
#define ETH_HLEN 14
#define ETH_MIN_FRAME 60
#define ETHERTYPE_TEST 0x88b5 /* IEEE local experimental: what the tests send */

/* ---- virtio-vsock (§5.10) ---- */
#define VSOCK_HOST_CID 2
#define VSOCK_TYPE_STREAM 1
#define OP_REQUEST 1
#define OP_RESPONSE 2
#define OP_RST 3
#define OP_SHUTDOWN 4
#define OP_RW 5
#define OP_CREDIT_UPDATE 6
#define OP_CREDIT_REQUEST 7
struct vsock_hdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

/* rng_test.c: 64 bytes from the first virtio-rng device into out; the count or -1. */
int rng_read64(const char **why, u8 *out);

/* ---- the tests ---- */
void test_virtio(struct test *t);
void test_blk(struct test *t);
void test_blkro(struct test *t);
void test_blkrate(struct test *t);
void test_blkswap(struct test *t);
void test_rng(struct test *t);
void test_net(struct test *t);
void test_vsock(struct test *t);
void test_vsockcredit(struct test *t);
void test_balloon(struct test *t);
void test_balloonstats(struct test *t);
void test_hostile(struct test *t);
void test_up(struct test *t);

#endif
