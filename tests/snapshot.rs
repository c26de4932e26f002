//! Snapshot and restore with the test guest's `memcount` test, which counts in steps over
//! 64 pages and ends with the count and a checksum of them. A VMM snapshots it mid-run
//! (the `VMM_TEST_SNAPSHOT` seam, as the API's `snapshot/create` will) and is killed; a
//! new `vmm --restore` process must finish the run exactly as one that was never
//! interrupted: what the two processes printed, put together, is that run's output.
//! Every VMM here runs its threads under their seccomp filters (the default), so the
//! vCPUs read their state for the snapshot within theirs.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hash::Hasher;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::snapshots::{
    assert_generation_changes, guest_args, restore, snapshot_run, wait_with_deadline,
    without_generation_facts, Snapshotted, SNAPSHOT_AFTER_MS,
};
use common::{run_vmm, scratch_dir, skip_without_kvm, spawn_vmm, Run, VMM};

/// The uninterrupted run of the same guest.
fn reference(args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_vmm(&args);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    run
}

fn file_hash(path: &Path) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(&std::fs::read(path).unwrap());
    hasher.finish()
}

#[test]
fn a_guest_snapshotted_mid_run_and_killed_finishes_the_same_in_a_new_process() {
    if skip_without_kvm("a_guest_snapshotted_mid_run_and_killed_finishes_the_same_in_a_new_process")
    {
        return;
    }
    let dir = scratch_dir("snap-kill");
    let args = guest_args(&[], "memcount");
    let whole = reference(&args);
    let (snapshot, code) = snapshot_run(&dir, &args, "stay");
    assert_eq!(code, None, "the VMM was killed (SIGKILL)");
    assert!(
        snapshot.stderr.contains("vmm: test snapshot written"),
        "{}",
        snapshot.stderr
    );
    assert!(
        snapshot.stdout.contains("memcount step=0") && !snapshot.stdout.contains("memcount_count"),
        "the snapshot was not mid-run:\n{}",
        snapshot.stdout
    );

    let restored = restore(&snapshot);

    assert_eq!(restored.code(), Some(0), "{}", restored.describe());
    assert_eq!(restored.fact("memcount_count"), Some("20"));
    assert_eq!(
        restored.fact("memcount_checksum"),
        whole.fact("memcount_checksum")
    );
    assert!(
        !restored.stdout.contains("memcount step=0\n"),
        "the run went on, not over"
    );
    assert_eq!(
        without_generation_facts(&(snapshot.stdout.clone() + &restored.stdout)),
        without_generation_facts(&whole.stdout),
        "what the two processes printed is the uninterrupted run's output"
    );
    // The restored VM has a generation of its own, and was told so once; the
    // uninterrupted one kept its boot's.
    assert_generation_changes(&whole, 0);
    assert_generation_changes(&restored, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn two_restores_of_one_snapshot_run_side_by_side_without_seeing_each_others_writes() {
    if skip_without_kvm(
        "two_restores_of_one_snapshot_run_side_by_side_without_seeing_each_others_writes",
    ) {
        return;
    }
    let dir = scratch_dir("snap-twice");
    let args = guest_args(&[], "memcount");
    let whole = reference(&args);
    let (snapshot, _) = snapshot_run(&dir, &args, "stay");
    let mem_before = file_hash(&snapshot.mem);

    let restore_args = |s: &Snapshotted| {
        vec![
            "--restore".to_string(),
            s.state.display().to_string(),
            "--mem-file".to_string(),
            s.mem.display().to_string(),
        ]
    };
    let first = spawn_vmm(restore_args(&snapshot));
    let second = spawn_vmm(restore_args(&snapshot));
    let (first, second) = (
        first.finish(Duration::from_secs(20)),
        second.finish(Duration::from_secs(20)),
    );

    // Each step rewrites every page from its own value: a restore that saw the other's
    // writes (a shared mapping) would end with another checksum.
    for run in [&first, &second] {
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(run.fact("memcount_count"), Some("20"), "{}", run.describe());
        assert_eq!(
            run.fact("memcount_checksum"),
            whole.fact("memcount_checksum")
        );
    }
    assert_eq!(
        file_hash(&snapshot.mem),
        mem_before,
        "the memory file is unchanged"
    );
    // Two VMs from one snapshot: each with a generation ID of its own.
    assert_generation_changes(&first, 1);
    assert_generation_changes(&second, 1);
    assert_ne!(first.fact("vmgenid"), second.fact("vmgenid"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_vm_resumed_after_its_snapshot_and_its_restore_both_finish_the_same() {
    if skip_without_kvm("a_vm_resumed_after_its_snapshot_and_its_restore_both_finish_the_same") {
        return;
    }
    let dir = scratch_dir("snap-resume");
    let args = guest_args(&[], "memcount");
    let (snapshot, code) = snapshot_run(&dir, &args, "resume");
    assert_eq!(
        code,
        Some(0),
        "the original ran on to its end: {}",
        snapshot.stderr
    );
    let original_checksum = snapshot
        .stdout
        .lines()
        .find_map(|l| {
            l.trim_end()
                .strip_prefix("vmmtest: fact memcount_checksum=")
        })
        .map(str::to_owned);

    let restored = restore(&snapshot);

    assert_eq!(restored.code(), Some(0), "{}", restored.describe());
    assert!(original_checksum.is_some(), "{}", snapshot.stdout);
    assert_eq!(
        restored.fact("memcount_checksum"),
        original_checksum.as_deref()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_two_vcpu_guest_restores_with_its_second_vcpu_online() {
    if skip_without_kvm("a_two_vcpu_guest_restores_with_its_second_vcpu_online") {
        return;
    }
    let dir = scratch_dir("snap-smp");
    let args = guest_args(&["--cpus", "2"], "smp,memcount");
    let whole = reference(&args);
    let (snapshot, _) = snapshot_run(&dir, &args, "stay");

    let restored = restore(&snapshot);

    assert_eq!(restored.code(), Some(0), "{}", restored.describe());
    assert_eq!(
        restored.fact("memcount_checksum"),
        whole.fact("memcount_checksum")
    );
    assert_eq!(
        without_generation_facts(&(snapshot.stdout + &restored.stdout)),
        without_generation_facts(&whole.stdout)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_restored_vm_snapshots_itself_into_the_memory_file_it_runs_from() {
    if skip_without_kvm("a_restored_vm_snapshots_itself_into_the_memory_file_it_runs_from") {
        return;
    }
    let dir = scratch_dir("snap-again");
    let args = guest_args(&[], "memcount");
    let whole = reference(&args);
    let (first, _) = snapshot_run(&dir, &args, "stay");

    // The restored VM replaces the files it was restored from (its RAM is mapped from
    // `mem`) and runs on: its unread pages must still come from the old file.
    let again = [
        "--restore".to_string(),
        first.state.display().to_string(),
        "--mem-file".to_string(),
        first.mem.display().to_string(),
    ];
    let (second, code) = snapshot_run(&dir, &again, "resume");
    assert_eq!(code, Some(0), "{}", second.stderr);
    assert!(second.stdout.contains(&format!(
        "memcount_checksum={}",
        whole.fact("memcount_checksum").unwrap()
    )));

    let restored = restore(&second);

    assert_eq!(restored.code(), Some(0), "{}", restored.describe());
    assert_eq!(
        restored.fact("memcount_checksum"),
        whole.fact("memcount_checksum")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_paused_vm_still_ends_on_sigterm() {
    if skip_without_kvm("a_paused_vm_still_ends_on_sigterm") {
        return;
    }
    let dir = scratch_dir("snap-term");
    let (state, mem) = (dir.join("state"), dir.join("mem"));
    let mut child = Command::new(VMM)
        .args(guest_args(&[], "memcount"))
        .env(
            "VMM_TEST_SNAPSHOT",
            format!(
                "{},{},{SNAPSHOT_AFTER_MS},stay",
                state.display(),
                mem.display()
            ),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(state.exists(), "no snapshot was written");
    let signalled = Instant::now();
    // SAFETY: kill(2) of our own child, which is waited for below.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let code = wait_with_deadline(&mut child, Instant::now() + Duration::from_secs(5));
    assert_eq!(code, Some(128 + libc::SIGTERM));
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "{:?}",
        signalled.elapsed()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_virtio_device_the_guest_has_not_set_up_yet_works_after_the_restore() {
    if skip_without_kvm("a_virtio_device_the_guest_has_not_set_up_yet_works_after_the_restore") {
        return;
    }
    let dir = scratch_dir("snap-virtio");
    // Snapshotted during memcount, before the guest drives the rng: the restored device
    // must take the guest's whole setup and answer (tests/snapshot_devices.rs has devices
    // busy across the snapshot).
    let args = guest_args(&["--rng"], "memcount,rng");
    let (snapshot, _) = snapshot_run(&dir, &args, "stay");
    assert!(
        !snapshot.stdout.contains("rng_len"),
        "the snapshot was before the rng test:\n{}",
        snapshot.stdout
    );

    let restored = restore(&snapshot);

    assert_eq!(restored.code(), Some(0), "{}", restored.describe());
    assert_eq!(restored.fact("memcount_count"), Some("20"));
    assert_eq!(
        restored.fact("rng_len"),
        Some("64"),
        "{}",
        restored.describe()
    );
    assert!(restored.failures().is_empty(), "{}", restored.describe());
    std::fs::remove_dir_all(dir).unwrap();
}
