//! Fuzzing `config_file::parse`, the `--config-file` entry point (`load` reads the file
//! and calls it), on stable as ordinary tests (`fuzzkit`; docs/fuzzing.md):
//!
//! - any bytes, as a file: `load` gives a config or an error, never a panic;
//! - near-valid documents (a full Firecracker config with a few values changed, removed
//!   or added): an accepted config keeps every device rule of `spec_checks` and has no
//!   rate-limiter bucket that would never refill, a refusal
//!   says something, and the answer depends on the document, not on its formatting;
//! - one unknown field added anywhere: refused with the field's name, unless it lands in
//!   a setting `vmm` ignores whole (the logger, metrics, MMDS, CPU templates), where
//!   anything goes.

use std::io::Write;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use vmm_sys_util::tempfile::TempFile;

use super::{load, parse, FileConfig};
use crate::vm::spec_checks;
use fuzzkit::json::{get, get_mut, near, object_paths, text_of, Step};
use fuzzkit::{accepted_or_refused, fail, Reach};

/// Cases per target in a plain `cargo test` run.
const CASES: u32 = 512;

/// Every field the format has, most of them set.
fn template() -> Value {
    json!({
        "boot-source": {
            "kernel_image_path": "vmlinux.bin",
            "boot_args": "console=ttyS0 reboot=k panic=1",
            "initrd_path": "initrd.img"
        },
        "drives": [
            {
                "drive_id": "rootfs",
                "path_on_host": "rootfs.ext4",
                "is_root_device": true,
                "is_read_only": false,
                "partuuid": null,
                "cache_type": "Unsafe",
                "io_engine": "Sync",
                "rate_limiter": {"bandwidth": {"size": 1, "one_time_burst": 4096, "refill_time": 100}}
            },
            {
                "drive_id": "data",
                "path_on_host": "data.img",
                "is_root_device": false,
                "is_read_only": true,
                "cache_type": "Writeback"
            }
        ],
        "machine-config": {
            "vcpu_count": 2,
            "mem_size_mib": 1024,
            "smt": false,
            "track_dirty_pages": false,
            "huge_pages": "None",
            "cpu_template": "T2"
        },
        "network-interfaces": [
            {
                "iface_id": "eth0",
                "guest_mac": "06:00:AC:10:00:02",
                "host_dev_name": "tap0",
                "rx_rate_limiter": null,
                "tx_rate_limiter": {"ops": {"size": 10, "refill_time": 1000}}
            }
        ],
        "vsock": {"vsock_id": "vsock0", "guest_cid": 3, "uds_path": "./v.sock"},
        "entropy": {"rate_limiter": {"ops": {"size": 5, "refill_time": 1000}}},
        "balloon": {"amount_mib": 64, "deflate_on_oom": true, "stats_polling_interval_s": 1},
        "logger": {"log_path": "/dev/null", "level": "Info"},
        "metrics": null,
        "mmds-config": null,
        "cpu-config": null
    })
}

/// The settings `vmm` ignores whole, whatever they hold (rate limiters are read, and
/// checked like any other field).
const FREE_FORM: [&str; 4] = ["logger", "metrics", "mmds-config", "cpu-config"];

/// What an accepted config must satisfy: the device rules, whichever way a value arrives.
fn check_accepted(c: &FileConfig) -> Result<(), TestCaseError> {
    let mut limiters = Vec::new();
    for disk in c.devices.rootfs.iter().chain(&c.devices.disks) {
        let id = disk.id.clone().unwrap_or_default();
        prop_assert_eq!(spec_checks::disk_id(&id), Ok(id.clone()));
        limiters.push(disk.rate_limiter);
    }
    for nic in &c.devices.nets {
        prop_assert_eq!(spec_checks::tap_name(&nic.tap), Ok(nic.tap.clone()));
        if let Some(mac) = nic.mac {
            prop_assert_eq!(mac[0] & 1, 0, "a multicast MAC was accepted");
        }
        limiters.extend([nic.rx_rate_limiter, nic.tx_rate_limiter]);
    }
    limiters.extend(c.devices.rng.as_ref().map(|r| r.rate_limiter));
    // A bucket that holds tokens refills: a refill_time of 0 with a size is refused.
    for limiter in limiters.into_iter().flatten() {
        for bucket in [limiter.bandwidth, limiter.ops].into_iter().flatten() {
            prop_assert!(
                bucket.size == 0 || bucket.refill_time_ms > 0,
                "a bucket that never refills: {:?}",
                bucket
            );
        }
    }
    if let Some(v) = &c.devices.vsock {
        prop_assert_eq!(spec_checks::guest_cid(v.guest_cid), Ok(v.guest_cid));
    }
    prop_assert!(c.ignored.iter().all(|i| !i.is_empty()));
    Ok(())
}

fn check(text: &str) -> Result<Result<FileConfig, String>, TestCaseError> {
    let result = parse(text);
    accepted_or_refused(result.as_ref(), |c| check_accepted(c))?;
    Ok(result)
}

#[test]
fn template_of_the_config_file_fuzz_is_accepted() {
    // The near-valid targets start from it: it must be valid, or they test only refusals.
    let c = parse(&template().to_string()).unwrap();
    assert_eq!(c.devices.disks.len(), 1);
    assert!(c.devices.rootfs.is_some());
}

#[test]
fn config_file_of_any_bytes_loads_or_fails_cleanly() {
    fuzzkit::check(file!(), CASES, fuzzkit::json::garbage(), |bytes| {
        let file = TempFile::new().map_err(fail)?;
        file.as_file().write_all(&bytes).map_err(fail)?;
        accepted_or_refused(load(file.as_path()), check_accepted)
    });
}

#[test]
fn near_valid_config_files_are_accepted_within_the_rules_or_refused_whatever_the_layout() {
    // Some mutations must pass, or the rules checked on accepted configs go untested.
    let accepted = Reach::new("were accepted");
    fuzzkit::check(file!(), CASES, near(template(), 4), |doc| {
        let compact = check(&doc.to_string())?;
        let pretty = serde_json::to_string_pretty(&doc).unwrap_or_default();
        let pretty = check(&pretty)?;
        prop_assert_eq!(compact.is_ok(), pretty.is_ok());
        accepted.record(compact.is_ok());
        if let (Ok(a), Ok(b)) = (compact, pretty) {
            prop_assert_eq!(a, b);
        }
        Ok(())
    });
    accepted.assert_at_least_one_in(16);
}

#[test]
fn damaged_config_file_text_is_refused_or_accepted_within_the_rules() {
    fuzzkit::check(file!(), CASES, text_of(near(template(), 2), 3), |bytes| {
        let _verdict = check(&String::from_utf8_lossy(&bytes))?;
        Ok(())
    });
}

#[test]
fn an_unknown_field_is_named_in_the_error_unless_in_an_ignored_setting() {
    let doc = template();
    let objects = object_paths(&doc);
    let input = (any::<Index>(), "zz_[a-z]{1,8}");
    fuzzkit::check(file!(), CASES, input, |(at, key)| {
        let path = at.get(&objects);
        let mut doc = doc.clone();
        if let Some(Value::Object(map)) = get_mut(&mut doc, path) {
            map.insert(key.clone(), json!(1));
        }
        let free = path
            .iter()
            .any(|s| matches!(s, Step::Key(k) if FREE_FORM.contains(&k.as_str())));
        prop_assert!(get(&doc, path).is_some());
        match check(&doc.to_string())? {
            Ok(_) => prop_assert!(free, "unknown field {} at {:?} accepted", key, path),
            Err(e) => {
                prop_assert!(!free, "refused inside an ignored setting: {}", e);
                prop_assert!(e.contains(&format!("unknown field `{key}`")), "{}", e);
            }
        }
        Ok(())
    });
}
