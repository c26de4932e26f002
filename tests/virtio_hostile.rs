//! A hostile guest driver: the test guest submits malformed descriptor chains to a
//! virtio-blk device (a descriptor loop, a buffer outside guest RAM, a 4 GiB length, a
//! device-readable buffer where the device must write, an avail index past the queue
//! size, a head index past the table) and misuses the transport (notifies before setup and
//! before DRIVER_OK, rings outside RAM, a queue larger than QueueNumMax, a reset with
//! requests in flight). The VMM must neither panic nor hang: the guest reaches its
//! summary, each malformed request ends in an error status or DEVICE_NEEDS_RESET, the
//! device works again after a reset, and the rng device keeps working.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{boot_guest, scratch_dir, skip_without_kvm};

/// Malformed requests: each must end in an error status for the request or NEEDS_RESET.
const BAD_REQUESTS: &[&str] = &["loop", "oob_addr", "len4g", "rowrite", "idxjump", "badhead"];
/// Every case, the transport-level ones included.
const CASES: &[&str] = &[
    "loop",
    "oob_addr",
    "len4g",
    "rowrite",
    "idxjump",
    "badhead",
    "early_notify",
    "ring_oob",
    "qsize_over_max",
    "reset_inflight",
];
const NEEDS_RESET: u32 = 0x40;

#[test]
fn malformed_chains_never_crash_or_hang_the_vmm() {
    if skip_without_kvm("malformed_chains_never_crash_or_hang_the_vmm") {
        return;
    }
    let dir = scratch_dir("virtio-hostile");
    let path = dir.join("disk.img");
    let image: Vec<u8> = (0..64 * 512u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &image).unwrap();
    let disk = path.to_string_lossy().into_owned();
    let run = boot_guest(&["--disk", &disk, "--rng"], "tests=hostile");
    let after = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    // Every case's outcome, for the record (the assertions follow).
    for case in CASES {
        eprintln!(
            "hostile {case}: status={} used={} next={} reinit={}",
            run.fact(&format!("hostile_{case}_status")).unwrap_or("-"),
            run.fact(&format!("hostile_{case}_used")).unwrap_or("-"),
            run.fact(&format!("hostile_{case}_next")).unwrap_or("-"),
            run.fact(&format!("hostile_{case}_reinit")).unwrap_or("-"),
        );
    }
    assert!(
        run.guest_lines().iter().any(|l| l.starts_with("summary ")),
        "the guest never reached its summary: {}",
        run.describe()
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
    for case in CASES {
        assert_eq!(
            run.fact(&format!("hostile_{case}_reinit")),
            Some("ok"),
            "{case}: {}",
            run.describe()
        );
        // A device that flags nothing must still serve the next request.
        assert_ne!(
            run.fact(&format!("hostile_{case}_next")),
            Some("fail"),
            "{case}: {}",
            run.describe()
        );
    }
    for case in BAD_REQUESTS {
        let status = run.fact(&format!("hostile_{case}_status")).unwrap_or("-");
        let status = u32::from_str_radix(status.trim_start_matches("0x"), 16).unwrap_or(0);
        let used = run.fact(&format!("hostile_{case}_used")).unwrap_or("none");
        assert!(
            status & NEEDS_RESET != 0 || used == "1" || used == "2",
            "{case}: neither NEEDS_RESET (status {status:#x}) nor an error status (used {used}): {}",
            run.describe()
        );
    }
    assert_eq!(
        run.fact("hostile_rowrite_buffer_intact"),
        Some("1"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("hostile_early_notify_used_before_driver_ok"),
        Some("0"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("hostile_reset_inflight_reset"),
        Some("ok"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("hostile_rng_after"),
        Some("ok"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("hostile_blk_after_reset"),
        Some("ok"),
        "{}",
        run.describe()
    );
    assert_eq!(
        after, image,
        "only reads were submitted, yet the disk file changed"
    );
}

/// The device's own count of what it refused ends the run's summary (`--trace-exits`
/// lists every device; without it, only devices that counted an error).
#[test]
fn rejected_chains_are_counted_in_the_exit_summary() {
    if skip_without_kvm("rejected_chains_are_counted_in_the_exit_summary") {
        return;
    }
    // Removed on drop; the guest writes nothing that matters here.
    let image = vmm_sys_util::tempfile::TempFile::new().unwrap();
    image.as_file().set_len(64 * 512).unwrap();
    let disk = image.as_path().to_string_lossy().into_owned();
    let args = ["--disk", disk.as_str(), "--rng", "--trace-exits"];
    let run = boot_guest(&args, "tests=hostile");

    let device_line = |kind: &str| {
        let prefix = format!("vmm: virtio-mmio ({kind}) at ");
        run.stderr
            .lines()
            .find(|l| l.starts_with(&prefix))
            .map(str::to_owned)
    };
    let blk = device_line("blk").unwrap_or_else(|| panic!("no blk line: {}", run.describe()));
    let rejected: u64 = blk
        .split(", ")
        .nth(1)
        .and_then(|part| part.strip_suffix(" chains rejected"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable blk line {blk:?}"));
    assert!(rejected > 0, "{blk}");
    assert!(device_line("rng").is_some(), "{}", run.describe());
}
