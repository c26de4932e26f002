//! Rate limiters end to end: the test guest reads a disk the VMM limits, and the host times
//! the reads between two guest lines (`--disk ...,bw=` and a Firecracker config file's
//! `rate_limiter`); bad limits are refused with one line and exit status 2, before any VM.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    fnv1a32, run_vmm, scratch_dir, skip_without_kvm, spawn_guest, spawn_vmm, LiveVm, Run,
    GUEST_TIMEOUT, TEST_GUEST,
};

const SECTOR: usize = 512;
/// What the guest's `blkrate` test reads: this many reads of sectors 0..7.
const READS: usize = 6;
const READ_LEN: usize = 4096;
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// A 64-sector image whose bytes depend on their offset, written into `dir`.
fn image(dir: &Path) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = (0..64 * SECTOR).map(|i| (i % 251) as u8).collect();
    let path = dir.join("disk.img");
    std::fs::write(&path, &bytes).unwrap();
    (path.to_string_lossy().into_owned(), bytes)
}

/// Waits for the guest's reads and returns how long they took, from `blkrate start` to
/// `blkrate done` as the host saw the lines, and the finished run.
fn time_reads(mut vm: LiveVm) -> (Duration, Run) {
    let started = vm.wait_for_line("vmmtest: blkrate start", LINE_TIMEOUT);
    assert!(started, "no start line:\n{}", vm.output_so_far());
    let t0 = Instant::now();
    let done = vm.wait_for_line("vmmtest: blkrate done", LINE_TIMEOUT);
    let took = t0.elapsed();
    assert!(done, "no done line:\n{}", vm.output_so_far());
    (took, vm.finish(GUEST_TIMEOUT))
}

/// Every read completed with the disk's first 4 KiB.
fn assert_reads_intact(run: &Run, image: &[u8]) {
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let reads = READS.to_string();
    assert_eq!(
        run.fact("blkrate_reads"),
        Some(reads.as_str()),
        "{}",
        run.describe()
    );
    let hash = format!("0x{:08x}", fnv1a32(&image[..READ_LEN]));
    assert_eq!(
        run.fact("blkrate_fnv1a"),
        Some(hash.as_str()),
        "{}",
        run.describe()
    );
}

#[test]
fn disk_bw_limit_makes_the_guests_reads_take_as_long_as_the_bandwidth_says() {
    if skip_without_kvm("disk_bw_limit_makes_the_guests_reads_take_as_long_as_the_bandwidth_says") {
        return;
    }
    let dir = scratch_dir("rate-limit-bw");
    let (path, bytes) = image(&dir);
    // 8 KiB/s with 8 KiB in the bucket: two reads at once, the other 16 KiB take 2 s.
    let disk = format!("{path},bw=8192");
    let (took, run) = time_reads(spawn_guest(&["--disk", &disk], "tests=blkrate"));
    let _ = std::fs::remove_dir_all(&dir);

    assert_reads_intact(&run, &bytes);
    // Some slack below 2 s for when the host saw each line; unlimited, the reads take
    // well under 100 ms.
    assert!(
        took >= Duration::from_millis(1800),
        "{READS} reads of 4 KiB at 8 KiB/s took {took:?}\n{}",
        run.describe()
    );
}

#[test]
fn config_file_rate_limiter_with_a_one_time_burst_limits_the_drive() {
    if skip_without_kvm("config_file_rate_limiter_with_a_one_time_burst_limits_the_drive") {
        return;
    }
    let dir = scratch_dir("rate-limit-config");
    let (path, bytes) = image(&dir);
    // The 8 KiB burst and the 4 KiB bucket pay for three reads; the other three wait for
    // the bucket, 4 KiB per 500 ms: 1.5 s.
    let json = format!(
        r#"{{
  "boot-source": {{ "kernel_image_path": "{TEST_GUEST}", "boot_args": "console=ttyS0 tests=blkrate" }},
  "drives": [ {{ "drive_id": "data", "path_on_host": "{path}", "is_root_device": false,
    "rate_limiter": {{ "bandwidth": {{ "size": 4096, "one_time_burst": 8192, "refill_time": 500 }} }} }} ],
  "machine-config": {{ "vcpu_count": 1, "mem_size_mib": 64 }}
}}"#
    );
    let config = dir.join("vm_config.json");
    std::fs::write(&config, json).unwrap();
    let args = vec![
        "--config-file".to_string(),
        config.to_string_lossy().into_owned(),
    ];
    let (took, run) = time_reads(spawn_vmm(args));
    let _ = std::fs::remove_dir_all(&dir);

    assert_reads_intact(&run, &bytes);
    assert!(
        !run.stderr.contains("ignored"),
        "the rate limiter was ignored\n{}",
        run.describe()
    );
    assert!(
        took >= Duration::from_millis(1300),
        "{READS} reads of 4 KiB with 12 KiB up front, then 4 KiB per 500 ms, took {took:?}\n{}",
        run.describe()
    );
}

/// Exit 2, and the first stderr line names `option` and `needle` (clap adds its `--help`
/// hint below it); no panic.
fn assert_option_refused(option: &str, value: &str, needle: &str) {
    let run = run_vmm(&["--kernel", TEST_GUEST, option, value]);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains(option) && first.contains(needle),
        "{option} {value}: {}",
        run.describe()
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
}

#[test]
fn bad_rate_limit_options_are_refused_with_exit_2() {
    for (option, value, needle) in [
        (
            "--disk",
            "/nonexistent.img,bw=0",
            "bw=0 would let nothing through",
        ),
        (
            "--disk",
            "/nonexistent.img,bw=-1",
            "bw \"-1\" is not a number",
        ),
        (
            "--disk",
            "/nonexistent.img,ops=many",
            "ops \"many\" is not a number",
        ),
        (
            "--disk",
            "/nonexistent.img,iops=5",
            "unknown part \"iops=5\"",
        ),
        (
            "--net",
            "tap=tap0,rx_bw=1.5",
            "rx_bw \"1.5\" is not a number",
        ),
        ("--net", "tap=tap0,bw=100", "unknown part \"bw\""),
        ("--rng", "bw=lots", "bw \"lots\" is not a number"),
    ] {
        assert_option_refused(option, value, needle);
    }
}

#[test]
fn config_file_bucket_that_never_refills_is_refused_with_one_line() {
    let dir = scratch_dir("rate-limit-bad-config");
    let json = format!(
        r#"{{
  "boot-source": {{ "kernel_image_path": "{TEST_GUEST}" }},
  "entropy": {{ "rate_limiter": {{ "ops": {{ "size": 100, "refill_time": 0 }} }} }}
}}"#
    );
    let config = dir.join("vm_config.json");
    std::fs::write(&config, json).unwrap();
    let run = run_vmm(&["--config-file", config.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
    assert!(
        run.stderr
            .contains("entropy.rate_limiter.ops: refill_time is 0 with a size of 100"),
        "{}",
        run.describe()
    );
}
