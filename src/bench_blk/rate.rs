//! `vmm bench blk --bw N`: the throughput of a virtio-blk disk limited to N bytes a second,
//! against N. The same device, worker and limiter as a VM's (`Block::with_rate_limiter`,
//! its queue waiting on the limiter's timerfd), driven in-process as the rest of
//! `vmm bench blk` is: the test guest could not move megabytes in the ~10^5 instructions a
//! run may take under PVM's emulator, and the limiter lives in the device's worker, which
//! this drives exactly as a guest's notifies would.
//!
//! The bucket holds one second's worth and starts full, so the first N bytes go at once:
//! they are timed apart. A settling batch follows, which has to wait for tokens; from its
//! end (when the bucket holds less than one request's worth) the reads are timed for the
//! seconds asked. At that point and at the end the bucket is as good as empty, so the
//! bytes over the time are the rate the limiter lets through, within one request.

use std::path::Path;
use std::time::Duration;

use devices::virtio::{QueueLimiter, RateLimiterConfig, TokenBucketConfig};

use super::{random_blocks, Driver, BLOCK, DEPTH, SECTOR, T_IN};

/// How far from the limit the measured rate may be and still count as the limit.
const WITHIN: f64 = 0.05;

/// The rate-limited run: prints its numbers; an error when the run failed.
pub fn bench(path: &Path, bytes_per_s: u64, seconds: u32) -> Result<(), String> {
    let config = RateLimiterConfig {
        bandwidth: Some(TokenBucketConfig::per_second(bytes_per_s)),
        ops: None,
    };
    let limiter = QueueLimiter::from_config(Some(config)).map_err(|e| edge::error_chain(&e))?;
    let mut driver = Driver::new(path, true, limiter)?;
    let blocks = driver.capacity / (BLOCK as u64 / SECTOR);
    if blocks == 0 {
        return Err(format!("{path:?} is smaller than 4 KiB"));
    }
    let requests = |bytes: u64| usize::try_from(bytes.div_ceil(BLOCK as u64)).unwrap_or(usize::MAX);
    let burst = requests(bytes_per_s);
    let settle = usize::from(DEPTH);
    let measured = requests(bytes_per_s.saturating_mul(u64::from(seconds)));
    let offsets = random_blocks(burst + settle + measured, blocks);
    let (burst_offsets, rest) = offsets.split_at(burst);
    let (settle_offsets, measured_offsets) = rest.split_at(settle);

    println!(
        "bench blk --bw {bytes_per_s}: 4 KiB reads, {DEPTH} in flight, from a disk limited to \
         {bytes_per_s} bytes/s (a bucket of one second's worth, full at the start)"
    );
    let burst_time = driver.run(T_IN, burst_offsets, DEPTH)?;
    println!(
        "  the full bucket, {} bytes: {:.1} ms (it goes at once: {:.0} bytes/s)",
        burst * BLOCK,
        ms(burst_time),
        (burst * BLOCK) as f64 / burst_time.as_secs_f64()
    );
    driver.run(T_IN, settle_offsets, DEPTH)?;
    let took = driver.run(T_IN, measured_offsets, DEPTH)?;
    let bytes = (measured * BLOCK) as f64;
    let rate = bytes / took.as_secs_f64();
    let off = rate / bytes_per_s as f64 - 1.0;
    println!(
        "  then {} bytes in {:.3} s: {:.0} bytes/s, {:+.3}% off the limit: {} {:.0}%",
        measured * BLOCK,
        took.as_secs_f64(),
        rate,
        off * 100.0,
        if off.abs() <= WITHIN {
            "within"
        } else {
            "NOT within"
        },
        WITHIN * 100.0
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
