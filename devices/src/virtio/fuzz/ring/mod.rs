//! A hostile driver's queue: a descriptor table, indirect tables, an available ring and
//! buffer contents, generated either at random (`random`) or as a device's well-formed
//! chains with a few fields broken (`shaped`); `allowed` says what a device may write in
//! answer.
//!
//! Guest memory is two 64 KiB regions with a 64 KiB hole between them, so buffers can
//! straddle a region's end, fall in the hole or lie past the end of memory:
//!
//! | range             | what                                                   |
//! | ----------------- | ------------------------------------------------------ |
//! | 0x0000..0x3000    | queue `q`'s rings at `q * 0x1000`                      |
//! | 0x3000..0x4000    | indirect tables, one per 0x400 slot                     |
//! | 0x4000..0x1_0000  | buffers                                                 |
//! | 0x1_0000..0x2_0000| the hole                                                |
//! | 0x2_0000..0x3_0000| buffers                                                 |

mod random;
mod shaped;

use std::ops::Range;

use proptest::prelude::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::testing::{DriverError, DriverQueue};

pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;
pub const WRITE: u16 = VRING_DESC_F_WRITE as u16;
pub const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

pub const REGION_A: Range<u64> = 0..0x1_0000;
pub const HOLE: Range<u64> = 0x1_0000..0x2_0000;
pub const REGION_B: Range<u64> = 0x2_0000..0x3_0000;
/// Queue `q`'s rings start at `RINGS + q * RING_STRIDE`.
const RINGS: u64 = 0;
const RING_STRIDE: u64 = 0x1000;
pub const INDIRECT_AREA: u64 = 0x3000;
const INDIRECT_SLOT: u64 = 0x400;
const INDIRECT_SLOTS: usize = 4;
const BUFFERS_A: Range<u64> = 0x4000..0x1_0000;
/// The largest queue a case uses: loops and out-of-range indices are likelier in small
/// tables, and the rings of three queues fit below the indirect area.
pub const MAX_QUEUE: u16 = 32;

/// Guest memory of the layout above.
pub fn memory() -> GuestMemoryMmap {
    let len = |r: &Range<u64>| (r.end - r.start) as usize;
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(REGION_A.start), len(&REGION_A)),
        (GuestAddress(REGION_B.start), len(&REGION_B)),
    ])
    .expect("two disjoint regions")
}

/// The driver side of queue `q` in `mem`, `size` entries.
pub fn driver_queue(mem: &GuestMemoryMmap, q: usize, size: u16) -> DriverQueue {
    DriverQueue::new(mem, RINGS + q as u64 * RING_STRIDE, size).expect("rings fit their slot")
}

/// One descriptor as the driver writes it.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl std::fmt::Debug for Desc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut flags = String::new();
        for (bit, name) in [(NEXT, "N"), (WRITE, "W"), (INDIRECT, "I")] {
            if self.flags & bit != 0 {
                flags.push_str(name);
            }
        }
        let other = self.flags & !(NEXT | WRITE | INDIRECT);
        if other != 0 {
            flags.push_str(&format!("+{other:#x}"));
        }
        write!(
            f,
            "{:#x}+{:#x} {flags} ->{}",
            self.addr, self.len, self.next
        )
    }
}

impl From<Descriptor> for Desc {
    fn from(d: Descriptor) -> Self {
        Desc {
            addr: d.addr().0,
            len: d.len(),
            flags: d.flags(),
            next: d.next(),
        }
    }
}

impl Desc {
    fn raw(self) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(self.addr, self.len, self.flags, self.next))
    }

    /// The guest bytes the descriptor names (empty when they overflow the address space).
    pub fn range(self) -> Range<u64> {
        self.addr..self.addr.saturating_add(u64::from(self.len))
    }
}

/// What a hostile driver made available on one queue, ready to be written.
#[derive(Debug, Clone)]
pub struct Ring {
    pub size: u16,
    /// The whole descriptor table (`size` entries).
    pub table: Vec<Desc>,
    /// Indirect table `k` goes to indirect slot `k`.
    pub indirect: Vec<Vec<Desc>>,
    /// The available ring's entries, in order.
    pub heads: Vec<u16>,
    /// The available index published; usually `heads.len()`, sometimes not.
    pub avail_idx: u16,
    /// Buffer contents: bytes written at an address (cut at the end of its buffer area).
    pub fills: Vec<(u64, Vec<u8>)>,
    /// Every chain is one a correct driver could post (a device's shapes, buffers inside
    /// guest memory, nothing broken): the device must not ask for a reset. Headers may
    /// still be nonsense, which the device answers with an error status.
    pub well_formed: bool,
}

impl Ring {
    /// An empty queue of `size` entries.
    pub fn empty(size: u16) -> Ring {
        Ring {
            size,
            table: vec![Desc::default(); usize::from(size)],
            indirect: Vec::new(),
            heads: Vec::new(),
            avail_idx: 0,
            fills: Vec::new(),
            well_formed: true,
        }
    }

    /// Writes the ring, its indirect tables and the buffer contents into guest memory.
    pub fn write(&self, mem: &GuestMemoryMmap, vq: &DriverQueue) -> Result<(), DriverError> {
        for (start, bytes) in &self.fills {
            let Some(area) = [BUFFERS_A, REGION_B]
                .into_iter()
                .find(|a| a.contains(start))
            else {
                continue;
            };
            let n = bytes.len().min((area.end - start) as usize);
            mem.write_slice(&bytes[..n], GuestAddress(*start))?;
        }
        for (k, table) in self.indirect.iter().enumerate() {
            let base = INDIRECT_AREA + k as u64 * INDIRECT_SLOT;
            for (i, d) in table.iter().enumerate() {
                mem.write_obj(d.raw(), GuestAddress(base + 16 * i as u64))?;
            }
        }
        let raw: Vec<RawDescriptor> = self.table.iter().map(|d| d.raw()).collect();
        vq.store_descs(&raw, 0)?;
        for (i, &head) in (0u16..).zip(&self.heads) {
            vq.set_avail_entry(i, head)?;
        }
        vq.publish(self.avail_idx)
    }
}

/// The segments of one well-formed chain of a device: (length, device-writable).
pub type Shape = Vec<(u32, bool)>;

/// How a device's queue is fuzzed: the chains a correct driver would post, and what the
/// first buffer of a chain holds (a header), for the near-valid half of the cases.
pub struct QueueModel {
    pub shapes: BoxedStrategy<Shape>,
    pub header: BoxedStrategy<Vec<u8>>,
}

/// Queue sizes: every power of two up to [`MAX_QUEUE`].
fn queue_size() -> impl Strategy<Value = u16> {
    (0..=MAX_QUEUE.trailing_zeros()).prop_map(|p| 1u16 << p)
}

/// A queue's input: half random rings, half near-valid ones.
pub fn ring(model: &QueueModel) -> impl Strategy<Value = Ring> {
    prop_oneof![
        random::random_ring(model.header.clone()),
        shaped::shaped_ring(model)
    ]
}
