//! The console's input: vmm reads its stdin no faster than the guest reads its serial
//! port, so endless input the guest ignores does not pile up in vmm's memory (it grew to
//! gigabytes from `vmm --kernel guest.elf < /dev/zero`).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{run_vmm_watching_memory, skip_without_kvm, TEST_GUEST};

/// The guest halts (cli; hlt) at once and never reads its serial port.
const IGNORING_GUEST: [&str; 4] = [
    "--kernel",
    TEST_GUEST,
    "--cmdline",
    "console=ttyS0 tests=none end=halt",
];
/// Far above what vmm and the guest's touched RAM need, far below unbounded buffering.
const LIMIT_KIB: u64 = 100 * 1024;
/// How long the input is offered: unbounded buffering passes the limit in well under this.
const FEEDING: Duration = Duration::from_secs(3);

#[test]
fn dev_zero_on_stdin_does_not_grow_the_vmm() {
    if skip_without_kvm("dev_zero_on_stdin_does_not_grow_the_vmm") {
        return;
    }
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let watched = run_vmm_watching_memory(&IGNORING_GUEST, Stdio::from(zero), FEEDING, LIMIT_KIB);
    assert!(watched.peak_kib < LIMIT_KIB, "{watched:?}");
    assert!(watched.status.is_none(), "vmm ended early: {watched:?}");
}

#[test]
fn an_endless_pipe_on_stdin_does_not_grow_the_vmm() {
    if skip_without_kvm("an_endless_pipe_on_stdin_does_not_grow_the_vmm") {
        return;
    }
    let (reader, mut writer) = std::io::pipe().unwrap();
    // Writes until vmm is gone (EPIPE); blocks whenever vmm stops reading.
    let feeder = std::thread::spawn(move || {
        let block = [b'y'; 64 * 1024];
        while writer.write_all(&block).is_ok() {}
    });
    let watched = run_vmm_watching_memory(&IGNORING_GUEST, Stdio::from(reader), FEEDING, LIMIT_KIB);
    feeder.join().unwrap();
    assert!(watched.peak_kib < LIMIT_KIB, "{watched:?}");
    assert!(watched.status.is_none(), "vmm ended early: {watched:?}");
}
