//! End to end: virtio-rng returns host entropy; virtio-balloon inflation gives guest
//! pages back to the host (the VMM's RSS drops while the VM runs) and deflation returns
//! them (their old contents are gone).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{boot_guest, rss_kib, skip_without_kvm, spawn_guest};

#[test]
fn rng_returns_64_bytes_that_differ_between_runs() {
    if skip_without_kvm("rng_returns_64_bytes_that_differ_between_runs") {
        return;
    }
    let first = boot_guest(&["--rng"], "tests=rng");
    let second = boot_guest(&["--rng"], "tests=rng");
    for run in [&first, &second] {
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(run.fact("rng_len"), Some("64"), "{}", run.describe());
    }
    assert_ne!(
        first.fact("rng_first8"),
        second.fact("rng_first8"),
        "two VMs got the same random bytes"
    );
}

const MIB_KIB: u64 = 1024;
const LINE_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn balloon_inflation_returns_touched_guest_memory_to_the_host() {
    if skip_without_kvm("balloon_inflation_returns_touched_guest_memory_to_the_host") {
        return;
    }
    let mut vm = spawn_guest(&["--balloon", "amount_mib=4"], "tests=balloon");
    let mut rss = Vec::new();
    for phase in ["ready", "touched", "inflated"] {
        let line = format!("vmmtest: balloon {phase}");
        let came = vm.wait_for_line(&line, LINE_TIMEOUT);
        assert!(came, "no `{line}` line:\n{}", vm.output_so_far());
        // The guest pauses after each line; give the device a moment to finish madvise.
        std::thread::sleep(Duration::from_millis(100));
        rss.push(rss_kib(vm.pid()).expect("read the VMM's VmRSS"));
    }
    let run = vm.finish(common::GUEST_TIMEOUT);
    let (ready, touched, inflated) = (rss[0], rss[1], rss[2]);
    eprintln!("balloon: VMM RSS ready={ready} KiB touched={touched} KiB inflated={inflated} KiB");

    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(
        run.fact("balloon_target_pages"),
        Some("1024"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("balloon_touched_kib"),
        Some("4096"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("balloon_inflated_pages"),
        Some("1024"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("balloon_deflated_pages"),
        Some("1024"),
        "{}",
        run.describe()
    );
    assert!(
        touched >= ready + 3 * MIB_KIB,
        "touching 4 MiB raised RSS only from {ready} to {touched} KiB"
    );
    assert!(
        inflated + 3 * MIB_KIB <= touched,
        "inflating 4 MiB lowered RSS only from {touched} to {inflated} KiB"
    );
    // MADV_DONTNEED'd anonymous memory reads back as zero once the pages are deflated.
    assert_eq!(
        run.fact("balloon_zeroed_pages"),
        Some("1024"),
        "{}",
        run.describe()
    );
}
