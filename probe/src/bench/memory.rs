//! Memory bandwidth: copies between two buffers far larger than the caches. In a microVM
//! every guest page is backed by a host page through a second level of page tables; a copy
//! this size walks many of them.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use super::budget::run_for;

/// Each buffer: 16 MiB, beyond any L3 of a small machine.
const BUFFER: usize = 16 << 20;
/// The fewest copies measured, however slow the level.
const MIN_COPIES: u64 = 2;

/// Bytes copied per second over the budget, in MB/s (10^6 bytes).
pub fn bandwidth_mb_s(budget: Duration) -> f64 {
    // Filled with non-zero bytes, so every page is really allocated before the clock runs.
    let mut a = vec![0x5au8; BUFFER];
    let mut b = vec![0xa5u8; BUFFER];
    let tally = run_for(budget, MIN_COPIES, 1, |n| {
        for _ in 0..n {
            b.copy_from_slice(black_box(&a));
            std::mem::swap(&mut a, &mut b);
            black_box(&mut b);
        }
        Ok::<_, Infallible>(())
    });
    match tally {
        Ok(tally) => tally.per_second() * BUFFER as f64 / 1e6,
        Err(never) => match never {},
    }
}
