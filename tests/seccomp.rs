//! The VMM's threads run under their seccomp filters while the guest runs (Seccomp: 2 in
//! /proc/PID/task/TID/status), one filter per kind of thread; `--no-seccomp` leaves them
//! without. What each filter refuses is checked in the unit tests (src/vm/seccomp/tests.rs).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{skip_without_kvm, spawn_guest};

/// The threads of the VM below that run under a filter.
const CONFINED: [&str; 5] = ["vcpu0", "vcpu1", "vmm-events", "vmm-spawner", "vmm-balloon"];
/// Those there are without filters (the event loop runs on the VM's own thread then).
const UNCONFINED: [&str; 3] = ["vcpu0", "vcpu1", "vmm-balloon"];

/// The test guest with two vCPUs and a balloon, paused in its balloon test while the
/// balloon's worker runs: the vCPUs, the event loop, the spawner and a worker, alive.
fn threads_of_a_running_vm(extra: &[&str], expected: &[&str]) -> (Vec<(String, u32)>, String) {
    let mut args = vec!["--cpus", "2", "--balloon", "amount_mib=4"];
    args.extend_from_slice(extra);
    let mut vm = spawn_guest(&args, "tests=balloon");
    let came = vm.wait_for_line("vmmtest: balloon ready", Duration::from_secs(10));
    assert!(
        came,
        "the guest did not reach its balloon test:\n{}",
        vm.output_so_far()
    );
    let modes = common::thread_seccomp_modes(vm.pid(), expected);
    // SAFETY: kill(2) of our own child, which `finish` reaps.
    unsafe { libc::kill(vm.pid() as i32, libc::SIGKILL) };
    let run = vm.finish(Duration::from_secs(10));
    (modes, run.stderr)
}

#[test]
fn every_thread_that_handles_the_guest_runs_under_its_filter() {
    if skip_without_kvm("every_thread_that_handles_the_guest_runs_under_its_filter") {
        return;
    }
    let (threads, _) = threads_of_a_running_vm(&[], &CONFINED);
    let names: Vec<&str> = threads.iter().map(|(n, _)| n.as_str()).collect();
    for kind in CONFINED {
        assert!(names.contains(&kind), "no thread {kind} in {threads:?}");
    }
    for (name, mode) in &threads {
        // The thread that built the VM waits for it unconfined (see src/vm/seccomp/mod.rs);
        // KVM's own worker thread (kvm-nx-lpage-recovery) is the kernel's.
        let want = match name.as_str() {
            "vmm" => 0,
            n if n.starts_with("kvm") => continue,
            _ => 2,
        };
        assert_eq!(*mode, want, "thread {name}: Seccomp {mode} in {threads:?}");
    }
}

#[test]
fn the_api_thread_runs_under_its_filter() {
    if skip_without_kvm("the_api_thread_runs_under_its_filter") {
        return;
    }
    let dir = common::scratch_dir("seccomp-api");
    let sock = dir.join("api.sock");
    let sock = sock.to_str().unwrap();
    let mut confined = CONFINED.to_vec();
    confined.push("vmm-api");
    let (threads, _) = threads_of_a_running_vm(&["--api-sock", sock], &confined);
    let _ = std::fs::remove_dir_all(&dir);
    let api = threads.iter().find(|(name, _)| name == "vmm-api");
    assert_eq!(api.map(|(_, mode)| *mode), Some(2), "{threads:?}");
    for (name, mode) in &threads {
        if name != "vmm" && !name.starts_with("kvm") {
            assert_eq!(*mode, 2, "thread {name}: Seccomp {mode} in {threads:?}");
        }
    }
}

#[test]
fn no_seccomp_leaves_the_threads_unfiltered_and_says_so() {
    if skip_without_kvm("no_seccomp_leaves_the_threads_unfiltered_and_says_so") {
        return;
    }
    let (threads, stderr) = threads_of_a_running_vm(&["--no-seccomp"], &UNCONFINED);
    for kind in UNCONFINED {
        assert!(
            threads.iter().any(|(n, _)| n == kind),
            "no thread {kind} in {threads:?}"
        );
    }
    assert!(
        threads
            .iter()
            .all(|(name, mode)| *mode == 0 || name.starts_with("kvm")),
        "{threads:?}"
    );
    assert!(
        stderr.contains("--no-seccomp: the VMM's threads run without seccomp filters"),
        "{stderr}"
    );
}

#[test]
fn a_balloon_with_statistics_activated_by_a_vcpu_runs_under_the_vcpu_filter() {
    if skip_without_kvm("a_balloon_with_statistics_activated_by_a_vcpu_runs_under_the_vcpu_filter")
    {
        return;
    }
    // The vCPU that writes DRIVER_OK activates the balloon, which makes and arms its
    // statistics timer there (timerfd_create, timerfd_settime).
    let run = common::boot_guest(
        &["--balloon", "amount_mib=4,stats_interval=1"],
        "tests=balloonstats",
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.fact("balloonstats_status").is_some(),
        "{}",
        run.describe()
    );
    assert!(run.failures().is_empty(), "{}", run.describe());
}

#[test]
fn a_vm_without_virtio_devices_starts_no_spawner() {
    if skip_without_kvm("a_vm_without_virtio_devices_starts_no_spawner") {
        return;
    }
    // `spin` prints a line and then keeps its vCPU busy: the VM is up with every thread
    // it will have.
    let mut vm = spawn_guest(&[], "tests=spin");
    let came = vm.wait_for_line("vmmtest: spinning", Duration::from_secs(10));
    assert!(came, "the guest did not spin:\n{}", vm.output_so_far());
    let threads = common::thread_seccomp_modes(vm.pid(), &["vcpu0", "vmm-events"]);
    // SAFETY: kill(2) of our own child, which `finish` reaps.
    unsafe { libc::kill(vm.pid() as i32, libc::SIGKILL) };
    vm.finish(Duration::from_secs(10));
    let names: Vec<&str> = threads.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"vcpu0"), "{threads:?}");
    assert!(!names.contains(&"vmm-spawner"), "{threads:?}");
}
