//! Restores that must not happen: a state file from another format version, a truncated
//! or corrupt one, something that is no state file, a memory file of the wrong size, and
//! `--restore` beside a kernel. Each is refused with one line and exit status 2, and no
//! guest runs.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::snapshots::{guest_args, snapshot_run, Snapshotted};
use common::{run_vmm, scratch_dir, skip_without_kvm, TEST_GUEST};

/// A snapshot of the memcount guest in a fresh scratch directory.
fn fresh_snapshot(name: &str) -> (PathBuf, Snapshotted) {
    let dir = scratch_dir(name);
    let (snapshot, _) = snapshot_run(&dir, &guest_args(&[], "memcount"), "stay");
    (dir, snapshot)
}

fn assert_refused(state: &Path, mem: &Path, needles: &[&str]) {
    let run = run_vmm(&[
        "--restore",
        state.to_str().unwrap(),
        "--mem-file",
        mem.to_str().unwrap(),
    ]);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line\n{}", run.describe());
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} not in {}", lines[0]);
    }
    assert!(run.stdout.is_empty(), "no guest ran: {}", run.stdout);
}

fn patched(state: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(state).unwrap();
    edit(&mut bytes);
    let path = state.with_file_name(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_state_file_of_another_format_version_is_refused() {
    if skip_without_kvm("a_state_file_of_another_format_version_is_refused") {
        return;
    }
    let (dir, snapshot) = fresh_snapshot("snap-version");
    let other = patched(&snapshot.state, "v99", |b| {
        b[8..12].copy_from_slice(&99u32.to_le_bytes())
    });
    assert_refused(
        &other,
        &snapshot.mem,
        &["format version 99", "reads version 3 only"],
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_truncated_state_file_is_refused() {
    if skip_without_kvm("a_truncated_state_file_is_refused") {
        return;
    }
    let (dir, snapshot) = fresh_snapshot("snap-truncated");
    let cut = patched(&snapshot.state, "cut", |b| b.truncate(b.len() / 2));
    assert_refused(&cut, &snapshot.mem, &["is truncated"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_state_file_with_a_bad_checksum_is_refused() {
    if skip_without_kvm("a_state_file_with_a_bad_checksum_is_refused") {
        return;
    }
    let (dir, snapshot) = fresh_snapshot("snap-corrupt");
    let flipped = patched(&snapshot.state, "flipped", |b| {
        let at = b.len() - 100;
        b[at] ^= 0x40;
    });
    assert_refused(&flipped, &snapshot.mem, &["is corrupt", "checksum"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_memory_file_of_the_wrong_size_is_refused() {
    if skip_without_kvm("a_memory_file_of_the_wrong_size_is_refused") {
        return;
    }
    let (dir, snapshot) = fresh_snapshot("snap-memsize");
    let short = dir.join("short");
    let file = std::fs::File::create(&short).unwrap();
    file.set_len(std::fs::metadata(&snapshot.mem).unwrap().len() - 4096)
        .unwrap();
    assert_refused(
        &snapshot.state,
        &short,
        &["memory file", "bytes; the state file's guest RAM is"],
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_that_is_no_state_file_is_refused() {
    let dir = scratch_dir("snap-notstate");
    let mem = dir.join("mem");
    std::fs::write(&mem, [0u8; 4096]).unwrap();
    assert_refused(
        Path::new(TEST_GUEST),
        &mem,
        &["not a vmm snapshot state file"],
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn restore_with_a_kernel_is_refused_by_the_command_line() {
    let run = run_vmm(&["--restore", "s", "--mem-file", "m", "--kernel", TEST_GUEST]);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}
