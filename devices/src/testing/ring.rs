//! The driver side of one split virtqueue (virtio 1.x §2.7) in guest memory: what a guest
//! driver writes (descriptors, the available ring) and reads back (the used ring).
//!
//! Not `virtio_queue::mock::MockSplitQueue`: in virtio-queue 0.18 its layout places the
//! used ring only `size` bytes after the avail ring (`SplitQueueRing::end` counts
//! elements, not bytes), so avail entries from index ~6 overwrite the used ring, and its
//! `add_desc_chains` does not wrap the avail ring. Tests that post more than a handful of
//! buffers, and the benches that post thousands, need correct rings.

use std::mem::size_of;
use std::ops::Range;
use std::sync::atomic::Ordering;

use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::DriverError;

/// Both rings start with le16 flags and le16 idx (§2.7.6, §2.7.8).
const RING_HEADER_LEN: u64 = 4;

/// Bytes of an `n`-entry available ring: the header, `n` le16 heads, le16 used_event.
fn avail_ring_len(n: u64) -> u64 {
    RING_HEADER_LEN + 2 * n + 2
}

/// Bytes of an `n`-entry used ring: the header, `n` (le32 id, le32 len) elements, le16
/// avail_event.
fn used_ring_len(n: u64) -> u64 {
    RING_HEADER_LEN + 8 * n + 2
}

/// One queue's rings, laid out back to back from `base`: the descriptor table, the
/// available ring, then the used ring (aligned to 4 bytes).
pub struct DriverQueue {
    mem: GuestMemoryMmap,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
}

impl DriverQueue {
    /// Rings for a `size`-entry queue at `base`; `size` must be a power of two and the
    /// rings must lie in `mem`.
    pub fn new(mem: &GuestMemoryMmap, base: u64, size: u16) -> Result<Self, DriverError> {
        if !size.is_power_of_two() {
            return Err(DriverError::RingSize { size });
        }
        let n = u64::from(size);
        let avail = base + size_of::<RawDescriptor>() as u64 * n;
        // The used ring must be 4-byte aligned (§2.7: "Alignment").
        let used = (avail + avail_ring_len(n)).next_multiple_of(4);
        let end = used + used_ring_len(n);
        // A queue has at most 32768 entries, so the rings span well under 4 GiB.
        if !mem.check_range(GuestAddress(base), (end - base) as usize) {
            return Err(DriverError::RingOutsideMemory { base, size });
        }
        Ok(DriverQueue {
            mem: mem.clone(),
            size,
            desc: base,
            avail,
            used,
        })
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    pub fn desc_table_addr(&self) -> u64 {
        self.desc
    }

    pub fn avail_addr(&self) -> u64 {
        self.avail
    }

    pub fn used_addr(&self) -> u64 {
        self.used
    }

    /// The guest-physical bytes of the descriptor table, the available ring and the used
    /// ring (with its avail_event), in that order: what a device may read, and of those
    /// the only one it may write.
    pub fn ring_ranges(&self) -> [Range<u64>; 3] {
        let n = u64::from(self.size);
        [
            self.desc..self.avail,
            self.avail..self.avail + avail_ring_len(n),
            self.used..self.used + used_ring_len(n),
        ]
    }

    /// The device's view of this queue, as a transport configures it on DRIVER_OK.
    pub fn create_queue(&self) -> Result<Queue, DriverError> {
        let mut q = Queue::new(self.size).map_err(|_| DriverError::RingSize { size: self.size })?;
        q.set_size(self.size);
        let halves = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let (lo, hi) = halves(self.desc);
        q.set_desc_table_address(lo, hi);
        let (lo, hi) = halves(self.avail);
        q.set_avail_ring_address(lo, hi);
        let (lo, hi) = halves(self.used);
        q.set_used_ring_address(lo, hi);
        q.set_ready(true);
        Ok(q)
    }

    /// Stores `descs` in the table from index `first` and makes each chain available: a
    /// descriptor starts a chain when it is the first or the one before it has no NEXT
    /// flag (as `MockSplitQueue::add_desc_chains` reads them). The `next` fields are
    /// written as given.
    pub fn add_desc_chains(&self, descs: &[RawDescriptor], first: u16) -> Result<(), DriverError> {
        self.store_descs(descs, first)?;
        let mut idx = self.avail_idx()?;
        let mut prev_has_next = false;
        for (index, raw) in (first..).zip(descs) {
            if !prev_has_next {
                self.set_avail_entry(idx, index)?;
                idx = idx.wrapping_add(1);
            }
            prev_has_next = Descriptor::from(*raw).flags() & VRING_DESC_F_NEXT as u16 != 0;
        }
        self.publish(idx)
    }

    /// Stores `descs` in the table from index `first`, without making them available (a
    /// driver that reuses fixed chains writes them once).
    pub fn store_descs(&self, descs: &[RawDescriptor], first: u16) -> Result<(), DriverError> {
        for (i, raw) in descs.iter().enumerate() {
            let index = usize::from(first) + i;
            if index >= usize::from(self.size) {
                return Err(DriverError::DescriptorIndex {
                    index,
                    size: self.size,
                });
            }
            let addr = self.desc + (size_of::<RawDescriptor>() * index) as u64;
            self.mem.write_obj(*raw, GuestAddress(addr))?;
        }
        Ok(())
    }

    /// A one-descriptor chain at table index `slot`, made available.
    pub fn push(&self, slot: u16, addr: u64, len: u32, flags: u16) -> Result<(), DriverError> {
        let desc = Descriptor::new(addr, len, flags & !(VRING_DESC_F_NEXT as u16), 0);
        self.add_desc_chains(&[RawDescriptor::from(desc)], slot)
    }

    /// The available index (free-running), as the driver last published it.
    pub fn avail_idx(&self) -> Result<u16, DriverError> {
        let idx: u16 = self
            .mem
            .load(GuestAddress(self.avail + 2), Ordering::Acquire)?;
        Ok(u16::from_le(idx))
    }

    /// Table entry `index` as it is in memory now.
    pub fn desc(&self, index: u16) -> Result<Descriptor, DriverError> {
        if index >= self.size {
            return Err(DriverError::DescriptorIndex {
                index: usize::from(index),
                size: self.size,
            });
        }
        let addr = self.desc + size_of::<RawDescriptor>() as u64 * u64::from(index);
        let raw: RawDescriptor = self.mem.read_obj(GuestAddress(addr))?;
        Ok(Descriptor::from(raw))
    }

    /// The head in avail ring entry `idx % size`.
    pub fn avail_entry(&self, idx: u16) -> Result<u16, DriverError> {
        let at = self.avail_entry_addr(idx);
        let head: u16 = self.mem.read_obj(GuestAddress(at))?;
        Ok(u16::from_le(head))
    }

    fn avail_entry_addr(&self, idx: u16) -> u64 {
        self.avail + RING_HEADER_LEN + 2 * u64::from(idx % self.size)
    }

    /// Writes `head` into avail ring entry `idx % size`, without publishing it; a hostile
    /// driver may put any value there.
    pub fn set_avail_entry(&self, idx: u16, head: u16) -> Result<(), DriverError> {
        let at = self.avail_entry_addr(idx);
        self.mem.write_obj(head.to_le(), GuestAddress(at))?;
        Ok(())
    }

    /// Publishes `idx` as the available index. Release: the device must see the entries
    /// before the index that makes them available.
    pub fn publish(&self, idx: u16) -> Result<(), DriverError> {
        self.mem
            .store(idx.to_le(), GuestAddress(self.avail + 2), Ordering::Release)?;
        Ok(())
    }

    /// The used index (free-running). Acquire: the elements it covers are read after it.
    pub fn used_idx(&self) -> Result<u16, DriverError> {
        let idx: u16 = self
            .mem
            .load(GuestAddress(self.used + 2), Ordering::Acquire)?;
        Ok(u16::from_le(idx))
    }

    /// (descriptor id, written length) of used element `n` (free-running).
    pub fn used_elem(&self, n: u16) -> Result<(u32, u32), DriverError> {
        let at = self.used + RING_HEADER_LEN + 8 * u64::from(n % self.size);
        let id: u32 = self.mem.read_obj(GuestAddress(at))?;
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4))?;
        Ok((u32::from_le(id), u32::from_le(len)))
    }

    /// Whether the device has used chains up to free-running index `target`.
    pub fn used_reached(&self, target: u16) -> Result<bool, DriverError> {
        Ok(reached(self.used_idx()?, target))
    }
}

/// Writes `descs` at `at` as an indirect descriptor table and returns the descriptor that
/// refers to it, as a driver that negotiated VIRTIO_RING_F_INDIRECT_DESC would: for tests
/// that devices, which never offer it, refuse such chains.
pub fn indirect_table(
    mem: &GuestMemoryMmap,
    at: u64,
    descs: &[RawDescriptor],
) -> Result<RawDescriptor, DriverError> {
    let entry = size_of::<RawDescriptor>();
    for (i, raw) in descs.iter().enumerate() {
        mem.write_obj(*raw, GuestAddress(at + (entry * i) as u64))?;
    }
    let len = size_of_val(descs) as u32;
    let desc = Descriptor::new(at, len, VRING_DESC_F_INDIRECT as u16, 0);
    Ok(RawDescriptor::from(desc))
}

/// Whether free-running index `idx` is at or past `target`: within half the index
/// space, so it holds across the wrap at 65536 and when the device ran ahead.
pub fn reached(idx: u16, target: u16) -> bool {
    (idx.wrapping_sub(target) as i16) >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `size`-entry queue at `base` in 64 KiB of guest memory.
    fn ring(base: u64, size: u16) -> Result<DriverQueue, DriverError> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
        DriverQueue::new(&mem, base, size)
    }

    #[test]
    fn rings_are_laid_out_without_overlap_and_used_is_aligned() {
        let q = ring(0x1000, 16).unwrap();
        assert_eq!(q.avail_addr(), 0x1100);
        // avail: 4 + 2 * 16 + 2 = 38 bytes, rounded up to 4.
        assert_eq!(q.used_addr(), 0x1128);
    }

    #[test]
    fn ring_ranges_cover_the_three_rings_back_to_back() {
        let q = ring(0x1000, 16).unwrap();
        assert_eq!(
            q.ring_ranges(),
            [0x1000..0x1100, 0x1100..0x1126, 0x1128..0x11ae]
        );
    }

    #[test]
    fn rings_outside_memory_or_odd_sizes_are_refused() {
        assert!(matches!(
            ring(0xff00, 16),
            Err(DriverError::RingOutsideMemory { .. })
        ));
        assert!(matches!(
            ring(0, 12),
            Err(DriverError::RingSize { size: 12 })
        ));
    }

    #[test]
    fn chains_become_available_by_their_heads_and_the_ring_wraps() {
        let q = ring(0, 4).unwrap();
        q.publish(3).unwrap();
        let next = VRING_DESC_F_NEXT as u16;
        let descs = [
            RawDescriptor::from(Descriptor::new(0x8000, 1, next, 1)),
            RawDescriptor::from(Descriptor::new(0x8001, 1, 0, 0)),
            RawDescriptor::from(Descriptor::new(0x8002, 1, 0, 0)),
        ];
        q.add_desc_chains(&descs, 0).unwrap();
        assert_eq!(q.avail_idx().unwrap(), 5);
        // Entries 3 and 4 (= slot 0 of a 4-entry ring): the heads 0 and 2.
        assert_eq!(q.avail_entry(3).unwrap(), 0);
        assert_eq!(q.avail_entry(4).unwrap(), 2);
        assert_eq!(q.avail_entry(0).unwrap(), 2);
    }

    #[test]
    fn descriptors_read_back_as_stored_and_none_past_the_table() {
        let q = ring(0, 4).unwrap();
        let d = Descriptor::new(0x8000, 12, VRING_DESC_F_NEXT as u16, 3);
        q.store_descs(&[RawDescriptor::from(d)], 2).unwrap();
        let back = q.desc(2).unwrap();
        assert_eq!(
            (back.addr().0, back.len(), back.flags(), back.next()),
            (0x8000, 12, VRING_DESC_F_NEXT as u16, 3)
        );
        assert!(matches!(
            q.desc(4),
            Err(DriverError::DescriptorIndex { index: 4, size: 4 })
        ));
    }

    #[test]
    fn reached_holds_across_the_wrap() {
        // (used index, target, reached)
        let cases = [
            (5, 5, true),
            (7, 5, true),
            (4, 5, false),
            (2, 65534, true),
            (65534, 2, false),
        ];
        for (idx, target, want) in cases {
            assert_eq!(reached(idx, target), want, "{idx} vs {target}");
        }
    }
}
