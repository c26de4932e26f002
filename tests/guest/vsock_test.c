/* Tests `vsock` and `vsockcredit`: the virtio-vsock device (§5.10), stream sockets.
 * `vsock`:
 *  1. Guest-initiated: port 1024 → host CID 2 port 5000 (the VMM connects a Unix socket to
 *     <uds>_5000); send "ping-from-guest", report what comes back, SHUTDOWN.
 *  2. Host-initiated: listen on port 5001 (a host process wrote "CONNECT 5001" to <uds>);
 *     answer the REQUEST, report the data, echo it back, close when the host does.
 * `vsockcredit`: listen on port 5002 advertising only 32 bytes of buffer space; the host
 *     writes 96 bytes at once. The device must never have more than 32 unconsumed bytes
 *     in flight to the guest: the guest consumes (and sends CREDIT_UPDATE) only when the
 *     data stops, so the rest must wait in the VMM for the credit.
 * Receive chains are header (44 bytes) + data descriptors; transmit likewise (header alone
 * for control packets); sends are synchronous. Credit (buf_alloc/fwd_cnt) is honoured. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define SHUTDOWN_BOTH 3
#define RX_QUEUE 0
#define TX_QUEUE 1
#define EVENT_QUEUE 2
#define RX_BUFS 8
#define RX_DATA_LEN 1024
#define BUF_ALLOC 65536
#define GUEST_PORT 1024
#define HOST_PORT 5000
#define LISTEN_PORT 5001
#define CREDIT_PORT 5002
#define SMALL_BUF_ALLOC 32
#define CREDIT_TOTAL 96
#define QUIET_US 100000
#define CONN_DATA_MAX 128
#define TX_TIMEOUT_US 200000

enum conn_state { CLOSED, LISTEN, CONNECTING, ESTABLISHED, PEER_SHUTDOWN };

struct conn {
    u32 local_port, peer_port;
    enum conn_state state;
    u32 peer_buf_alloc, peer_fwd_cnt, tx_cnt, fwd_cnt;
    u32 buf_alloc;      /* what we advertise */
    int defer_consume;  /* received data counts as consumed (fwd_cnt) only when told */
    u32 rx_cnt;         /* bytes received */
    u8 data[CONN_DATA_MAX + 1];
    u32 data_len;
    int got_rst;
};

static struct vq_mem vs_rx_ring, vs_tx_ring, vs_ev_ring;
static struct vsock_hdr rx_hdrs[RX_BUFS] __attribute__((section(".noinit"), aligned(64)));
static u8 rx_data[RX_BUFS][RX_DATA_LEN] __attribute__((section(".noinit"), aligned(4096)));
static struct vsock_hdr tx_hdr __attribute__((aligned(64)));
static u8 tx_data[CONN_DATA_MAX] __attribute__((aligned(64)));
static u8 event_buf[8] __attribute__((aligned(8)));

static struct vq rx, tx, ev;
static u64 guest_cid;
static struct conn conns[2];
static u32 stray_packets, tx_failures;

static void post_rx(int i) {
    struct vbuf b[2] = {{(u64)&rx_hdrs[i], sizeof(struct vsock_hdr), 1}, {(u64)rx_data[i], RX_DATA_LEN, 1}};
    vq_add(&rx, b, 2);
}

/* Sends one packet and waits for the device to use it. */
static int send_pkt(struct conn *c, u16 op, u32 flags, const void *data, u32 len) {
    tx_hdr.src_cid = guest_cid;
    tx_hdr.dst_cid = VSOCK_HOST_CID;
    tx_hdr.src_port = c->local_port;
    tx_hdr.dst_port = c->peer_port;
    tx_hdr.len = len;
    tx_hdr.type = VSOCK_TYPE_STREAM;
    tx_hdr.op = op;
    tx_hdr.flags = flags;
    tx_hdr.buf_alloc = c->buf_alloc ? c->buf_alloc : BUF_ALLOC;
    tx_hdr.fwd_cnt = c->fwd_cnt;
    if (len > CONN_DATA_MAX) len = CONN_DATA_MAX;
    if (len) memcpy(tx_data, data, len);
    struct vbuf b[2] = {{(u64)&tx_hdr, sizeof(tx_hdr), 0}, {(u64)tx_data, len, 0}};
    if (vq_transfer(&tx, b, len ? 2 : 1, TX_TIMEOUT_US) < 0) {
        tx_failures++;
        return -1;
    }
    if (op == OP_RW) c->tx_cnt += len;
    return 0;
}

static u32 peer_credit(const struct conn *c) { return c->peer_buf_alloc - (c->tx_cnt - c->peer_fwd_cnt); }

static struct conn *conn_for(const struct vsock_hdr *h) {
    for (int i = 0; i < 2; i++) {
        struct conn *c = &conns[i];
        if (c->state == CLOSED || c->local_port != h->dst_port) continue;
        if (c->state == LISTEN || c->peer_port == h->src_port) return c;
    }
    return NULL;
}

static void handle(const struct vsock_hdr *h, const u8 *data, u32 data_len) {
    struct conn *c = conn_for(h);
    if (!c || h->type != VSOCK_TYPE_STREAM || h->dst_cid != guest_cid) {
        stray_packets++;
        if (h->op != OP_RST) {
            struct conn tmp = {0};
            tmp.local_port = h->dst_port;
            tmp.peer_port = h->src_port;
            send_pkt(&tmp, OP_RST, 0, NULL, 0);
        }
        return;
    }
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    switch (h->op) {
    case OP_REQUEST:
        if (c->state == LISTEN) {
            c->peer_port = h->src_port;
            c->state = ESTABLISHED;
            send_pkt(c, OP_RESPONSE, 0, NULL, 0);
        }
        break;
    case OP_RESPONSE:
        if (c->state == CONNECTING) c->state = ESTABLISHED;
        break;
    case OP_RW: {
        u32 n = h->len < data_len ? h->len : data_len;
        for (u32 i = 0; i < n && c->data_len < CONN_DATA_MAX; i++) c->data[c->data_len++] = data[i];
        c->data[c->data_len] = 0;
        c->rx_cnt += h->len;
        if (!c->defer_consume) c->fwd_cnt += h->len;
        break;
    }
    case OP_CREDIT_REQUEST:
        send_pkt(c, OP_CREDIT_UPDATE, 0, NULL, 0);
        break;
    case OP_CREDIT_UPDATE:
        break;
    case OP_SHUTDOWN:
        c->state = PEER_SHUTDOWN;
        send_pkt(c, OP_RST, 0, NULL, 0);
        c->state = CLOSED;
        break;
    case OP_RST:
        c->got_rst = 1;
        c->state = CLOSED;
        break;
    default:
        stray_packets++;
    }
}

/* Handles received packets until done(c) or timeout_us; returns done(c). */
static int poll_until(struct conn *c, int (*done)(const struct conn *), u32 timeout_us) {
    u32 waited = 0;
    while (!done(c) && waited < timeout_us) {
        u32 len;
        lapic_clock_start();
        int head = -1;
        while ((head = vq_get_used(&rx, &len)) == -1 && lapic_clock_us() < timeout_us - waited) pause();
        waited += lapic_clock_us();
        lapic_clock_stop();
        if (head < 0) break;
        int i = -1;
        for (int k = 0; k < RX_BUFS; k++)
            if (rx.mem->desc[head].addr == (u64)&rx_hdrs[k]) i = k;
        if (i < 0) {
            stray_packets++;
            continue;
        }
        struct vsock_hdr h = rx_hdrs[i];
        u32 data_len = len > sizeof(h) ? len - (u32)sizeof(h) : 0;
        if (data_len > RX_DATA_LEN) data_len = RX_DATA_LEN;
        handle(&h, rx_data[i], data_len);
        post_rx(i);
        vq_kick(&rx);
    }
    return done(c);
}

static int is_established(const struct conn *c) { return c->state == ESTABLISHED || c->state == CLOSED; }
static int has_pong(const struct conn *c) { return c->data_len >= 14 || c->state == CLOSED; }
static int has_hello(const struct conn *c) { return c->data_len >= 15 || c->state == CLOSED; }
static int is_closed(const struct conn *c) { return c->state == CLOSED; }

static void print_ascii_fact(const char *key, const struct conn *c) {
    char text[CONN_DATA_MAX + 1];
    u32 n = 0;
    for (; n < c->data_len; n++) text[n] = c->data[n] >= 0x20 && c->data[n] <= 0x7e ? (char)c->data[n] : '?';
    text[n] = 0;
    kprintf("vmmtest: fact %s=%s\n", key, text);
}

static int vsock_init(struct virtio_dev *d, const char **why) {
    if (virtio_begin_init(d, 0, why) || virtq_setup(d, &rx, RX_QUEUE, &vs_rx_ring, why) ||
        virtq_setup(d, &tx, TX_QUEUE, &vs_tx_ring, why) || virtq_setup(d, &ev, EVENT_QUEUE, &vs_ev_ring, why))
        return -1;
    guest_cid = virtio_config64(d, 0);
    int bufs = RX_BUFS < rx.size / 2 ? RX_BUFS : rx.size / 2;
    for (int i = 0; i < bufs; i++) post_rx(i);
    struct vbuf e = {(u64)event_buf, sizeof(event_buf), 1};
    vq_add(&ev, &e, 1);
    virtio_driver_ok(d);
    vq_kick(&rx);
    vq_kick(&ev);
    return 0;
}

void test_vsock(struct test *t) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_VSOCK, 0);
    check(t, d != NULL, "no virtio-vsock device on the command line");
    if (!d) return;
    const char *why;
    memset(conns, 0, sizeof(conns));
    stray_packets = tx_failures = 0;
    if (vsock_init(d, &why)) {
        check(t, 0, "init: %s (status 0x%x)", why, virtio_status(d));
        return;
    }
    kprintf("vmmtest: fact vsock_cid=%lu\n", guest_cid);
    check(t, guest_cid > 2, "guest CID %lu is reserved", guest_cid);

    /* 1. Guest → host port 5000. */
    struct conn *c = &conns[0];
    c->local_port = GUEST_PORT;
    c->peer_port = HOST_PORT;
    c->state = CONNECTING;
    send_pkt(c, OP_REQUEST, 0, NULL, 0);
    poll_until(c, is_established, 1000000);
    check(t, c->state == ESTABLISHED, "no RESPONSE to the REQUEST for host port %d (state %d, rst %d)", HOST_PORT,
          c->state, c->got_rst);
    if (c->state == ESTABLISHED) {
        static const char ping[] = "ping-from-guest";
        check(t, peer_credit(c) >= sizeof(ping) - 1, "host gives %u bytes of credit", peer_credit(c));
        send_pkt(c, OP_RW, 0, ping, sizeof(ping) - 1);
        poll_until(c, has_pong, 1000000);
        print_ascii_fact("vsock_rx", c);
        check(t, c->data_len > 0, "no data from host port %d", HOST_PORT);
        if (c->state != CLOSED) {
            send_pkt(c, OP_SHUTDOWN, SHUTDOWN_BOTH, NULL, 0);
            poll_until(c, is_closed, 500000);
            kprintf("vmmtest: fact vsock_close=%s\n", c->got_rst ? "rst_from_host" : "rst_sent");
            if (!c->got_rst) send_pkt(c, OP_RST, 0, NULL, 0);
            c->state = CLOSED;
        }
    }

    /* 2. Host → guest port 5001. */
    c = &conns[1];
    c->local_port = LISTEN_PORT;
    c->state = LISTEN;
    kprintf("vmmtest: vsock listening port=%d\n", LISTEN_PORT);
    int accepted = 0;
    for (int i = 0; i < 3 && !accepted; i++) {
        poll_until(c, is_established, 1000000);
        accepted = c->state == ESTABLISHED;
    }
    check(t, accepted, "no connection to port %d within 3 s (state %d)", LISTEN_PORT, c->state);
    if (accepted) {
        kprintf("vmmtest: fact vsock_host_port=%u\n", c->peer_port);
        poll_until(c, has_hello, 1000000);
        print_ascii_fact("vsock_host_rx", c);
        check(t, c->data_len > 0, "no data on the host-initiated connection");
        if (c->state == ESTABLISHED && c->data_len) {
            check(t, peer_credit(c) >= c->data_len, "host gives %u bytes of credit", peer_credit(c));
            send_pkt(c, OP_RW, 0, c->data, c->data_len);
        }
        poll_until(c, is_closed, 1000000);
        kprintf("vmmtest: fact vsock_host_close=%s\n", c->state == CLOSED ? "peer" : "timeout");
        if (c->state != CLOSED) send_pkt(c, OP_RST, 0, NULL, 0);
    }
    kprintf("vmmtest: fact vsock_stray_packets=%u\n", stray_packets);
    check(t, tx_failures == 0, "%u packets were not used by the device within 200 ms", tx_failures);
    virtio_reset(d);
}

static int has_credit_total(const struct conn *c) { return c->rx_cnt >= CREDIT_TOTAL || c->state == CLOSED; }

void test_vsockcredit(struct test *t) {
    struct virtio_dev *d = virtio_find(VIRTIO_ID_VSOCK, 0);
    check(t, d != NULL, "no virtio-vsock device on the command line");
    if (!d) return;
    const char *why;
    memset(conns, 0, sizeof(conns));
    stray_packets = tx_failures = 0;
    if (vsock_init(d, &why)) {
        check(t, 0, "init: %s (status 0x%x)", why, virtio_status(d));
        return;
    }
    struct conn *c = &conns[0];
    c->local_port = CREDIT_PORT;
    c->state = LISTEN;
    c->buf_alloc = SMALL_BUF_ALLOC;
    c->defer_consume = 1;
    kprintf("vmmtest: vsock listening port=%d\n", CREDIT_PORT);
    int accepted = 0;
    for (int i = 0; i < 3 && !accepted; i++) {
        poll_until(c, is_established, 1000000);
        accepted = c->state == ESTABLISHED;
    }
    check(t, accepted, "no connection to port %d within 3 s (state %d)", CREDIT_PORT, c->state);
    if (!accepted) return;
    u32 max_unconsumed = 0, updates = 0;
    for (int round = 0; round < 20 && !has_credit_total(c); round++) {
        /* Take what comes until the device stops for QUIET_US: out of credit, it must. */
        u32 before;
        do {
            before = c->rx_cnt;
            poll_until(c, has_credit_total, QUIET_US);
            u32 unconsumed = c->rx_cnt - c->fwd_cnt;
            if (unconsumed > max_unconsumed) max_unconsumed = unconsumed;
        } while (c->rx_cnt != before && !has_credit_total(c));
        c->fwd_cnt = c->rx_cnt; /* consume everything, then tell the device */
        if (c->state == ESTABLISHED) {
            send_pkt(c, OP_CREDIT_UPDATE, 0, NULL, 0);
            updates++;
        }
    }
    kprintf("vmmtest: fact vsock_credit_total=%u\n", c->rx_cnt);
    kprintf("vmmtest: fact vsock_credit_max_unconsumed=%u\n", max_unconsumed);
    kprintf("vmmtest: fact vsock_credit_updates=%u\n", updates);
    int in_order = c->data_len == CREDIT_TOTAL;
    for (u32 i = 0; in_order && i < c->data_len; i++) in_order = c->data[i] == (u8)('A' + i % 26);
    kprintf("vmmtest: fact vsock_credit_data_ok=%d\n", in_order);
    check(t, c->rx_cnt == CREDIT_TOTAL, "got %u of %d bytes", c->rx_cnt, CREDIT_TOTAL);
    check(t, max_unconsumed <= SMALL_BUF_ALLOC, "the device sent %u bytes over a %d-byte credit",
          max_unconsumed, SMALL_BUF_ALLOC);
    check(t, in_order, "the data is not 'A'..'Z' repeated, in order");
    /* The host closes once it has seen vsock_credit_total: wait for that, then RST. */
    poll_until(c, is_closed, 1000000);
    if (c->state != CLOSED) send_pkt(c, OP_RST, 0, NULL, 0);
    check(t, tx_failures == 0, "%u packets were not used by the device within 200 ms", tx_failures);
    virtio_reset(d);
}
