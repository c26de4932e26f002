//! The cost of entering and leaving the kernel: getppid(2), which does almost nothing
//! inside it. Made with syscall(2) so no libc caching can answer instead of the kernel.
//! In a microVM guest it is the guest kernel's cost; a container pays its seccomp filter.

use std::convert::Infallible;
use std::time::Duration;

use super::budget::run_for;

/// The fewest calls measured, however slow the level.
const MIN_CALLS: u64 = 1000;
/// Calls between two reads of the clock.
const BATCH: u64 = 10_000;

/// Mean time of one getppid, in nanoseconds.
pub fn mean_ns(budget: Duration) -> f64 {
    let tally = run_for(budget, MIN_CALLS, BATCH, |n| {
        for _ in 0..n {
            // SAFETY: getppid takes no arguments and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        Ok::<_, Infallible>(())
    });
    match tally {
        Ok(tally) => tally.mean_ns(),
        Err(never) => match never {},
    }
}
