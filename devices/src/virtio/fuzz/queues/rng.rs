//! virtio-rng's request queue. Besides what every device promises: no answer is longer
//! than [`MAX_REQUEST_LEN`], and every chain answered with nothing is one it counted as
//! rejected or failed.

use proptest::collection::vec;
use proptest::prelude::*;

use super::{Case, Coverage, CASES};
use crate::virtio::fuzz::ring::{ring, QueueModel};
use crate::virtio::rng::{Rng, MAX_REQUEST_LEN};

/// Writable buffers, now and then a readable one among them.
fn model() -> QueueModel {
    let segment = (
        prop_oneof![1..=256u32, Just(0u32), 0x1_0000..=0x1_0100u32],
        prop::bool::weighted(0.9),
    );
    QueueModel {
        shapes: vec(segment, 1..=3).boxed(),
        header: vec(any::<u8>(), 0..4).boxed(),
    }
}

#[test]
fn rng_answers_hostile_request_rings_within_bounds() {
    let coverage = Coverage::default();
    fuzzkit::check(file!(), CASES, ring(&model()), |ring| {
        let case = Case::start(Rng::new(), vec![ring], &[true])?;
        case.settle(|c| c.answered(0))?;
        let f = case.finish(false)?;
        coverage.record(&f);
        for &(_, len) in &f.used[0] {
            prop_assert!(len as usize <= MAX_REQUEST_LEN, "answered {} bytes", len);
        }
        if !f.needs_reset && f.exact {
            let empty = f.used[0].iter().filter(|&&(_, len)| len == 0).count() as u64;
            prop_assert_eq!(
                empty,
                f.errors.chains_rejected + f.errors.requests_failed,
                "chains answered with nothing vs errors counted"
            );
        }
        Ok(())
    });
    coverage.assert_reached();
}
