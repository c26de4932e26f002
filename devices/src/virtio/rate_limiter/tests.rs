//! The limiter over its two buckets and its timer. The bucket arithmetic has its own tests
//! (`bucket.rs`); these check what a device sees: both buckets or neither, the wait, the
//! refusal until the timer fires.

use std::time::{Duration, Instant};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn bucket(size: u64, refill_time_ms: u64) -> Option<TokenBucketConfig> {
    Some(TokenBucketConfig {
        size,
        one_time_burst: 0,
        refill_time_ms,
    })
}

/// Waits up to `timeout` for `fd` to be readable; true when it is.
fn readable_within(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap();
    // SAFETY: `pfd` is one valid pollfd; poll writes only its `revents`.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n == 1
}

#[test]
fn a_request_takes_from_both_buckets_or_from_neither() {
    let t0 = Instant::now();
    let config = RateLimiterConfig {
        bandwidth: bucket(1000, 1000),
        ops: bucket(10, 1000),
    };
    let mut l = RateLimiter::started_at(config, t0).unwrap();
    assert_eq!(l.wait_for(600, 1, t0), None);
    l.take(600, 1);
    // Ops are plenty, bytes are short: neither is taken.
    assert!(l.wait_for(600, 1, t0).is_some());
    assert_eq!(l.bandwidth.as_ref().unwrap().budget(), 400);
    assert_eq!(l.ops.as_ref().unwrap().budget(), 9);
}

#[test]
fn the_wait_is_for_the_bucket_that_needs_longer() {
    let t0 = Instant::now();
    let config = RateLimiterConfig {
        // 1 byte per ms, 1 op per 100 ms.
        bandwidth: bucket(1000, 1000),
        ops: bucket(1, 100),
    };
    let mut l = RateLimiter::started_at(config, t0).unwrap();
    l.take(990, 1);
    // 20 bytes are 10 ms away, the op 100 ms: the op decides.
    assert_eq!(l.wait_for(20, 1, t0), Some(ms(100)));
    // 500 bytes are 490 ms away: now the bytes decide.
    assert_eq!(l.wait_for(500, 1, t0), Some(ms(490)));
}

#[test]
fn a_request_larger_than_the_bandwidth_bucket_goes_once_it_is_full() {
    let t0 = Instant::now();
    let config = RateLimiterConfig {
        bandwidth: bucket(4000, 1000),
        ops: None,
    };
    let mut l = RateLimiter::started_at(config, t0).unwrap();
    assert!(l.consume_at(64_000, 1, t0), "a full bucket lets it through");
    // It left a debt of 60000 bytes: 15 s at 4000 B/s, then 250 µs for the next byte.
    assert_eq!(
        l.wait_for(1, 1, t0),
        Some(Duration::from_nanos(15_000_250_000))
    );
}

#[test]
fn a_refused_request_arms_the_timer_and_everything_waits_until_it_fires() {
    let config = RateLimiterConfig {
        bandwidth: None,
        ops: bucket(1, 60),
    };
    let mut l = RateLimiter::new(config).unwrap();
    let start = Instant::now();
    assert!(l.consume(512, 1));
    assert!(!l.consume(512, 1));
    assert!(l.is_waiting());
    // The op is back 60 ms later; the timer says so, not before.
    assert!(readable_within(l.timer_fd(), Duration::from_secs(5)));
    assert!(
        start.elapsed() >= ms(55),
        "fired after {:?}",
        start.elapsed()
    );
    // Still refused until the worker has handled the timer, so requests keep their order.
    assert!(!l.consume(0, 1));
    l.on_timer();
    assert!(!l.is_waiting());
    assert!(l.consume(512, 1));
}

#[test]
fn on_timer_before_the_timer_fired_keeps_refusing() {
    let config = RateLimiterConfig {
        bandwidth: None,
        ops: bucket(1, 10_000),
    };
    let mut l = RateLimiter::new(config).unwrap();
    assert!(l.consume(0, 1));
    assert!(!l.consume(0, 1));
    l.on_timer();
    assert!(
        l.is_waiting(),
        "a read of an unexpired timer must not end the wait"
    );
}

#[test]
fn give_back_returns_the_tokens_of_a_request_that_did_not_happen() {
    let config = RateLimiterConfig {
        bandwidth: bucket(1000, 100_000),
        ops: bucket(1, 100_000),
    };
    let mut l = RateLimiter::new(config).unwrap();
    assert!(l.consume(1000, 1));
    l.give_back(1000, 1);
    assert!(l.consume(1000, 1));
}

#[test]
fn a_queue_without_a_limiter_lets_everything_through() {
    let q = QueueLimiter::default();
    assert!(q.timer_fd().is_none());
    for _ in 0..1000 {
        assert!(q.consume(u64::MAX, u64::MAX));
    }
}

#[test]
fn a_config_that_limits_nothing_makes_no_limiter() {
    let config = RateLimiterConfig {
        bandwidth: bucket(0, 1000),
        ops: None,
    };
    assert!(QueueLimiter::from_config(Some(config))
        .unwrap()
        .timer_fd()
        .is_none());
    assert!(QueueLimiter::from_config(None)
        .unwrap()
        .timer_fd()
        .is_none());
}

#[test]
fn a_bucket_that_never_refills_is_refused_with_its_name() {
    let config = RateLimiterConfig {
        bandwidth: None,
        ops: bucket(100, 0),
    };
    let err = QueueLimiter::from_config(Some(config)).unwrap_err();
    assert!(matches!(
        err,
        RateLimiterError::Bucket {
            bucket: "ops",
            source: InvalidBucket::ZeroRefillTime { size: 100 }
        }
    ));
    // Zero size and zero refill time: no bucket at all, as in Firecracker.
    assert_eq!(TokenBucketConfig::default().check(), Ok(()));
}

#[test]
fn clones_share_one_limiter() {
    let config = RateLimiterConfig {
        bandwidth: None,
        ops: bucket(1, 100_000),
    };
    let a = QueueLimiter::from_config(Some(config)).unwrap();
    let b = a.clone();
    assert!(a.consume(0, 1));
    assert!(!b.consume(0, 1), "the clone saw the token taken");
    assert_eq!(a.timer_fd(), b.timer_fd());
}
