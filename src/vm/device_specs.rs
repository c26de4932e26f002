//! The devices a VM gets, as the user describes them on the command line
//! (`--disk PATH[,ro][,id=NAME][,bw=N][,ops=N]`, `--net tap=NAME[,mac=MAC][,rx_bw=N]…`,
//! `--vsock cid=N,uds=PATH`, `--rng [bw=N][,ops=N]`,
//! `--balloon amount_mib=N[,deflate_on_oom][,stats_interval=S]`) or in a Firecracker
//! config file. Parsing errors name the option and the offending part; whether a value is
//! allowed is `spec_checks`'s to say (`rate_limits`'s for rate limits), for both ways in.

use std::path::PathBuf;

use devices::virtio::RateLimiterConfig;
use serde::{Deserialize, Serialize};

use super::rate_limits::{self, Bucket};
use super::spec_checks::{self, InvalidSpec};

// Serializable: a snapshot records the devices it was taken with (`vm::snapshot::config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
    pub id: Option<String>,
    /// How fast the guest may use the disk; `None`: as fast as it can.
    #[serde(with = "crate::vm::snapshot::config::limiter")]
    pub rate_limiter: Option<RateLimiterConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    pub tap: String,
    pub mac: Option<[u8; 6]>,
    /// How fast frames may reach the guest.
    #[serde(with = "crate::vm::snapshot::config::limiter")]
    pub rx_rate_limiter: Option<RateLimiterConfig>,
    /// How fast the guest may send frames.
    #[serde(with = "crate::vm::snapshot::config::limiter")]
    pub tx_rate_limiter: Option<RateLimiterConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngSpec {
    /// How fast the guest may draw entropy.
    #[serde(with = "crate::vm::snapshot::config::limiter")]
    pub rate_limiter: Option<RateLimiterConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockSpec {
    pub guest_cid: u64,
    pub uds_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonSpec {
    pub amount_mib: u32,
    pub deflate_on_oom: bool,
    pub stats_interval_s: u16,
}

/// Every virtio device of a VM, in the order their windows are allocated: the root disk
/// first (so it becomes /dev/vda), then other disks, network, vsock, rng, balloon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpecs {
    /// The root disk (`--rootfs`), if any; it is also `disks[0]`'s place in the guest.
    pub rootfs: Option<DiskSpec>,
    pub disks: Vec<DiskSpec>,
    pub nets: Vec<NetSpec>,
    pub vsock: Option<VsockSpec>,
    pub rng: Option<RngSpec>,
    pub balloon: Option<BalloonSpec>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{option} {value:?}: {reason}")]
pub struct SpecError {
    pub option: &'static str,
    pub value: String,
    pub reason: String,
}

fn spec_err(option: &'static str, value: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        option,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// `rule_err(OPT, value)` turns a broken rule into the option's error.
fn rule_err<'a>(
    option: &'static str,
    value: &'a str,
) -> impl FnOnce(InvalidSpec) -> SpecError + 'a {
    move |e| spec_err(option, value, e.to_string())
}

/// A per-second rate-limit part `key=n` of `option`'s `value`: sets `bucket` of `limit`.
fn per_second(
    option: &'static str,
    value: &str,
    limit: &mut Option<RateLimiterConfig>,
    bucket: Bucket,
    key: &str,
    n: &str,
) -> Result<(), SpecError> {
    rate_limits::set_per_second(limit, bucket, key, n).map_err(|r| spec_err(option, value, r))
}

/// Splits `a=1,b,c=2` into (key, optional value) pairs.
fn fields(value: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    value.split(',').map(|part| match part.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (part, None),
    })
}

pub fn parse_disk(value: &str) -> Result<DiskSpec, SpecError> {
    const OPT: &str = "--disk";
    let mut parts = value.split(',');
    let path = parts.next().unwrap_or_default();
    if path.is_empty() {
        return Err(spec_err(
            OPT,
            value,
            "expected PATH[,ro][,id=NAME][,bw=N][,ops=N]",
        ));
    }
    let mut spec = DiskSpec {
        path: PathBuf::from(path),
        read_only: false,
        id: None,
        rate_limiter: None,
    };
    for part in parts {
        match part.split_once('=') {
            None if part == "ro" => spec.read_only = true,
            None if part == "rw" => spec.read_only = false,
            Some(("id", id)) => {
                spec.id = Some(spec_checks::disk_id(id).map_err(rule_err(OPT, value))?)
            }
            Some((key @ "bw", n)) => per_second(
                OPT,
                value,
                &mut spec.rate_limiter,
                Bucket::Bandwidth,
                key,
                n,
            )?,
            Some((key @ "ops", n)) => {
                per_second(OPT, value, &mut spec.rate_limiter, Bucket::Ops, key, n)?
            }
            _ => {
                return Err(spec_err(
                    OPT,
                    value,
                    format!(
                    "unknown part {part:?}; expected ro, id=NAME, bw=BYTES_PER_S or ops=OPS_PER_S"
                ),
                ))
            }
        }
    }
    Ok(spec)
}

pub fn parse_net(value: &str) -> Result<NetSpec, SpecError> {
    const OPT: &str = "--net";
    let mut tap = None;
    let mut mac = None;
    let (mut rx, mut tx) = (None, None);
    for (key, v) in fields(value) {
        match (key, v) {
            ("tap", Some(name)) => {
                tap = Some(spec_checks::tap_name(name).map_err(rule_err(OPT, value))?)
            }
            ("mac", Some(m)) => mac = Some(parse_mac(m).map_err(|r| spec_err(OPT, value, r))?),
            ("rx_bw", Some(n)) => per_second(OPT, value, &mut rx, Bucket::Bandwidth, key, n)?,
            ("rx_ops", Some(n)) => per_second(OPT, value, &mut rx, Bucket::Ops, key, n)?,
            ("tx_bw", Some(n)) => per_second(OPT, value, &mut tx, Bucket::Bandwidth, key, n)?,
            ("tx_ops", Some(n)) => per_second(OPT, value, &mut tx, Bucket::Ops, key, n)?,
            _ => {
                return Err(spec_err(
                    OPT,
                    value,
                    format!(
                        "unknown part {key:?}; expected tap=NAME[,mac=MAC][,rx_bw=N][,rx_ops=N][,tx_bw=N][,tx_ops=N]"
                    ),
                ))
            }
        }
    }
    let tap = tap.ok_or_else(|| spec_err(OPT, value, "tap=NAME is required"))?;
    Ok(NetSpec {
        tap,
        mac,
        rx_rate_limiter: rx,
        tx_rate_limiter: tx,
    })
}

/// The `mac=` part of `--net`: [`spec_checks::mac`], its refusal as the reason text.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    spec_checks::mac(text).map_err(|e| e.to_string())
}

pub fn parse_vsock(value: &str) -> Result<VsockSpec, SpecError> {
    const OPT: &str = "--vsock";
    let mut cid = None;
    let mut uds = None;
    for (key, v) in fields(value) {
        match (key, v) {
            ("cid", Some(n)) => cid = Some(parse_cid(OPT, value, n)?),
            ("uds", Some(p)) if !p.is_empty() => uds = Some(PathBuf::from(p)),
            _ => {
                return Err(spec_err(
                    OPT,
                    value,
                    format!("unknown part {key:?}; expected cid=N,uds=PATH"),
                ))
            }
        }
    }
    Ok(VsockSpec {
        guest_cid: cid.ok_or_else(|| spec_err(OPT, value, "cid=N is required"))?,
        uds_path: uds.ok_or_else(|| spec_err(OPT, value, "uds=PATH is required"))?,
    })
}

/// The `cid=` part of `--vsock`: a number that [`spec_checks::guest_cid`] allows.
fn parse_cid(option: &'static str, value: &str, n: &str) -> Result<u64, SpecError> {
    let cid: u64 = n
        .parse()
        .map_err(|_| spec_err(option, value, format!("cid {n:?} is not a number")))?;
    spec_checks::guest_cid(cid).map_err(rule_err(option, value))
}

/// `--rng`'s value: empty (`--rng` alone: no limit), or `bw=N` and `ops=N` parts.
pub fn parse_rng(value: &str) -> Result<RngSpec, SpecError> {
    const OPT: &str = "--rng";
    let mut spec = RngSpec::default();
    if value.is_empty() {
        return Ok(spec);
    }
    let limit = &mut spec.rate_limiter;
    for (key, v) in fields(value) {
        match (key, v) {
            ("bw", Some(n)) => per_second(OPT, value, limit, Bucket::Bandwidth, key, n)?,
            ("ops", Some(n)) => per_second(OPT, value, limit, Bucket::Ops, key, n)?,
            _ => {
                return Err(spec_err(
                    OPT,
                    value,
                    format!("unknown part {key:?}; expected bw=BYTES_PER_S or ops=OPS_PER_S"),
                ))
            }
        }
    }
    Ok(spec)
}

pub fn parse_balloon(value: &str) -> Result<BalloonSpec, SpecError> {
    const OPT: &str = "--balloon";
    let mut spec = BalloonSpec {
        amount_mib: 0,
        deflate_on_oom: false,
        stats_interval_s: 0,
    };
    let number = |key: &str, n: &str| -> Result<u64, SpecError> {
        n.parse()
            .map_err(|_| spec_err(OPT, value, format!("{key} {n:?} is not a number")))
    };
    for (key, v) in fields(value) {
        match (key, v) {
            ("amount_mib", Some(n)) => {
                spec.amount_mib = u32::try_from(number(key, n)?)
                    .map_err(|_| spec_err(OPT, value, "amount_mib is too large"))?
            }
            ("deflate_on_oom", None) => spec.deflate_on_oom = true,
            ("stats_interval", Some(n)) => {
                spec.stats_interval_s = u16::try_from(number(key, n)?)
                    .map_err(|_| spec_err(OPT, value, "stats_interval is at most 65535 s"))?
            }
            _ => {
                return Err(spec_err(
                    OPT,
                    value,
                    format!(
                        "unknown part {key:?}; expected amount_mib=N[,deflate_on_oom][,stats_interval=S]"
                    ),
                ))
            }
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::virtio::TokenBucketConfig;

    fn per_second(n: u64) -> Option<TokenBucketConfig> {
        Some(TokenBucketConfig::per_second(n))
    }

    #[test]
    fn disk_spec_takes_ro_and_id() {
        let d = parse_disk("/img/data.ext4,ro,id=data").unwrap();
        assert_eq!(d.path, PathBuf::from("/img/data.ext4"));
        assert!(d.read_only);
        assert_eq!(d.id.as_deref(), Some("data"));
    }

    #[test]
    fn disk_spec_rejects_unknown_part_and_long_id() {
        assert!(parse_disk("a.img,fast")
            .unwrap_err()
            .reason
            .contains("fast"));
        assert!(parse_disk("a.img,id=123456789012345678901").is_err());
        assert!(parse_disk("").is_err());
    }

    #[test]
    fn net_spec_needs_a_tap_and_parses_the_mac() {
        let n = parse_net("tap=tap0,mac=06:00:ac:10:00:02").unwrap();
        assert_eq!(n.tap, "tap0");
        assert_eq!(n.mac, Some([6, 0, 0xac, 0x10, 0, 2]));
        assert!(parse_net("mac=06:00:ac:10:00:02")
            .unwrap_err()
            .reason
            .contains("tap=NAME"));
        assert!(parse_net("tap=this-name-is-too-long").is_err());
    }

    #[test]
    fn mac_must_be_six_hex_pairs_and_unicast() {
        assert!(parse_mac("06:00:ac:10:00").is_err());
        assert!(parse_mac("06:00:ac:10:00:zz").is_err());
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .contains("multicast"));
    }

    #[test]
    fn vsock_spec_needs_cid_and_uds_and_refuses_reserved_cids() {
        let v = parse_vsock("cid=3,uds=/tmp/v.sock").unwrap();
        assert_eq!(v.guest_cid, 3);
        assert_eq!(v.uds_path, PathBuf::from("/tmp/v.sock"));
        assert!(parse_vsock("cid=2,uds=/tmp/v.sock")
            .unwrap_err()
            .reason
            .contains("reserved"));
        assert!(parse_vsock("uds=/tmp/v.sock").is_err());
        assert!(parse_vsock("cid=3").is_err());
    }

    #[test]
    fn balloon_spec_parses_every_part() {
        let b = parse_balloon("amount_mib=64,deflate_on_oom,stats_interval=5").unwrap();
        assert_eq!(
            b,
            BalloonSpec {
                amount_mib: 64,
                deflate_on_oom: true,
                stats_interval_s: 5
            }
        );
        assert!(parse_balloon("amount_mib=lots").is_err());
    }

    // The boundaries of the rules in `spec_checks`, through the command-line path; the
    // config file's tests check the same boundaries through its path.

    #[test]
    fn disk_id_of_20_bytes_is_kept_whole_and_21_refused() {
        let id20 = "d".repeat(20);
        let d = parse_disk(&format!("a.img,id={id20}")).unwrap();
        assert_eq!(d.id, Some(id20));
        let err = parse_disk(&format!("a.img,id={}", "d".repeat(21))).unwrap_err();
        assert!(err.reason.contains("21 bytes"), "{err}");
    }

    #[test]
    fn multibyte_disk_id_over_20_bytes_is_refused() {
        // 11 characters, 22 bytes.
        let err = parse_disk(&format!("a.img,id={}", "é".repeat(11))).unwrap_err();
        assert!(err.reason.contains("22 bytes"), "{err}");
    }

    #[test]
    fn vsock_cids_0_1_2_are_refused_and_3_accepted() {
        for cid in 0..3 {
            let err = parse_vsock(&format!("cid={cid},uds=/tmp/v.sock")).unwrap_err();
            assert!(err.reason.contains("reserved"), "{err}");
        }
        assert_eq!(parse_vsock("cid=3,uds=/tmp/v.sock").unwrap().guest_cid, 3);
    }

    #[test]
    fn net_with_a_bad_mac_is_refused() {
        for bad in ["06:00:ac:10:00", "01:00:5e:00:00:01", "+6:00:ac:10:00:02"] {
            let err = parse_net(&format!("tap=tap0,mac={bad}")).unwrap_err();
            assert!(err.reason.contains(bad), "{err}");
        }
    }

    #[test]
    fn disk_bw_and_ops_are_per_second_limits() {
        let d = parse_disk("a.img,ro,bw=1048576,ops=100").unwrap();
        let limit = d.rate_limiter.unwrap();
        assert_eq!(limit.bandwidth, per_second(1_048_576));
        assert_eq!(limit.ops, per_second(100));
        assert_eq!(
            parse_disk("a.img,ops=5")
                .unwrap()
                .rate_limiter
                .unwrap()
                .bandwidth,
            None
        );
        assert_eq!(parse_disk("a.img").unwrap().rate_limiter, None);
    }

    #[test]
    fn net_rx_and_tx_limits_are_apart() {
        let n = parse_net("tap=tap0,rx_bw=1000,tx_ops=50").unwrap();
        let (rx, tx) = (n.rx_rate_limiter.unwrap(), n.tx_rate_limiter.unwrap());
        assert_eq!((rx.bandwidth, rx.ops), (per_second(1000), None));
        assert_eq!((tx.bandwidth, tx.ops), (None, per_second(50)));
    }

    #[test]
    fn rng_alone_has_no_limit_and_takes_bw_and_ops() {
        assert_eq!(parse_rng("").unwrap(), RngSpec::default());
        let limit = parse_rng("bw=4096,ops=10").unwrap().rate_limiter.unwrap();
        assert_eq!(limit.bandwidth, per_second(4096));
        assert_eq!(limit.ops, per_second(10));
    }

    #[test]
    fn bad_rate_limits_are_refused_naming_the_part() {
        for (err, needle) in [
            (parse_disk("a.img,bw=0").unwrap_err(), "bw=0"),
            (parse_disk("a.img,bw=-1").unwrap_err(), "bw \"-1\""),
            (parse_disk("a.img,ops=lots").unwrap_err(), "ops \"lots\""),
            (
                parse_disk("a.img,iops=5").unwrap_err(),
                "unknown part \"iops=5\"",
            ),
            (parse_net("tap=t0,rx_bw=1.5").unwrap_err(), "rx_bw \"1.5\""),
            (
                parse_net("tap=t0,bw=10").unwrap_err(),
                "unknown part \"bw\"",
            ),
            (parse_rng("bw=").unwrap_err(), "bw \"\""),
            (parse_rng("rate=5").unwrap_err(), "unknown part \"rate\""),
        ] {
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
