//! Random rings: every field of every descriptor drawn from the edges a device could get
//! wrong (addresses at region ends and in the hole, huge lengths, any flags, loops and
//! out-of-range `next` indices, INDIRECT descriptors naming generated tables), heads that
//! mostly start chains, and now and then an available index behind or more than a queue
//! ahead.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::{
    queue_size, Desc, Ring, BUFFERS_A, HOLE, INDIRECT, INDIRECT_AREA, INDIRECT_SLOT,
    INDIRECT_SLOTS, NEXT, REGION_A, REGION_B, WRITE,
};

/// At most this many entries per generated indirect table (a slot holds 64).
const INDIRECT_MAX: usize = 16;

/// Guest addresses: mostly buffers, and every edge a device could get wrong.
pub(super) fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => BUFFERS_A,
        3 => REGION_B,
        2 => (0..INDIRECT_SLOTS as u64).prop_map(|k| INDIRECT_AREA + k * INDIRECT_SLOT),
        2 => (select(vec![REGION_A.end, HOLE.start + 0x8000, REGION_B.start, REGION_B.end]), -64i64..64)
            .prop_map(|(edge, d)| edge.wrapping_add_signed(d)),
        1 => 0..INDIRECT_AREA,
        1 => any::<u64>(),
        1 => select(vec![u64::MAX, u64::MAX - 15, 1 << 63, 0x1_0000_0000]),
    ]
}

pub(super) fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => 0..=64u32,
        2 => select(vec![1u32, 12, 16, 44, 512, 513, 1526, 4096, 0x1_0000, 0x1_0001]),
        1 => 0..=0x2_0000u32,
        1 => select(vec![u32::MAX, u32::MAX - 1, 1 << 31, 0xffff_fe00]),
        1 => any::<u32>(),
    ]
}

pub(super) fn flags() -> impl Strategy<Value = u16> {
    prop_oneof![
        8 => (any::<bool>(), any::<bool>(), prop::bool::weighted(0.1)).prop_map(|(n, w, i)| {
            (if n { NEXT } else { 0 }) | (if w { WRITE } else { 0 }) | (if i { INDIRECT } else { 0 })
        }),
        1 => any::<u16>(),
    ]
}

/// A `next` field: the following entry (a chain laid out in order), another entry of a
/// table of `size`, or anything.
fn next(size: u16) -> impl Strategy<Value = NextInput> {
    prop_oneof![
        4 => Just(NextInput::Following),
        2 => (0..size).prop_map(NextInput::Index),
        1 => any::<u16>().prop_map(NextInput::Index),
    ]
}

#[derive(Debug, Clone, Copy)]
enum NextInput {
    Following,
    Index(u16),
}

/// A descriptor of a table of `size`: random fields, or an INDIRECT one naming a whole
/// generated indirect table (random fields rarely line up into one).
fn desc(size: u16) -> impl Strategy<Value = Desc> {
    let indirect = (
        0..INDIRECT_SLOTS as u64,
        1..=INDIRECT_MAX as u32,
        any::<u16>(),
    )
        .prop_map(|(k, n, other)| {
            (
                INDIRECT_AREA + k * INDIRECT_SLOT,
                16 * n,
                INDIRECT | (other & (NEXT | WRITE)),
            )
        });
    let fields = prop_oneof![
        8 => (addr(), len(), flags()),
        1 => indirect,
    ];
    (fields, next(size)).prop_map(|((addr, len, flags), next)| Desc {
        addr,
        len,
        flags,
        // Resolved against the entry's index when the table is laid out.
        next: match next {
            NextInput::Following => u16::MAX,
            NextInput::Index(i) => i.min(u16::MAX - 1),
        },
    })
}

/// Turns the `u16::MAX` placeholder of [`NextInput::Following`] into `index + 1`.
fn resolve(mut table: Vec<Desc>) -> Vec<Desc> {
    for (i, d) in (1u16..).zip(table.iter_mut()) {
        if d.next == u16::MAX {
            d.next = i;
        }
    }
    table
}

#[derive(Debug, Clone)]
enum HeadInput {
    /// The `Index`-th place a chain starts (entry 0, or one after an entry without NEXT).
    Start(Index),
    Raw(u16),
}

fn heads(size: u16) -> impl Strategy<Value = Vec<HeadInput>> {
    let head = prop_oneof![
        6 => any::<Index>().prop_map(HeadInput::Start),
        2 => (0..size).prop_map(HeadInput::Raw),
        1 => any::<u16>().prop_map(HeadInput::Raw),
    ];
    vec(head, 0..=usize::from(size))
}

fn chain_starts(table: &[Desc]) -> Vec<u16> {
    let mut starts = vec![0];
    for (i, d) in (1u16..).zip(table) {
        if d.flags & NEXT == 0 && usize::from(i) < table.len() {
            starts.push(i);
        }
    }
    starts
}

fn pick_heads(table: &[Desc], heads: &[HeadInput]) -> Vec<u16> {
    let starts = chain_starts(table);
    heads
        .iter()
        .map(|h| match h {
            HeadInput::Start(i) => *i.get(&starts),
            HeadInput::Raw(r) => *r,
        })
        .collect()
}

/// Mostly the number of heads; now and then an index that is behind, or more than a queue
/// ahead of, what the device has seen.
fn avail_idx() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![14 => Just(None), 1 => any::<u16>().prop_map(Some)]
}

/// An indirect table of `entries` descriptors chained in order, filling region B from
/// its start: the longest chain a driver can make in this memory. The devices refuse it
/// at its INDIRECT descriptor, without reading the table (`virtio::chain`); the target's
/// time limit catches a device that walks it.
fn long_indirect_chain(entries: u16, write: bool) -> (Desc, Vec<u8>) {
    let mut bytes = Vec::with_capacity(16 * usize::from(entries));
    for i in 0..entries {
        let last = i + 1 == entries;
        let d = Desc {
            addr: BUFFERS_A.start + u64::from(i % 64) * 16,
            len: 16,
            flags: (if last { 0 } else { NEXT }) | (if write { WRITE } else { 0 }),
            next: i.wrapping_add(1),
        };
        bytes.extend_from_slice(vm_memory::ByteValued::as_slice(&d.raw()));
    }
    let head = Desc {
        addr: REGION_B.start,
        len: 16 * u32::from(entries),
        flags: INDIRECT,
        next: 0,
    };
    (head, bytes)
}

/// A ring of random descriptors, with `header`s and random bytes in the buffers, and now
/// and then one very long chain through an indirect table.
pub(super) fn random_ring(header: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Ring> {
    queue_size().prop_flat_map(move |size| {
        let fill = (addr(), prop_oneof![header.clone(), vec(any::<u8>(), 0..64)]);
        let max_entries = ((REGION_B.end - REGION_B.start) / 16) as u16;
        (
            vec(desc(size), usize::from(size)),
            vec(
                vec(desc(INDIRECT_MAX as u16), 0..=INDIRECT_MAX),
                0..=INDIRECT_SLOTS,
            ),
            heads(size),
            avail_idx(),
            vec(fill, 0..8),
            prop::option::weighted(0.05, (1..=max_entries, any::<bool>())),
        )
            .prop_map(move |(table, indirect, heads, idx, mut fills, long)| {
                let mut table = resolve(table);
                if let Some((entries, write)) = long {
                    let (head, bytes) = long_indirect_chain(entries, write);
                    table[0] = head;
                    fills.push((REGION_B.start, bytes));
                }
                let heads = pick_heads(&table, &heads);
                Ring {
                    size,
                    avail_idx: idx.unwrap_or(heads.len() as u16),
                    heads,
                    indirect: indirect.into_iter().map(resolve).collect(),
                    table,
                    fills,
                    well_formed: false,
                }
            })
    })
}
