//! One token bucket, with Firecracker's semantics: it holds at most `size` tokens, starts
//! full, and refills continuously at `size` tokens per `refill_time`; a one-time burst is
//! spent before the bucket and never refilled. A request larger than the bucket could never
//! find enough tokens in it, so it goes once the bucket is full and leaves it in debt, which
//! later requests wait out: the long-run rate holds whatever the request sizes.
//! (Firecracker lets it through at once, whatever the bucket holds, and then blocks for the
//! excess; waiting for a full bucket first keeps the burst at most the bucket's size.)
//!
//! Time is an argument (`now`) rather than read here, so the arithmetic is tested with
//! made-up instants; the limiter that owns the buckets reads the clock.

use std::time::{Duration, Instant};

use super::TokenBucketConfig;

const NANOS_PER_MILLI: u128 = 1_000_000;

#[derive(Debug)]
pub(super) struct TokenBucket {
    size: u64,
    /// The time to refill `size` tokens, in nanoseconds (never 0).
    refill_ns: u128,
    /// What is left of the one-time burst.
    burst: u64,
    /// Tokens in the bucket: at most `size`, below zero while an over-sized request's
    /// debt is being paid back.
    budget: i128,
    /// Until when `budget` counts the refill. Only whole tokens move it forward, so the part
    /// of a token that has come in since is kept for the next refill.
    refilled_until: Instant,
}

impl TokenBucket {
    /// A full bucket as of `now`; `None` when it limits nothing (size 0, as Firecracker has
    /// it, or a refill time of 0, which the config checks refuse with a nonzero size).
    pub(super) fn new(config: TokenBucketConfig, now: Instant) -> Option<TokenBucket> {
        if config.size == 0 || config.refill_time_ms == 0 {
            return None;
        }
        Some(TokenBucket {
            size: config.size,
            refill_ns: u128::from(config.refill_time_ms) * NANOS_PER_MILLI,
            burst: config.one_time_burst,
            budget: i128::from(config.size),
            refilled_until: now,
        })
    }

    /// Adds the tokens that came in up to `now`.
    pub(super) fn refill(&mut self, now: Instant) {
        let size = i128::from(self.size);
        let elapsed = now
            .saturating_duration_since(self.refilled_until)
            .as_nanos();
        // `elapsed * size / refill_ns` whole tokens; the remainder is a token in the making.
        // Overflowing u128 takes centuries of elapsed time: the bucket is full by then.
        let Some(scaled) = elapsed.checked_mul(u128::from(self.size)) else {
            self.fill(now);
            return;
        };
        let tokens = i128::try_from(scaled / self.refill_ns).unwrap_or(i128::MAX);
        if tokens >= size - self.budget {
            // Full: time spent full brings nothing, so the refill restarts from now.
            self.fill(now);
            return;
        }
        self.budget += tokens;
        // Keep the partial token: move the mark back by the time it has been accruing.
        let partial_ns = (scaled % self.refill_ns) / u128::from(self.size);
        self.refilled_until = u64::try_from(partial_ns)
            .ok()
            .and_then(|ns| now.checked_sub(Duration::from_nanos(ns)))
            .unwrap_or(now);
    }

    fn fill(&mut self, now: Instant) {
        self.budget = i128::from(self.size);
        self.refilled_until = now;
    }

    /// How many more tokens the bucket needs before a request of `tokens` may go (0: it may
    /// go now). The burst pays first; a request larger than the bucket needs it full.
    pub(super) fn missing(&self, tokens: u64) -> u128 {
        let rest = tokens.saturating_sub(self.burst);
        if rest == 0 {
            return 0;
        }
        let need = i128::from(rest.min(self.size));
        u128::try_from(need - self.budget).unwrap_or(0)
    }

    /// Takes `tokens`: from the burst first, then from the bucket, into debt for a request
    /// larger than it. The caller has checked [`Self::missing`] is 0.
    pub(super) fn take(&mut self, tokens: u64) {
        let from_burst = tokens.min(self.burst);
        self.burst -= from_burst;
        self.budget -= i128::from(tokens - from_burst);
    }

    /// Puts back tokens taken for a request that did not happen after all (the backend
    /// could not take it); up to the bucket's size, the burst is not refilled.
    pub(super) fn give_back(&mut self, tokens: u64) {
        self.budget = (self.budget + i128::from(tokens)).min(i128::from(self.size));
    }

    /// How long after `now` `missing` more tokens will have come in (at least 1 ns),
    /// counting the part of a token that has accrued since the last refill. Rounded up, so
    /// the tokens are there when the time is up.
    pub(super) fn time_until(&self, missing: u128, now: Instant) -> Duration {
        let total_ns = missing
            .checked_mul(self.refill_ns)
            .map_or(u128::MAX, |n| n.div_ceil(u128::from(self.size)));
        let accrued = now
            .saturating_duration_since(self.refilled_until)
            .as_nanos();
        let left = total_ns.saturating_sub(accrued).max(1);
        Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
    }

    #[cfg(test)]
    pub(super) fn budget(&self) -> i128 {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bucket(size: u64, one_time_burst: u64, refill_time_ms: u64, t0: Instant) -> TokenBucket {
        let config = TokenBucketConfig {
            size,
            one_time_burst,
            refill_time_ms,
        };
        TokenBucket::new(config, t0).unwrap()
    }

    /// Refills to `now`, then takes `tokens` if they are there.
    fn try_take(b: &mut TokenBucket, tokens: u64, now: Instant) -> bool {
        b.refill(now);
        let ok = b.missing(tokens) == 0;
        if ok {
            b.take(tokens);
        }
        ok
    }

    #[test]
    fn a_new_bucket_is_full_and_empties_as_requests_consume_it() {
        let t0 = Instant::now();
        let mut b = bucket(1000, 0, 1000, t0);
        assert!(try_take(&mut b, 600, t0));
        assert!(try_take(&mut b, 400, t0));
        assert!(!try_take(&mut b, 1, t0));
        assert_eq!(b.missing(10), 10);
    }

    #[test]
    fn size_zero_limits_nothing() {
        let config = TokenBucketConfig {
            size: 0,
            one_time_burst: 5,
            refill_time_ms: 100,
        };
        assert!(TokenBucket::new(config, Instant::now()).is_none());
    }

    #[test]
    fn tokens_come_back_in_proportion_to_the_time_passed() {
        let t0 = Instant::now();
        let mut b = bucket(1000, 0, 1000, t0);
        b.take(1000);
        b.refill(t0 + ms(250));
        assert_eq!(b.budget(), 250);
        b.refill(t0 + ms(900));
        assert_eq!(b.budget(), 900);
        // Never past the size, however long the wait.
        b.refill(t0 + ms(60_000));
        assert_eq!(b.budget(), 1000);
    }

    #[test]
    fn refill_keeps_the_part_of_a_token_accrued_between_calls() {
        // One token per 3 ms: refilling every 2 ms must still give 2 tokens in 6 ms, not 1.
        let t0 = Instant::now();
        let mut b = bucket(10, 0, 30, t0);
        b.take(10);
        for step in 1..=3 {
            b.refill(t0 + ms(2 * step));
        }
        assert_eq!(b.budget(), 2);
    }

    #[test]
    fn time_spent_full_is_not_banked() {
        let t0 = Instant::now();
        let mut b = bucket(100, 0, 1000, t0);
        b.refill(t0 + ms(5000));
        b.take(100);
        b.refill(t0 + ms(5500));
        assert_eq!(b.budget(), 50);
    }

    #[test]
    fn time_until_says_when_the_missing_tokens_are_in() {
        let t0 = Instant::now();
        let mut b = bucket(1000, 0, 1000, t0);
        b.take(1000);
        let wait = b.time_until(b.missing(100), t0);
        assert_eq!(wait, ms(100));
        // Waiting that long is enough; a moment less is not.
        b.refill(t0 + wait - Duration::from_micros(10));
        assert!(b.missing(100) > 0);
        b.refill(t0 + wait);
        assert_eq!(b.missing(100), 0);
    }

    #[test]
    fn time_until_counts_what_accrued_since_the_last_refill() {
        let t0 = Instant::now();
        let mut b = bucket(10, 0, 1000, t0);
        b.take(10);
        // 150 ms in: one token (100 ms) and half of the next.
        b.refill(t0 + ms(150));
        assert_eq!(b.budget(), 1);
        assert_eq!(b.time_until(b.missing(2), t0 + ms(150)), ms(50));
    }

    #[test]
    fn the_one_time_burst_is_spent_first_and_never_refilled() {
        let t0 = Instant::now();
        let mut b = bucket(100, 500, 1000, t0);
        assert!(try_take(&mut b, 450, t0));
        assert_eq!(b.budget(), 100, "the burst paid, not the bucket");
        // 50 of burst left: a request of 120 takes those and 70 of the bucket.
        assert!(try_take(&mut b, 120, t0));
        assert_eq!(b.budget(), 30);
        // Gone for good: a long wait refills the bucket only.
        assert!(try_take(&mut b, 30, t0));
        b.refill(t0 + ms(10_000));
        assert_eq!(b.budget(), 100);
        assert!(try_take(&mut b, 100, t0 + ms(10_000)));
        assert_eq!(b.missing(1), 1);
    }

    #[test]
    fn a_request_the_burst_and_bucket_cannot_cover_takes_nothing() {
        let t0 = Instant::now();
        let mut b = bucket(100, 50, 1000, t0);
        b.take(100); // 50 from the burst, 50 from the bucket
        assert_eq!(b.budget(), 50);
        assert!(!try_take(&mut b, 60, t0));
        assert_eq!(
            b.budget(),
            50,
            "a refused request leaves the bucket as it was"
        );
    }

    #[test]
    fn a_request_larger_than_the_bucket_waits_for_it_full_then_leaves_a_debt() {
        let t0 = Instant::now();
        let mut b = bucket(100, 0, 1000, t0);
        b.take(40);
        // 250 tokens can never be in a bucket of 100: it goes when the bucket is full.
        assert_eq!(b.missing(250), 40);
        assert_eq!(b.time_until(40, t0), ms(400));
        assert!(!try_take(&mut b, 250, t0 + ms(399)));
        assert!(try_take(&mut b, 250, t0 + ms(400)));
        assert_eq!(b.budget(), -150);
        // The debt is paid back before the next request: 150 tokens, then 10 more.
        let after = t0 + ms(400);
        assert_eq!(b.time_until(b.missing(10), after), ms(1600));
        assert!(!try_take(&mut b, 10, after + ms(1599)));
        assert!(try_take(&mut b, 10, after + ms(1600)));
    }

    #[test]
    fn give_back_refunds_up_to_the_size() {
        let t0 = Instant::now();
        let mut b = bucket(100, 0, 1000, t0);
        b.take(80);
        b.give_back(30);
        assert_eq!(b.budget(), 50);
        b.give_back(1000);
        assert_eq!(b.budget(), 100);
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let t0 = Instant::now();
        let mut b = bucket(u64::MAX, 0, u64::MAX, t0);
        b.take(u64::MAX);
        // u64::MAX tokens per u64::MAX ms: one per millisecond.
        b.refill(t0 + ms(1));
        assert_eq!(b.budget(), 1);
        let wait = b.time_until(b.missing(u64::MAX), t0 + ms(1));
        assert_eq!(wait, Duration::from_nanos(u64::MAX));
    }
}
