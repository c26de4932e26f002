//! A write the guest saw acknowledged after FLUSH is in the file even when the VMM is
//! killed (SIGKILL, no clean-up at all) right after the guest reported the flush.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{scratch_dir, skip_without_kvm, TEST_GUEST, VMM};

const WRITE_SECTOR: usize = 8;
const PATTERN: &[u8] = b"vmm-blk-write-test";

#[test]
fn flushed_write_survives_the_vmm_being_killed() {
    if skip_without_kvm("flushed_write_survives_the_vmm_being_killed") {
        return;
    }
    let dir = scratch_dir("blk-durability");
    let image = dir.join("disk.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let mut child = Command::new(VMM)
        .args([
            "--kernel",
            TEST_GUEST,
            "--rootfs",
            image.to_str().unwrap(),
            "--cmdline",
            "console=ttyS0 tests=blk end=halt",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = Instant::now();
    let mut flushed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains("fact blk_flush_status=0") {
            flushed = true;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no flush report in time"
        );
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(flushed, "the guest never reported a successful FLUSH");

    let disk = std::fs::read(&image).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let sector = &disk[WRITE_SECTOR * 512..(WRITE_SECTOR + 1) * 512];
    let expected: Vec<u8> = PATTERN.iter().copied().cycle().take(512).collect();
    assert_eq!(
        sector,
        &expected[..],
        "sector {WRITE_SECTOR} holds the flushed pattern"
    );
}
