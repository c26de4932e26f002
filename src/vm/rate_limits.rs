//! Rate limits as the user writes them, for blk, net (rx and tx apart) and rng:
//!
//! - on the command line, per second: `bw=BYTES` and `ops=N` parts of `--disk` and `--rng`,
//!   `rx_bw=`, `rx_ops=`, `tx_bw=`, `tx_ops=` parts of `--net`. Each makes a bucket of one
//!   second's worth that refills in a second (Firecracker's `size` N, `refill_time` 1000).
//! - in a Firecracker config file, as Firecracker spells them: `rate_limiter` (drives,
//!   entropy), `rx_rate_limiter` and `tx_rate_limiter` (network-interfaces), each
//!   `{"bandwidth": BUCKET, "ops": BUCKET}` with BUCKET `{"size", "one_time_burst",
//!   "refill_time"}` (refill_time in ms; size 0 limits nothing).
//!
//! Both give a [`RateLimiterConfig`], and a bucket is allowed or refused by the device
//! crate's own rule ([`TokenBucketConfig::check`]), whichever way it came in.

use devices::virtio::{RateLimiterConfig, TokenBucketConfig};
use serde::Deserialize;

/// Which bucket a command-line part sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Bytes per second.
    Bandwidth,
    /// Requests (frames, for net) per second.
    Ops,
}

impl Bucket {
    fn unit(self) -> &'static str {
        match self {
            Bucket::Bandwidth => "bytes per second",
            Bucket::Ops => "operations per second",
        }
    }
}

/// Sets `bucket` of `limit` from the command-line part `key=text`, a count per second above
/// 0; the reason when it is not one.
pub fn set_per_second(
    limit: &mut Option<RateLimiterConfig>,
    bucket: Bucket,
    key: &str,
    text: &str,
) -> Result<(), String> {
    let n: u64 = text
        .parse()
        .map_err(|_| format!("{key} {text:?} is not a number of {}", bucket.unit()))?;
    if n == 0 {
        return Err(format!(
            "{key}=0 would let nothing through; leave {key} out for no limit"
        ));
    }
    let config = limit.get_or_insert_with(RateLimiterConfig::default);
    let per_second = Some(TokenBucketConfig::per_second(n));
    match bucket {
        Bucket::Bandwidth => config.bandwidth = per_second,
        Bucket::Ops => config.ops = per_second,
    }
    Ok(())
}

/// Firecracker's `RateLimiter` object. Unknown fields are refused with their name, and a
/// negative or fractional number by serde's "invalid value" with its line and column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiterJson {
    #[serde(default)]
    bandwidth: Option<TokenBucketJson>,
    #[serde(default)]
    ops: Option<TokenBucketJson>,
}

/// Firecracker's `TokenBucket` object.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBucketJson {
    size: u64,
    #[serde(default)]
    one_time_burst: Option<u64>,
    /// Milliseconds.
    refill_time: u64,
}

impl From<TokenBucketJson> for TokenBucketConfig {
    fn from(b: TokenBucketJson) -> Self {
        TokenBucketConfig {
            size: b.size,
            one_time_burst: b.one_time_burst.unwrap_or(0),
            refill_time_ms: b.refill_time,
        }
    }
}

impl RateLimiterJson {
    /// The limiter it describes; `field` (e.g. `drives[0] ("rootfs").rate_limiter`) names it
    /// when a bucket is refused.
    pub fn config(&self, field: &str) -> Result<RateLimiterConfig, String> {
        let config = RateLimiterConfig {
            bandwidth: self.bandwidth.map(Into::into),
            ops: self.ops.map(Into::into),
        };
        for (name, bucket) in [("bandwidth", config.bandwidth), ("ops", config.ops)] {
            if let Some(b) = bucket {
                b.check().map_err(|e| format!("{field}.{name}: {e}"))?;
            }
        }
        Ok(config)
    }
}

/// [`RateLimiterJson::config`] of an optional field.
pub fn from_json(
    json: Option<&RateLimiterJson>,
    field: &str,
) -> Result<Option<RateLimiterConfig>, String> {
    json.map(|j| j.config(field)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<RateLimiterConfig, String> {
        let parsed: RateLimiterJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        parsed.config("rate_limiter")
    }

    #[test]
    fn firecracker_json_gives_both_buckets() {
        let c = json(
            r#"{"bandwidth": {"size": 1048576, "one_time_burst": 4096, "refill_time": 100},
                "ops": {"size": 200, "refill_time": 1000}}"#,
        )
        .unwrap();
        assert_eq!(
            c.bandwidth,
            Some(TokenBucketConfig {
                size: 1_048_576,
                one_time_burst: 4096,
                refill_time_ms: 100
            })
        );
        assert_eq!(c.ops, Some(TokenBucketConfig::per_second(200)));
    }

    #[test]
    fn json_with_null_or_no_buckets_limits_nothing() {
        assert!(!json(r#"{"bandwidth": null}"#).unwrap().limits_anything());
        assert!(!json("{}").unwrap().limits_anything());
        assert!(
            !json(r#"{"ops": {"size": 0, "refill_time": 0}}"#)
                .unwrap()
                .limits_anything(),
            "size 0 is Firecracker's way to say no limit"
        );
    }

    #[test]
    fn json_bucket_that_never_refills_is_refused_with_its_path() {
        let err = json(r#"{"ops": {"size": 10, "refill_time": 0}}"#).unwrap_err();
        assert!(
            err.starts_with("rate_limiter.ops: refill_time is 0"),
            "{err}"
        );
    }

    #[test]
    fn json_negative_fractional_or_textual_numbers_are_refused() {
        for bad in ["-1", "1.5", "\"100\""] {
            let text = format!(r#"{{"bandwidth": {{"size": {bad}, "refill_time": 100}}}}"#);
            let err = json(&text).unwrap_err();
            assert!(err.contains("invalid"), "{bad}: {err}");
        }
    }

    #[test]
    fn json_unknown_or_missing_bucket_fields_are_named() {
        let err = json(r#"{"bandwidth": {"size": 1, "refill_time": 1, "burst": 5}}"#).unwrap_err();
        assert!(err.contains("unknown field `burst`"), "{err}");
        let err = json(r#"{"bandwidth": {"size": 1}}"#).unwrap_err();
        assert!(err.contains("missing field `refill_time`"), "{err}");
        let err = json(r#"{"bytes": {"size": 1, "refill_time": 1}}"#).unwrap_err();
        assert!(err.contains("unknown field `bytes`"), "{err}");
    }

    #[test]
    fn per_second_parts_make_one_second_buckets() {
        let mut limit = None;
        set_per_second(&mut limit, Bucket::Bandwidth, "bw", "8192").unwrap();
        set_per_second(&mut limit, Bucket::Ops, "ops", "100").unwrap();
        let limit = limit.unwrap();
        assert_eq!(limit.bandwidth, Some(TokenBucketConfig::per_second(8192)));
        assert_eq!(limit.ops, Some(TokenBucketConfig::per_second(100)));
    }

    #[test]
    fn per_second_zero_negative_or_text_is_refused_with_the_key() {
        let mut limit = None;
        for bad in ["0", "-5", "fast", "1.5", ""] {
            let err = set_per_second(&mut limit, Bucket::Bandwidth, "rx_bw", bad).unwrap_err();
            assert!(err.starts_with("rx_bw"), "{bad}: {err}");
        }
        assert_eq!(limit, None, "a refused part sets nothing");
    }
}
