//! The loop every benchmark shares: run batches of iterations until a time budget is used.
//! The clock is read only between batches, and batches grow until each is a sizeable part
//! of the budget, so reading the clock costs nothing measurable even for a 50 ns system
//! call; minimum counts stay small, so a very slow level still finishes near its budget.

use std::time::{Duration, Instant};

/// Iterations done and the time they took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub iterations: u64,
    pub elapsed: Duration,
}

impl Tally {
    /// Mean time of one iteration, in nanoseconds.
    pub fn mean_ns(&self) -> f64 {
        self.seconds() * 1e9 / self.iterations.max(1) as f64
    }

    /// Iterations per second.
    pub fn per_second(&self) -> f64 {
        self.iterations as f64 / self.seconds()
    }

    /// The elapsed time in seconds, never zero (a rate must stay finite for JSON).
    pub fn seconds(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A batch takes at least this share of the budget before it stops growing.
const BATCH_SHARE: u32 = 20;

/// Calls `batch(n)`, which must do exactly `n` iterations, until the budget is used and at
/// least `min_iterations` were done. `n` starts at 1 and doubles, up to `max_batch`, while
/// a batch takes less than 1/20 of the budget. Stops at the first error.
pub fn run_for<E>(
    budget: Duration,
    min_iterations: u64,
    max_batch: u64,
    mut batch: impl FnMut(u64) -> Result<(), E>,
) -> Result<Tally, E> {
    let small = budget / BATCH_SHARE;
    let mut n: u64 = 1;
    let mut iterations: u64 = 0;
    let start = Instant::now();
    let mut batch_start = start;
    loop {
        batch(n)?;
        iterations += n;
        let now = Instant::now();
        let elapsed = now - start;
        if elapsed >= budget && iterations >= min_iterations {
            return Ok(Tally {
                iterations,
                elapsed,
            });
        }
        if now - batch_start < small && n < max_batch {
            n = (n * 2).min(max_batch);
        }
        batch_start = now;
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    #[test]
    fn runs_at_least_the_minimum_even_past_the_budget() {
        let tally = run_for(Duration::ZERO, 7, 1, |_| Ok::<_, Infallible>(())).unwrap();
        assert_eq!(tally.iterations, 7);
    }

    #[test]
    fn batches_grow_but_not_past_the_maximum() {
        let mut sizes = Vec::new();
        run_for(Duration::from_millis(20), 0, 64, |n| {
            sizes.push(n);
            Ok::<_, Infallible>(())
        })
        .unwrap();
        assert_eq!(sizes[..3], [1, 2, 4]);
        assert!(sizes.iter().all(|&n| n <= 64));
        assert!(sizes.contains(&64));
    }

    #[test]
    fn uses_the_budget() {
        let budget = Duration::from_millis(30);
        let tally = run_for(budget, 1, 1000, |n| {
            std::thread::sleep(Duration::from_micros(n));
            Ok::<_, Infallible>(())
        })
        .unwrap();
        assert!(tally.elapsed >= budget);
    }

    #[test]
    fn an_error_stops_the_run() {
        let mut calls = 0;
        let result = run_for(Duration::from_secs(10), 1, 1, |_| {
            calls += 1;
            if calls == 3 {
                Err("third")
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Err("third"));
    }
}
