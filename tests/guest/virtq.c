/* Split virtqueues, driver side (virtio 1.x §2.7): a free list of descriptors, adding a
 * chain to the available ring, notifying, and taking used entries with a bounded wait.
 * x86 keeps stores in order and loads in order, so compiler barriers are enough between
 * filling descriptors, publishing avail.idx and reading the used ring; the notify is an
 * uncached MMIO write that leaves the vCPU after all earlier stores. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

int vq_add(struct vq *q, const struct vbuf *bufs, int n) {
    if (n <= 0 || n > q->num_free) return -1;
    volatile struct vring_desc *desc = q->mem->desc;
    u16 head = q->free_head, i = head, last = head;
    for (int k = 0; k < n; k++) {
        desc[i].addr = bufs[k].addr;
        desc[i].len = bufs[k].len;
        desc[i].flags = (u16)((bufs[k].device_writes ? VIRTQ_DESC_F_WRITE : 0) |
                              (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        last = i;
        i = desc[i].next;
    }
    q->free_head = desc[last].next; /* the chain keeps its .next links to itself */
    q->num_free = (u16)(q->num_free - n);
    volatile u16 *ring = q->mem->avail_ring;
    ring[q->avail_idx % q->size] = head;
    barrier();
    q->avail_idx++;
    *(volatile u16 *)&q->mem->avail_idx = q->avail_idx;
    barrier();
    return head;
}

void vq_kick(struct vq *q) {
    barrier();
    virtio_write32(q->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
}

int vq_get_used(struct vq *q, u32 *len) {
    volatile struct vq_mem *m = q->mem;
    if (m->used_idx == q->last_used) return -1;
    barrier();
    volatile struct vring_used_elem *e = &m->used_ring[q->last_used % q->size];
    u32 id = e->id, l = e->len;
    q->last_used++;
    if (len) *len = l;
    if (id >= q->size) return -2; /* a device bug: report it, free nothing */
    /* Give the chain back to the free list. */
    u16 i = (u16)id, count = 1;
    while ((m->desc[i].flags & VIRTQ_DESC_F_NEXT) && count < q->size) {
        i = m->desc[i].next;
        count++;
    }
    m->desc[i].next = q->free_head;
    q->free_head = (u16)id;
    q->num_free = (u16)(q->num_free + count);
    return (int)id;
}

int vq_wait_used(struct vq *q, u32 *len, u32 timeout_us, int irqs_on) {
    lapic_clock_start();
    int got = -1;
    if (irqs_on) sti();
    for (;;) {
        got = vq_get_used(q, len);
        if (got != -1 || lapic_clock_us() >= timeout_us) break;
        pause();
    }
    if (irqs_on) cli();
    lapic_clock_stop();
    return got;
}

i64 vq_transfer(struct vq *q, const struct vbuf *bufs, int n, u32 timeout_us) {
    if (vq_add(q, bufs, n) < 0) return -1;
    vq_kick(q);
    u32 len = 0;
    if (vq_wait_used(q, &len, timeout_us, 0) < 0) return -1;
    return len;
}
