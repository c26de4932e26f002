//! Whether a target's inputs reach what it checks: a check that holds only because no
//! input got that far passes quietly, so each target counts the cases that reached it and
//! fails when too few did.

use std::sync::atomic::{AtomicU32, Ordering};

/// Fewer cases than this say nothing about how often inputs reach a check (a run with a
/// small `PROPTEST_CASES`, say), and go unjudged.
pub const MIN_CASES: u32 = 32;

/// How many of a target's cases reached one thing it checks.
#[derive(Debug)]
pub struct Reach {
    /// What reaching it means, as the end of "only N of M cases …".
    what: &'static str,
    cases: AtomicU32,
    reached: AtomicU32,
}

impl Reach {
    pub const fn new(what: &'static str) -> Reach {
        Reach {
            what,
            cases: AtomicU32::new(0),
            reached: AtomicU32::new(0),
        }
    }

    /// Counts one case, and whether it reached the thing.
    pub fn record(&self, reached: bool) {
        self.cases.fetch_add(1, Ordering::Relaxed);
        if reached {
            self.reached.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Panics unless at least one case in `one_in` reached it, once there were
    /// [`MIN_CASES`].
    pub fn assert_at_least_one_in(&self, one_in: u32) {
        let cases = self.cases.load(Ordering::Relaxed);
        let reached = self.reached.load(Ordering::Relaxed);
        if cases >= MIN_CASES {
            assert!(
                u64::from(reached) * u64::from(one_in) >= u64::from(cases),
                "only {reached} of {cases} cases {}",
                self.what
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(cases: u32, reached: u32) -> Reach {
        let r = Reach::new("got there");
        for i in 0..cases {
            r.record(i < reached);
        }
        r
    }

    #[test]
    fn enough_cases_that_reached_pass() {
        reach(64, 4).assert_at_least_one_in(16);
    }

    #[test]
    #[should_panic(expected = "only 3 of 64 cases got there")]
    fn too_few_cases_that_reached_fail_and_say_what() {
        reach(64, 3).assert_at_least_one_in(16);
    }

    #[test]
    fn too_few_cases_to_tell_go_unjudged() {
        reach(MIN_CASES - 1, 0).assert_at_least_one_in(2);
    }
}
