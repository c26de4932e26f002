//! Snapshots through Firecracker's API, with curl: `PATCH /vm` pauses the test guest
//! mid-run, `PUT /snapshot/create` writes its state and memory, the VMM is killed, and a
//! new `vmm --api-sock` that gets `PUT /snapshot/load` finishes the guest's work with the
//! uninterrupted run's count and checksum.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::api::{boot_source, skip_without_curl, Api};
use common::snapshots::{guest_args, MEM_MIB};
use common::{run_vmm, skip_without_kvm};

#[test]
fn a_guest_snapshotted_through_the_api_and_killed_finishes_in_a_vmm_that_loads_it() {
    let test = "a_guest_snapshotted_through_the_api_and_killed_finishes_in_a_vmm_that_loads_it";
    if skip_without_kvm(test) || skip_without_curl(test) {
        return;
    }
    let args = guest_args(&[], "memcount");
    let whole = run_vmm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(whole.code(), Some(0), "{}", whole.describe());

    let mut first = Api::start("api-snap-first", &[]);
    let d = first.dir.display().to_string();
    first.expect(
        "PUT",
        "/machine-config",
        Some(&format!(
            r#"{{"vcpu_count": 1, "mem_size_mib": {MEM_MIB}}}"#
        )),
        204,
    );
    first.expect("PUT", "/boot-source", Some(&boot_source("memcount")), 204);
    let load = format!(
        r#"{{"snapshot_path": "{d}/state", "mem_backend": {{"backend_type": "File", "backend_path": "{d}/mem"}}, "resume_vm": true}}"#
    );
    first.expect_fault("PUT", "/snapshot/load", Some(&load), "not allowed");
    first.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        204,
    );
    assert!(
        first
            .vm
            .wait_for_line("vmmtest: memcount step=2", Duration::from_secs(20)),
        "the guest never got going"
    );
    first.expect("PATCH", "/vm", Some(r#"{"state": "Paused"}"#), 204);
    first.expect(
        "PUT",
        "/snapshot/create",
        Some(&format!(
            r#"{{"snapshot_type": "Full", "snapshot_path": "{d}/state", "mem_file_path": "{d}/mem"}}"#
        )),
        204,
    );
    let printed_before = first.vm.output_so_far();
    assert!(
        !printed_before.contains("memcount_count"),
        "the snapshot was not mid-run:\n{printed_before}"
    );
    // Killed while paused: the second VMM has only the files.
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(first.vm.pid() as i32, libc::SIGKILL) };
    let (_, first_dir) = first.finish(Duration::from_secs(10));

    let second = Api::start("api-snap-second", &[]);
    second.expect(
        "PUT",
        "/snapshot/load",
        Some(&load.replace(&d, &first_dir.display().to_string())),
        204,
    );
    let info = second.expect("GET", "/", None, 200);
    assert!(info.contains(r#""state":"Running""#), "{info}");
    let (restored, second_dir) = second.finish(Duration::from_secs(30));
    assert_eq!(restored.code(), Some(0), "{}", restored.describe());
    assert_eq!(restored.fact("memcount_count"), Some("20"));
    assert_eq!(
        restored.fact("memcount_checksum"),
        whole.fact("memcount_checksum")
    );
    assert!(
        !restored.stdout.contains("vmmtest: memcount step=0\n"),
        "the restored guest went on, not over:\n{}",
        restored.stdout
    );
    std::fs::remove_dir_all(first_dir).unwrap();
    std::fs::remove_dir_all(second_dir).unwrap();
}

#[test]
fn a_guest_with_a_busy_disk_and_rng_snapshotted_through_the_api_resumes_and_loads_paused() {
    let test =
        "a_guest_with_a_busy_disk_and_rng_snapshotted_through_the_api_resumes_and_loads_paused";
    if skip_without_kvm(test) || skip_without_curl(test) {
        return;
    }
    let first = Api::start("api-snap-dev-first", &[]);
    let d = first.dir.display().to_string();
    let disk: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i / 512 + i % 13) as u8)
        .collect();
    std::fs::write(first.dir.join("disk.img"), disk).unwrap();
    first.expect(
        "PUT",
        "/machine-config",
        Some(&format!(
            r#"{{"vcpu_count": 1, "mem_size_mib": {MEM_MIB}}}"#
        )),
        204,
    );
    first.expect("PUT", "/boot-source", Some(&boot_source("devcount")), 204);
    first.expect(
        "PUT",
        "/drives/data",
        Some(&format!(
            r#"{{"drive_id": "data", "path_on_host": "{d}/disk.img", "is_root_device": false, "is_read_only": true}}"#
        )),
        204,
    );
    first.expect("PUT", "/entropy", Some("{}"), 204);
    first.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        204,
    );
    let mut first = first;
    assert!(
        first
            .vm
            .wait_for_line("vmmtest: devcount step=2", Duration::from_secs(20)),
        "the guest never got going"
    );
    first.expect("PATCH", "/vm", Some(r#"{"state": "Paused"}"#), 204);
    first.expect(
        "PUT",
        "/snapshot/create",
        Some(&format!(
            r#"{{"snapshot_type": "Full", "snapshot_path": "{d}/state", "mem_file_path": "{d}/mem"}}"#
        )),
        204,
    );
    // The API thread starts the saved devices again, under its seccomp filter.
    first.expect("PATCH", "/vm", Some(r#"{"state": "Resumed"}"#), 204);
    let (original, first_dir) = first.finish(Duration::from_secs(30));
    assert_eq!(original.code(), Some(0), "{}", original.describe());
    assert_eq!(original.fact("devcount_blk_reads"), Some("12"));

    let second = Api::start("api-snap-dev-second", &[]);
    let fd = first_dir.display();
    second.expect(
        "PUT",
        "/snapshot/load",
        Some(&format!(
            r#"{{"snapshot_path": "{fd}/state", "mem_backend": {{"backend_type": "File", "backend_path": "{fd}/mem"}}, "resume_vm": false}}"#
        )),
        204,
    );
    // Loaded paused: the restored devices start with the vCPUs, from the API thread.
    second.expect("PATCH", "/vm", Some(r#"{"state": "Resumed"}"#), 204);
    let (restored, second_dir) = second.finish(Duration::from_secs(30));
    assert_eq!(restored.code(), Some(0), "{}", restored.describe());
    assert_eq!(restored.fact("devcount_count"), Some("12"));
    assert_eq!(restored.fact("devcount_blk_reads"), Some("12"));
    assert_eq!(
        restored.fact("devcount_blk_checksum"),
        original.fact("devcount_blk_checksum")
    );
    assert!(restored.failures().is_empty(), "{}", restored.describe());
    std::fs::remove_dir_all(first_dir).unwrap();
    std::fs::remove_dir_all(second_dir).unwrap();
}
