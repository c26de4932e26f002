//! Rate limiters for device queues, with Firecracker's semantics and configuration: a
//! `bandwidth` bucket (bytes) and an `ops` bucket (requests), each optional, each
//! `{size, one_time_burst, refill_time}` (see [`bucket`] for how a bucket behaves).
//!
//! A request takes its tokens from both buckets or from neither. When one bucket is short,
//! the queue's handler puts the request back and stops; the limiter arms a timerfd for the
//! moment enough tokens will have come in, and the device's worker, which waits on that fd
//! with the queue's, resumes the queue when it fires. Nothing is dropped, and nothing
//! spins or sleeps on the worker thread. Until the timer fires every request is refused at
//! once, so requests keep their order.
//!
//! Written here rather than taken from a crate: no rust-vmm crate publishes one (Firecracker's
//! and Cloud Hypervisor's live inside those VMMs), `dbs-utils` (Dragonball's copy of
//! Firecracker's) brings event-manager 0.2 and a second vmm-sys-util, and the general token
//! buckets on crates.io (`ratelimit`, `governor`) have no one-time burst, refuse a request
//! larger than the bucket instead of letting it through and charging for it, and cannot
//! take from two buckets together.

mod bucket;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vmm_sys_util::timerfd::TimerFd;

use bucket::TokenBucket;

/// The longest the timer is armed for: what a `timespec` surely holds. A bucket that takes
/// longer to refill (a refill_time of millennia) is re-checked then.
const MAX_WAIT: Duration = Duration::from_secs(u32::MAX as u64);

/// One bucket as Firecracker's JSON spells it: `size` tokens, refilled in `refill_time`
/// milliseconds, and `one_time_burst` tokens on top that are spent first and never come
/// back. A size of 0 limits nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBucketConfig {
    pub size: u64,
    pub one_time_burst: u64,
    pub refill_time_ms: u64,
}

impl TokenBucketConfig {
    /// `n` tokens a second, a second's worth in the bucket: what `bw=N` and `ops=N` on the
    /// command line mean.
    pub fn per_second(n: u64) -> Self {
        TokenBucketConfig {
            size: n,
            one_time_burst: 0,
            refill_time_ms: 1000,
        }
    }

    /// Refuses a bucket that holds tokens but would never refill (Firecracker reads a
    /// refill_time of 0 as "no limit", which is surely not what the user meant).
    pub fn check(&self) -> Result<(), InvalidBucket> {
        if self.size > 0 && self.refill_time_ms == 0 {
            return Err(InvalidBucket::ZeroRefillTime { size: self.size });
        }
        Ok(())
    }
}

/// A bucket configuration no limiter can be made from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBucket {
    #[error("refill_time is 0 with a size of {size}: the bucket would never refill")]
    ZeroRefillTime { size: u64 },
}

/// A limiter's two buckets; either may be absent (no limit on that kind of token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimiterConfig {
    pub bandwidth: Option<TokenBucketConfig>,
    pub ops: Option<TokenBucketConfig>,
}

impl RateLimiterConfig {
    /// Refuses a bucket that cannot be one (see [`TokenBucketConfig::check`]).
    pub fn check(&self) -> Result<(), RateLimiterError> {
        for (bucket, config) in [("bandwidth", self.bandwidth), ("ops", self.ops)] {
            if let Some(c) = config {
                c.check()
                    .map_err(|source| RateLimiterError::Bucket { bucket, source })?;
            }
        }
        Ok(())
    }

    /// Whether a limiter made from this would limit anything.
    pub fn limits_anything(&self) -> bool {
        [self.bandwidth, self.ops]
            .iter()
            .flatten()
            .any(|b| b.size > 0)
    }
}

/// Why a limiter could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RateLimiterError {
    #[error("invalid {bucket} bucket")]
    Bucket {
        bucket: &'static str,
        #[source]
        source: InvalidBucket,
    },
    #[error("cannot create the rate limiter's timerfd")]
    Timer(#[source] io::Error),
}

/// Two token buckets and the timer that says when a refused request may be retried.
#[derive(Debug)]
pub struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
    timer: TimerFd,
    /// The timer is armed: requests are refused until it fires.
    waiting: bool,
}

impl RateLimiter {
    /// A limiter with full buckets.
    pub fn new(config: RateLimiterConfig) -> Result<RateLimiter, RateLimiterError> {
        Self::started_at(config, Instant::now())
    }

    /// A limiter whose buckets were full at `now` (tests pass made-up instants).
    fn started_at(
        config: RateLimiterConfig,
        now: Instant,
    ) -> Result<RateLimiter, RateLimiterError> {
        config.check()?;
        Ok(RateLimiter {
            bandwidth: config.bandwidth.and_then(|c| TokenBucket::new(c, now)),
            ops: config.ops.and_then(|c| TokenBucket::new(c, now)),
            timer: nonblocking_timerfd().map_err(RateLimiterError::Timer)?,
            waiting: false,
        })
    }

    /// Takes `bytes` and `ops` tokens for a request, which may then go. When a bucket is
    /// short, takes nothing, arms the timer and returns false: the caller puts the request
    /// back and retries when [`Self::timer_fd`] is readable and [`Self::on_timer`] ran.
    pub fn consume(&mut self, bytes: u64, ops: u64) -> bool {
        self.consume_at(bytes, ops, Instant::now())
    }

    fn consume_at(&mut self, bytes: u64, ops: u64, now: Instant) -> bool {
        if self.waiting {
            return false;
        }
        if let Some(wait) = self.wait_for(bytes, ops, now) {
            // Only a timerfd that cannot be set (it always can) gets here with Err; then
            // the request goes rather than wait for a wake-up that would never come.
            if self.timer.reset(wait.min(MAX_WAIT), None).is_ok() {
                self.waiting = true;
                return false;
            }
        }
        self.take(bytes, ops);
        true
    }

    /// Refills both buckets to `now`; `None` when both hold what the request needs, else
    /// how long until the shorter one will (the longer wait of the two).
    fn wait_for(&mut self, bytes: u64, ops: u64, now: Instant) -> Option<Duration> {
        let mut wait = None;
        for (bucket, tokens) in [(&mut self.bandwidth, bytes), (&mut self.ops, ops)] {
            if let Some(b) = bucket {
                b.refill(now);
                let missing = b.missing(tokens);
                if missing > 0 {
                    wait = wait.max(Some(b.time_until(missing, now)));
                }
            }
        }
        wait
    }

    fn take(&mut self, bytes: u64, ops: u64) {
        if let Some(b) = &mut self.bandwidth {
            b.take(bytes);
        }
        if let Some(b) = &mut self.ops {
            b.take(ops);
        }
    }

    /// Returns the tokens of a request that did not happen after all (the backend could
    /// not take it and it will be retried).
    pub fn give_back(&mut self, bytes: u64, ops: u64) {
        if let Some(b) = &mut self.bandwidth {
            b.give_back(bytes);
        }
        if let Some(b) = &mut self.ops {
            b.give_back(ops);
        }
    }

    /// The timer fired (its fd is readable): requests may be tried again.
    pub fn on_timer(&mut self) {
        match self.timer.wait() {
            // Readable without an expiry (never, as the worker only calls this when epoll
            // said it is readable): the timer is still armed.
            Err(e) if e.errno() == libc::EAGAIN => {}
            // Expired, or an error nothing can be done about: stop refusing either way, so
            // a broken timer cannot stall the queue for good.
            _ => self.waiting = false,
        }
    }

    /// Whether requests are refused until the timer fires.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// The fd the device's worker waits on: readable when requests may be tried again.
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }
}

/// A timerfd whose read never blocks: the worker thread must not sleep in it.
fn nonblocking_timerfd() -> io::Result<TimerFd> {
    // SAFETY: timerfd_create takes no pointers; its result is checked below.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a timerfd just created and owned by nothing else.
    Ok(unsafe { TimerFd::from_raw_fd(fd) })
}

/// What a device's queue handler consults before each request: no limiter (everything
/// goes) or the device's. The device keeps the limiter across resets and gives each worker a
/// clone, so a guest cannot refill its buckets by resetting the device; only the one
/// worker of the device uses it at a time, so the lock is never contended.
#[derive(Debug, Clone, Default)]
pub struct QueueLimiter(Option<Arc<Mutex<RateLimiter>>>);

impl QueueLimiter {
    pub fn new(limiter: Option<RateLimiter>) -> Self {
        QueueLimiter(limiter.map(|l| Arc::new(Mutex::new(l))))
    }

    /// A limiter for `config`, or none when it limits nothing.
    pub fn from_config(config: Option<RateLimiterConfig>) -> Result<Self, RateLimiterError> {
        let Some(config) = config else {
            return Ok(Self::default());
        };
        config.check()?;
        if !config.limits_anything() {
            return Ok(Self::default());
        }
        Ok(Self::new(Some(RateLimiter::new(config)?)))
    }

    /// See [`RateLimiter::consume`]; always true without a limiter.
    pub fn consume(&self, bytes: u64, ops: u64) -> bool {
        self.lock().is_none_or(|mut l| l.consume(bytes, ops))
    }

    /// See [`RateLimiter::give_back`].
    pub fn give_back(&self, bytes: u64, ops: u64) {
        if let Some(mut l) = self.lock() {
            l.give_back(bytes, ops);
        }
    }

    /// See [`RateLimiter::on_timer`].
    pub fn on_timer(&self) {
        if let Some(mut l) = self.lock() {
            l.on_timer();
        }
    }

    /// The limiter's timer fd, for the worker to wait on; it stays open while a clone of
    /// this handle lives.
    pub fn timer_fd(&self) -> Option<RawFd> {
        self.lock().map(|l| l.timer_fd())
    }

    fn lock(&self) -> Option<MutexGuard<'_, RateLimiter>> {
        // A worker that panicked holding the lock left the buckets consistent: each update
        // is a few integer operations that cannot panic halfway.
        self.0
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests;
