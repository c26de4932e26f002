//! Snapshot and restore of a VM with every kind of virtio device attached (blk, rng,
//! vsock, balloon, and net when a TAP can be made), with the test guest's `devcount`
//! test keeping the disk and the rng busy across the snapshot: each step queues a read
//! and an rng request, sleeps while they are answered, and then takes their used entries,
//! so the snapshot lands with queues mid-use and completions the guest has not yet taken.
//! The VMM is killed after the snapshot; a new `vmm --restore` process must finish the
//! run as an uninterrupted one does (same sectors read, same count).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::snapshots::{guest_args, restore, snapshot_run};
use common::{run_vmm, scratch_dir, skip_without_kvm, Run};

const STEPS: &str = "12";

/// A 64 KiB disk whose sectors differ, so a read of the wrong sector changes the checksum.
fn make_disk(path: &Path) {
    let bytes: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i / 512 * 7 + i % 251) as u8)
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// The devices: a disk, rng, vsock and balloon always; a NIC on a new TAP when this
/// process may make one (root), else a SKIP line says so.
fn device_args(dir: &Path, tap: &str) -> Vec<String> {
    let disk = dir.join("disk.img");
    make_disk(&disk);
    let mut args = vec![
        "--disk".to_string(),
        disk.display().to_string(),
        "--rng".to_string(),
        "--vsock".to_string(),
        format!("cid=3,uds={}", dir.join("vsock.sock").display()),
        "--balloon".to_string(),
        "amount_mib=0".to_string(),
    ];
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        args.extend(["--net".to_string(), format!("tap={tap}")]);
    } else {
        eprintln!("SKIP net in the device snapshot: making a TAP needs root");
    }
    args
}

fn assert_finished(run: &Run) {
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(
        run.fact("devcount_count"),
        Some(STEPS),
        "{}",
        run.describe()
    );
    assert_eq!(run.fact("devcount_blk_reads"), Some(STEPS));
    assert!(run.failures().is_empty(), "{}", run.describe());
}

#[test]
fn a_vm_with_every_virtio_device_busy_is_snapshotted_killed_and_finishes_when_restored() {
    if skip_without_kvm(
        "a_vm_with_every_virtio_device_busy_is_snapshotted_killed_and_finishes_when_restored",
    ) {
        return;
    }
    let dir = scratch_dir("snap-devices");
    let mut args = guest_args(&[], "devcount");
    args.extend(device_args(&dir, "vmmsnapdev0"));
    let whole = {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_vmm(&args)
    };
    assert_finished(&whole);

    let (snapshot, code) = snapshot_run(&dir, &args, "stay");
    assert_eq!(code, None, "the VMM was killed (SIGKILL)");
    assert!(
        snapshot.stderr.contains("vmm: test snapshot written"),
        "{}",
        snapshot.stderr
    );
    assert!(
        snapshot.stdout.contains("devcount step=0") && !snapshot.stdout.contains("devcount_count"),
        "the snapshot was not mid-run:\n{}",
        snapshot.stdout
    );

    let restored = restore(&snapshot);

    assert_finished(&restored);
    assert_eq!(
        restored.fact("devcount_blk_checksum"),
        whole.fact("devcount_blk_checksum"),
        "the restored disk read the same sectors"
    );
    assert_eq!(
        restored.fact("devcount_rng_bytes"),
        whole.fact("devcount_rng_bytes")
    );
    assert_eq!(
        snapshot.stdout.clone() + &restored.stdout,
        whole.stdout,
        "what the two processes printed is the uninterrupted run's output"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_vm_with_virtio_devices_resumed_after_its_snapshot_runs_to_its_end() {
    if skip_without_kvm("a_vm_with_virtio_devices_resumed_after_its_snapshot_runs_to_its_end") {
        return;
    }
    let dir = scratch_dir("snap-devices-resume");
    let mut args = guest_args(&[], "devcount");
    args.extend(device_args(&dir, "vmmsnapdev1"));

    let (snapshot, code) = snapshot_run(&dir, &args, "resume");

    assert_eq!(code, Some(0), "{}\n{}", snapshot.stdout, snapshot.stderr);
    assert!(
        snapshot.stderr.contains("vmm: test snapshot written"),
        "{}",
        snapshot.stderr
    );
    assert!(
        snapshot
            .stdout
            .contains(&format!("vmmtest: fact devcount_blk_reads={STEPS}")),
        "{}",
        snapshot.stdout
    );
    std::fs::remove_dir_all(dir).unwrap();
}
