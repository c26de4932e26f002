//! `vmm bench soak` end to end, with small counts: VMs with every virtio device and
//! container runs, in one process, leave its fds, threads, memory, mappings, mounts and the
//! host's cgroups, taps and state directories as they were; a leak injected into the runs
//! is reported and fails the soak; bad input is one line and exit status 2. What counts as
//! growth is checked in the unit tests of src/bench_soak/verdict.rs.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run_vmm_with, skip_without_kvm, Run, VMM};

/// 20 + 20 runs take ~6 s with a release build here, a few times that with a debug one.
const SOAK_TIMEOUT: Duration = Duration::from_secs(600);

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no arguments.
    unsafe { libc::geteuid() == 0 }
}

/// `vmm bench soak --vms VMS --containers N` (no containers without root or without the
/// probe the workspace builds beside vmm), with `extra` options; the run, and how many
/// containers it ran.
fn soak<'a>(test: &str, vms: &str, containers: &'a str, extra: &[&str]) -> (Run, &'a str) {
    let probe = Path::new(VMM).with_file_name("vmm-probe");
    let containers = if !is_root() {
        eprintln!("{test}: not root: VMs only");
        "0"
    } else if !probe.is_file() {
        eprintln!("{test}: no {probe:?} (cargo build --workspace makes it): VMs only");
        "0"
    } else {
        containers
    };
    let mut args = vec!["bench", "soak", "--vms", vms, "--containers", containers];
    args.extend_from_slice(extra);
    (run_vmm_with(&args, b"", SOAK_TIMEOUT), containers)
}

/// The value of a table row in the column of the last sample.
fn last_value(run: &Run, row: &str) -> String {
    let line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with(row))
        .unwrap_or_else(|| panic!("no row {row:?}\n{}", run.describe()));
    line[row.len() + 2..]
        .split_whitespace()
        .rfind(|w| !w.starts_with('+') && w.trim_end_matches('!').parse::<u64>().is_ok())
        .unwrap()
        .trim_end_matches('!')
        .to_owned()
}

#[test]
fn twenty_vms_and_twenty_containers_leave_nothing_behind() {
    let test = "twenty_vms_and_twenty_containers_leave_nothing_behind";
    if skip_without_kvm(test) {
        return;
    }
    let (run, containers) = soak(test, "20", "20", &[]);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.stdout
            .contains(&format!(", {containers} container runs")),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("verdict: nothing grew"),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("20 VM starts and stops (blk, "),
        "{}",
        run.describe()
    );
    // What the VMs and containers could leave on the host is gone.
    for row in [
        "cgroups of the soak",
        "taps of the soak",
        "state dirs of the soak",
    ] {
        assert_eq!(last_value(&run, row), "0", "{row}\n{}", run.describe());
    }
}

#[test]
fn an_fd_left_open_by_each_vm_fails_the_soak_and_is_named() {
    let test = "an_fd_left_open_by_each_vm_fails_the_soak_and_is_named";
    if skip_without_kvm(test) {
        return;
    }
    let (run, _) = soak(test, "5", "0", &["--inject-fd-leak"]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.stdout.contains("verdict: GREW: open fds from"),
        "{}",
        run.describe()
    );
    assert!(
        !run.stdout.contains("verdict: nothing grew"),
        "{}",
        run.describe()
    );
}

#[test]
fn nothing_to_soak_is_bad_input() {
    let run = run_vmm_with(
        &["bench", "soak", "--vms", "0", "--containers", "0"],
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.describe());
    assert!(run.stderr.contains("nothing to soak"), "{}", run.describe());
}
