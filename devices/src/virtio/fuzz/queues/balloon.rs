//! virtio-balloon's inflate, deflate and stats queues. Besides what every device
//! promises: nothing is written back (used length 0), inflating changes guest memory only
//! by dropping whole pages (which then read as zero), PFNs it cannot release are counted
//! exactly when a request failed, and every stats buffer taken counts as one update.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::{Case, Coverage, CASES};
use crate::virtio::balloon::Balloon;
use crate::virtio::fuzz::ring::{ring, QueueModel, Ring};

const INFLATE: usize = 0;
const DEFLATE: usize = 1;
const STATS: usize = 2;
/// Most PFNs a chain carries (`handler::MAX_PFNS_PER_CHAIN`, private there).
const MAX_PFNS_PER_CHAIN: u64 = 16 * 1024;

/// PFN arrays (le32): guest pages (buffers mostly, the rings now and then), pages in the
/// hole and past the end, and anything.
fn pfns() -> impl Strategy<Value = Vec<u8>> {
    let pfn = prop_oneof![
        6 => prop_oneof![4..0x10u32, 0x20..0x30u32],
        1 => 0..4u32,
        1 => 0x10..0x20u32,
        1 => select(vec![0x30u32, u32::MAX, 1 << 20]),
        1 => any::<u32>(),
    ];
    vec(pfn, 0..24).prop_map(|p| p.into_iter().flat_map(u32::to_le_bytes).collect())
}

/// Stats entries (le16 tag, le64 value), known tags mostly.
fn stats() -> impl Strategy<Value = Vec<u8>> {
    let entry = (prop_oneof![4 => 0..12u16, 1 => any::<u16>()], any::<u64>());
    vec(entry, 0..16).prop_map(|e| {
        e.into_iter()
            .flat_map(|(tag, value)| tag.to_le_bytes().into_iter().chain(value.to_le_bytes()))
            .collect()
    })
}

fn model(q: usize) -> QueueModel {
    let (unit, header) = if q == STATS {
        (10u32, stats().boxed())
    } else {
        (4u32, pfns().boxed())
    };
    let len = prop_oneof![4 => (0..24u32).prop_map(move |n| n * unit), 1 => 0..100u32];
    QueueModel {
        shapes: vec(len.prop_map(|n| (n, false)), 1..=2).boxed(),
        header,
    }
}

/// Queue `q` of a balloon with stats (three queues) gets hostile rings, the others none.
fn balloon_queue(q: usize) {
    let coverage = Coverage::default();
    fuzzkit::check(file!(), CASES, ring(&model(q)), |hostile| {
        let mut rings: Vec<Ring> = (0..3).map(|_| Ring::empty(4)).collect();
        rings[q] = hostile;
        let balloon = Balloon::new(0, true, 1);
        let stats = balloon.handle();
        let case = Case::start(balloon, rings, &[false; 3])?;
        // The device keeps the newest stats buffer until its timer asks for fresh ones.
        case.settle(|c| {
            let (r, offered) = (&c.rings[q], c.offered(q));
            match q {
                STATS => r.avail_idx <= r.size && (offered == 0 || c.used_idx(q) + 1 >= offered),
                _ => c.answered(q),
            }
        })?;
        let f = case.finish(q == INFLATE)?;
        coverage.record(&f);
        let after = stats.stats();
        prop_assert!(
            f.used[q].iter().all(|&(_, len)| len == 0),
            "the balloon wrote back"
        );
        match q {
            INFLATE => prop_assert_eq!(
                after.invalid_pfns == 0,
                f.errors.requests_failed == 0,
                "invalid PFNs {} vs failed requests {}",
                after.invalid_pfns,
                f.errors.requests_failed
            ),
            DEFLATE => {
                prop_assert!(after.deflated_pages <= u64::from(f.offered[q]) * MAX_PFNS_PER_CHAIN)
            }
            _ => {
                if !f.needs_reset {
                    prop_assert_eq!(after.stats_updates, u64::from(f.offered[q]));
                }
            }
        }
        Ok(())
    });
    coverage.assert_reached();
}

#[test]
fn balloon_inflate_drops_only_whole_pages_for_hostile_rings() {
    balloon_queue(INFLATE);
}

#[test]
fn balloon_deflate_answers_hostile_rings() {
    balloon_queue(DEFLATE);
}

#[test]
fn balloon_stats_counts_every_buffer_of_hostile_rings() {
    balloon_queue(STATS);
}
