/* Test `up`: every virtio device on the command line brought up, used once and reset, so
 * that one run starts and stops every device worker the VMM has (`vmm bench soak` runs it
 * a thousand times to find what a VM leaves behind in the VMM). Per device: the handshake
 * (VERSION_1 only), every queue the device has without optional features, DRIVER_OK, one
 * request it answers without a host peer, then a reset. The requests: blk reads sector 0;
 * rng gives 16 bytes; vsock sends a REQUEST to host port 1, where nothing listens, and gets
 * RST back. Net only gets a receive buffer: a tap the VMM has just made is down, and the
 * kernel refuses frames sent to it. Balloon has none (its queues wait for the host's
 * target). Facts: up_devices, up_answered (requests answered as expected). */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define UP_MAX_QUEUES 3
#define UP_TIMEOUT_US 500000
#define UP_GUEST_PORT 1024
#define UP_HOST_PORT 1 /* <uds>_1: a socket nobody binds */
#define UP_RNG_BYTES 16
#define UP_VSOCK_DATA 64
#define UP_SECTOR 512
#define UP_NET_RX_LEN (NET_HDR_LEN + 1514) /* a whole frame, as without MRG_RXBUF */

static struct vq_mem up_rings[UP_MAX_QUEUES];
static struct vq up_queues[UP_MAX_QUEUES];
static u8 up_buf[2048] __attribute__((aligned(512)));
static struct vsock_hdr up_vsock_tx __attribute__((aligned(64)));
static struct vsock_hdr up_vsock_rx __attribute__((aligned(64)));

/* The queues of a device without optional features; 0 for a device this test does not know. */
static u16 queues_of(u32 device_id) {
    switch (device_id) {
    case VIRTIO_ID_BLOCK:
    case VIRTIO_ID_RNG:
        return 1;
    case VIRTIO_ID_NET:     /* receive, transmit */
    case VIRTIO_ID_BALLOON: /* inflate, deflate */
        return 2;
    case VIRTIO_ID_VSOCK: /* receive, transmit, event */
        return 3;
    default:
        return 0;
    }
}

/* A receive buffer, which waits for a frame that does not come. */
static int net_post_rx(void) {
    struct vbuf b = {(u64)up_buf, UP_NET_RX_LEN, 1};
    if (vq_add(&up_queues[0], &b, 1) < 0) return 0;
    vq_kick(&up_queues[0]);
    return -1;
}

/* A REQUEST to a host port nobody listens on; the device answers RST on the rx queue. */
static int vsock_refused(struct virtio_dev *d) {
    u64 cid = virtio_config64(d, 0);
    memset(&up_vsock_rx, 0, sizeof(up_vsock_rx));
    struct vbuf rx[2] = {{(u64)&up_vsock_rx, sizeof(up_vsock_rx), 1}, {(u64)up_buf, UP_VSOCK_DATA, 1}};
    if (vq_add(&up_queues[0], rx, 2) < 0) return 0;
    vq_kick(&up_queues[0]);
    up_vsock_tx = (struct vsock_hdr){
        .src_cid = cid,
        .dst_cid = VSOCK_HOST_CID,
        .src_port = UP_GUEST_PORT,
        .dst_port = UP_HOST_PORT,
        .type = VSOCK_TYPE_STREAM,
        .op = OP_REQUEST,
        .buf_alloc = UP_VSOCK_DATA,
    };
    struct vbuf tx = {(u64)&up_vsock_tx, sizeof(up_vsock_tx), 0};
    if (vq_transfer(&up_queues[1], &tx, 1, UP_TIMEOUT_US) < 0) return 0;
    return vq_wait_used(&up_queues[0], NULL, UP_TIMEOUT_US, 0) >= 0 && up_vsock_rx.op == OP_RST &&
           up_vsock_rx.dst_port == UP_GUEST_PORT;
}

/* The device's one request: 1 answered as expected, 0 not (or not made), -1 none to wait for. */
static int use_once(struct virtio_dev *d) {
    switch (d->device_id) {
    case VIRTIO_ID_BLOCK:
        return blk_request(&up_queues[0], VIRTIO_BLK_T_IN, 0, up_buf, UP_SECTOR, 1, 0) == VIRTIO_BLK_S_OK;
    case VIRTIO_ID_RNG: {
        struct vbuf b = {(u64)up_buf, UP_RNG_BYTES, 1};
        return vq_transfer(&up_queues[0], &b, 1, UP_TIMEOUT_US) > 0;
    }
    case VIRTIO_ID_NET:
        return net_post_rx();
    case VIRTIO_ID_VSOCK:
        return vsock_refused(d);
    default:
        return -1;
    }
}

void test_up(struct test *t) {
    int n = virtio_device_count(), answered = 0;
    check(t, n > 0, "no virtio device on the command line");
    for (int i = 0; i < n; i++) {
        struct virtio_dev *d = virtio_device(i);
        u16 queues = queues_of(d->device_id);
        check(t, queues > 0, "device %d at 0x%lx has ID %u, which this test does not know", i, d->base,
              d->device_id);
        if (!queues) continue;
        const char *why = "";
        int ready = !virtio_begin_init(d, 0, &why);
        for (u16 q = 0; ready && q < queues; q++) ready = !virtq_setup(d, &up_queues[q], q, &up_rings[q], &why);
        check(t, ready, "device %u at 0x%lx: %s", d->device_id, d->base, why);
        if (!ready) continue;
        virtio_driver_ok(d);
        int used = use_once(d);
        check(t, used != 0, "device %u at 0x%lx did not answer its request", d->device_id, d->base);
        answered += used > 0;
        check(t, virtio_reset(d) == 0, "device %u at 0x%lx did not reset", d->device_id, d->base);
    }
    kprintf("vmmtest: fact up_devices=%d\n", n);
    kprintf("vmmtest: fact up_answered=%d\n", answered);
}
