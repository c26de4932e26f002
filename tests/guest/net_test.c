/* Test `net`: the first virtio-net device. Receive buffers (virtio_net_hdr_v1 + 1514) on
 * queue 0, transmit on queue 1. Sends a broadcast frame of ethertype 0x88b5 (IEEE local
 * experimental) carrying "vmm-net-tx-test", again every 200 ms until the host's answer, a
 * frame of the same ethertype, arrives (the host side may attach to the tap only after
 * the VM started), for at most 3 s. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define VIRTIO_NET_F_MAC (1UL << 5)
#define ETH_FRAME_MAX 1514
#define RX_BUF_LEN (NET_HDR_LEN + ETH_FRAME_MAX)
#define RX_BUFS 8
#define RX_QUEUE 0
#define TX_QUEUE 1
#define RESEND_US 200000
#define NET_WAIT_US 3000000
#define MAX_PAYLOAD_PRINT 64

static const char tx_payload[] = "vmm-net-tx-test";

static struct vq_mem net_rx_ring, net_tx_ring;
static u8 rx_bufs[RX_BUFS][2048] __attribute__((section(".noinit"), aligned(4096)));
static u8 tx_buf[NET_HDR_LEN + ETH_MIN_FRAME] __attribute__((aligned(64)));

static void post_rx(struct vq *rx, int i) {
    struct vbuf b = {(u64)rx_bufs[i], RX_BUF_LEN, 1};
    vq_add(rx, &b, 1);
}

/* The buffer index of a used rx head (heads are assigned in post order, so map back). */
static int rx_index_of(struct vq *rx, int head) {
    u64 addr = rx->mem->desc[head].addr;
    for (int i = 0; i < RX_BUFS; i++)
        if ((u64)rx_bufs[i] == addr) return i;
    return -1;
}

static void build_frame(const u8 mac[6]) {
    memset(tx_buf, 0, sizeof(tx_buf));
    u8 *f = tx_buf + NET_HDR_LEN;
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = ETHERTYPE_TEST >> 8;
    f[13] = ETHERTYPE_TEST & 0xff;
    memcpy(f + ETH_HLEN, tx_payload, sizeof(tx_payload) - 1);
}

void test_net(struct test *t) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_NET, 0);
    check(t, d != NULL, "no virtio-net device on the command line");
    if (!d) return;
    struct vq rx, tx;
    const char *why;
    if (virtio_begin_init(d, VIRTIO_NET_F_MAC, &why) || virtq_setup(d, &rx, RX_QUEUE, &net_rx_ring, &why) ||
        virtq_setup(d, &tx, TX_QUEUE, &net_tx_ring, &why)) {
        check(t, 0, "init: %s (status 0x%x)", why, virtio_status(d));
        return;
    }
    u8 mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
    if (d->accepted & VIRTIO_NET_F_MAC)
        for (int i = 0; i < 6; i++) mac[i] = virtio_config8(d, (u32)i);
    check(t, (d->accepted & VIRTIO_NET_F_MAC) != 0, "device offers no MAC (features 0x%lx)", d->features);
    kprintf("vmmtest: fact net_mac=%02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3], mac[4],
            mac[5]);
    int rx_posted = RX_BUFS < rx.size ? RX_BUFS : rx.size;
    for (int i = 0; i < rx_posted; i++) post_rx(&rx, i);
    virtio_driver_ok(d);
    vq_kick(&rx);
    build_frame(mac);

    u32 sent = 0, tx_done = 0, frames_seen = 0, last_send = 0;
    int got_reply = 0;
    lapic_clock_start();
    for (u32 now = 0; now < NET_WAIT_US && !got_reply; now = lapic_clock_us()) {
        if (sent == 0 || now - last_send >= RESEND_US) {
            while (vq_get_used(&tx, NULL) >= 0) tx_done++;
            struct vbuf b = {(u64)tx_buf, sizeof(tx_buf), 0};
            if (vq_add(&tx, &b, 1) >= 0) {
                vq_kick(&tx);
                sent++;
            }
            last_send = now;
        }
        u32 len;
        int head = vq_get_used(&rx, &len);
        if (head < 0) {
            pause();
            continue;
        }
        frames_seen++;
        int i = rx_index_of(&rx, head);
        if (i < 0) {
            check(t, 0, "used rx head %d has no buffer of ours", head);
            break;
        }
        const u8 *f = rx_bufs[i] + NET_HDR_LEN;
        if (len >= NET_HDR_LEN + ETH_HLEN && f[12] == (ETHERTYPE_TEST >> 8) && f[13] == (ETHERTYPE_TEST & 0xff)) {
            char text[MAX_PAYLOAD_PRINT + 1];
            u32 n = 0, avail = len - NET_HDR_LEN - ETH_HLEN;
            while (n < avail && n < MAX_PAYLOAD_PRINT && f[ETH_HLEN + n] >= 0x20 && f[ETH_HLEN + n] <= 0x7e) {
                text[n] = (char)f[ETH_HLEN + n];
                n++;
            }
            text[n] = 0;
            kprintf("vmmtest: fact net_rx_payload=%s\n", text);
            kprintf("vmmtest: fact net_rx_src=%02x:%02x:%02x:%02x:%02x:%02x\n", f[6], f[7], f[8], f[9], f[10],
                    f[11]);
            got_reply = 1;
        }
        post_rx(&rx, i);
        vq_kick(&rx);
    }
    lapic_clock_stop();
    delay_us(1000);
    while (vq_get_used(&tx, NULL) >= 0) tx_done++;
    kprintf("vmmtest: fact net_tx_frames=%u\n", sent);
    kprintf("vmmtest: fact net_tx_used=%u\n", tx_done);
    kprintf("vmmtest: fact net_rx_frames=%u\n", frames_seen);
    check(t, tx_done >= 1, "the device used none of %u transmitted frames", sent);
    check(t, got_reply, "no frame of ethertype 0x%x from the host within %u ms", ETHERTYPE_TEST,
          NET_WAIT_US / 1000);
    virtio_reset(d);
}
