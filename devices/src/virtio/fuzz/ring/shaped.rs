//! Near-valid rings: a device's well-formed chains (its [`QueueModel`]), then up to three
//! fields broken, so that most inputs get past the first check a device makes.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::random::{addr, flags, len};
use super::{queue_size, Desc, QueueModel, Ring, BUFFERS_A, NEXT, REGION_B, WRITE};

/// A change to one field of one descriptor of a well-formed ring.
#[derive(Debug, Clone)]
enum Break {
    Addr(Index, u64),
    Len(Index, u32),
    Flags(Index, u16),
    Next(Index, u16),
}

fn breaks() -> impl Strategy<Value = Vec<Break>> {
    let one = prop_oneof![
        (any::<Index>(), addr()).prop_map(|(i, v)| Break::Addr(i, v)),
        (any::<Index>(), len()).prop_map(|(i, v)| Break::Len(i, v)),
        (any::<Index>(), flags()).prop_map(|(i, v)| Break::Flags(i, v)),
        (any::<Index>(), any::<u16>()).prop_map(|(i, v)| Break::Next(i, v)),
    ];
    prop_oneof![Just(Vec::new()), vec(one, 1..=3)]
}

/// Well-formed chains of `model`'s shapes, one after another in the table and their
/// buffers one after another in memory, each chain's first buffer holding a header; then
/// up to three fields broken. Chains that do not fit the table or the buffer area are
/// left out.
pub(super) fn shaped_ring(model: &QueueModel) -> impl Strategy<Value = Ring> {
    let chains = vec(
        (model.shapes.clone(), model.header.clone(), 0..64u64),
        1..12,
    );
    (queue_size(), chains, any::<bool>(), breaks()).prop_map(|(size, chains, in_b, breaks)| {
        let mut table = Vec::new();
        let mut heads = Vec::new();
        let mut fills = Vec::new();
        let area = if in_b { REGION_B } else { BUFFERS_A };
        let mut at = area.start;
        for (shape, header, gap) in chains {
            let bytes: u64 = shape.iter().map(|&(len, _)| gap + u64::from(len)).sum();
            let fits_table = table.len() + shape.len() <= usize::from(size);
            if shape.is_empty() || !fits_table || at + bytes > area.end {
                continue;
            }
            heads.push(table.len() as u16);
            fills.push((at + gap, header));
            for (k, &(len, write)) in shape.iter().enumerate() {
                let last = k + 1 == shape.len();
                table.push(Desc {
                    addr: at + gap,
                    len,
                    flags: (if last { 0 } else { NEXT }) | (if write { WRITE } else { 0 }),
                    next: table.len() as u16 + 1,
                });
                at += gap + u64::from(len);
            }
        }
        table.resize(usize::from(size), Desc::default());
        for b in &breaks {
            let (Break::Addr(i, _) | Break::Len(i, _) | Break::Flags(i, _) | Break::Next(i, _)) = b;
            let d = i.get_mut(&mut table);
            match *b {
                Break::Addr(_, v) => d.addr = v,
                Break::Len(_, v) => d.len = v,
                Break::Flags(_, v) => d.flags = v,
                Break::Next(_, v) => d.next = v,
            }
        }
        Ring {
            size,
            avail_idx: heads.len() as u16,
            heads,
            indirect: Vec::new(),
            table,
            fills,
            well_formed: breaks.is_empty(),
        }
    })
}
