//! A minimal driver side of a split virtqueue for the tests.
//!
//! Not `virtio_queue::mock::MockSplitQueue`: in virtio-queue 0.18 its layout places the
//! used ring only `size` bytes after the avail ring (`SplitQueueRing::end` counts elements,
//! not bytes), so avail entries from index ~6 overwrite the used ring, and its
//! `add_desc_chains` does not wrap the avail index. Tests that post more than a handful
//! of buffers need correct rings.

use std::sync::atomic::{fence, Ordering};

use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub struct DriverQueue {
    mem: GuestMemoryMmap,
    base: u64,
    size: u16,
}

impl DriverQueue {
    /// Rings at `base`: descriptors, then the avail ring, then the used ring at +0x800.
    pub fn new(mem: &GuestMemoryMmap, base: u64, size: u16) -> Self {
        assert!(18 * u64::from(size) + 6 <= 0x800, "rings overlap");
        DriverQueue {
            mem: mem.clone(),
            base,
            size,
        }
    }

    fn avail(&self) -> u64 {
        self.base + 16 * u64::from(self.size)
    }

    fn used(&self) -> u64 {
        self.base + 0x800
    }

    /// The device's view of this queue, as a transport would configure it.
    pub fn create_queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_size(self.size);
        let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let (lo, hi) = split(self.base);
        q.set_desc_table_address(lo, hi);
        let (lo, hi) = split(self.avail());
        q.set_avail_ring_address(lo, hi);
        let (lo, hi) = split(self.used());
        q.set_used_ring_address(lo, hi);
        q.set_ready(true);
        q
    }

    /// Stores a chain at descriptor index `first` and makes its head available.
    pub fn publish(&self, descs: &[RawDescriptor], first: u16) {
        for (i, d) in descs.iter().enumerate() {
            let addr = self.base + 16 * u64::from(first + i as u16);
            self.mem.write_obj(*d, GuestAddress(addr)).unwrap();
        }
        let idx: u16 = self.mem.read_obj(GuestAddress(self.avail() + 2)).unwrap();
        let slot = self.avail() + 4 + 2 * u64::from(idx % self.size);
        self.mem.write_obj(first, GuestAddress(slot)).unwrap();
        // The entry must be visible before the index that publishes it.
        fence(Ordering::SeqCst);
        self.mem
            .write_obj(idx.wrapping_add(1), GuestAddress(self.avail() + 2))
            .unwrap();
    }

    pub fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(self.used() + 2)).unwrap()
    }

    /// (descriptor id, written length) of used entry `n` (free-running).
    pub fn used_elem(&self, n: u16) -> (u32, u32) {
        let at = self.used() + 4 + 8 * u64::from(n % self.size);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (id, len)
    }
}
