//! A drive's backing file replaced while the guest runs (`PATCH /drives/{id}` with
//! `path_on_host` after InstanceStart, as firecracker-containerd's stub drives use it): the
//! test guest's `blkswap` mode reads sector 0 of disk A, waits for the configuration
//! change, and reads again; it must see disk B's bytes and capacity. Also through a
//! snapshot: swapped while paused, snapshotted, and loaded in a new VMM, which reopens B
//! (a snapshot that still named A would be refused: A's capacity is not the one saved).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::api::{boot_source, skip_without_curl, Api};
use common::skip_without_kvm;
use common::snapshots::MEM_MIB;

/// Disk A: 128 sectors of 0xa1. Disk B: 48 sectors of 0xb2.
const A_BYTE: u8 = 0xa1;
const A_SECTORS: usize = 128;
const B_BYTE: u8 = 0xb2;
const B_SECTORS: usize = 48;

/// Writes disks A and B into `dir`; configures the blkswap guest with A as drive "data"
/// and starts it, returning once the guest waits for the swap.
fn boot_with_disk_a(api: &mut Api) {
    let dir = &api.dir;
    std::fs::write(dir.join("a.img"), vec![A_BYTE; A_SECTORS * 512]).unwrap();
    std::fs::write(dir.join("b.img"), vec![B_BYTE; B_SECTORS * 512]).unwrap();
    let d = dir.display().to_string();
    api.expect(
        "PUT",
        "/machine-config",
        Some(&format!(
            r#"{{"vcpu_count": 1, "mem_size_mib": {MEM_MIB}}}"#
        )),
        204,
    );
    api.expect("PUT", "/boot-source", Some(&boot_source("blkswap")), 204);
    api.expect(
        "PUT",
        "/drives/data",
        Some(&format!(
            r#"{{"drive_id": "data", "path_on_host": "{d}/a.img", "is_root_device": false, "is_read_only": false}}"#
        )),
        204,
    );
    api.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        204,
    );
    assert!(
        api.vm
            .wait_for_line("vmmtest: blkswap ready", Duration::from_secs(20)),
        "the guest never read disk A"
    );
}

fn patch_to_b(api: &Api, dir: &Path) {
    api.expect(
        "PATCH",
        "/drives/data",
        Some(&format!(
            r#"{{"drive_id": "data", "path_on_host": "{}/b.img"}}"#,
            dir.display()
        )),
        204,
    );
}

/// The guest's facts after the swap: B's first byte and capacity, a new generation and the
/// configuration-change bit in InterruptStatus.
fn assert_guest_saw_b(run: &common::Run) {
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(run.fact("blkswap_byte_before"), Some("161"));
    assert_eq!(
        run.fact("blkswap_capacity_before"),
        Some(A_SECTORS.to_string().as_str())
    );
    assert_eq!(run.fact("blkswap_generation_before"), Some("0"));
    assert_guest_was_told_of_b(run);
}

/// The facts the guest prints once told of the swap: a new generation, the
/// configuration-change bit in InterruptStatus, and B's capacity and first byte.
fn assert_guest_was_told_of_b(run: &common::Run) {
    assert_eq!(run.fact("blkswap_generation_after"), Some("1"));
    let status: u32 = run.fact("blkswap_int_status").unwrap().parse().unwrap();
    assert_ne!(status & 2, 0, "InterruptStatus {status:#x}");
    assert_eq!(
        run.fact("blkswap_capacity_after"),
        Some(B_SECTORS.to_string().as_str())
    );
    assert_eq!(
        run.fact("blkswap_byte_after"),
        Some(B_BYTE.to_string().as_str())
    );
}

#[test]
fn a_drive_patched_after_boot_gives_the_guest_the_new_files_bytes_and_capacity() {
    let test = "a_drive_patched_after_boot_gives_the_guest_the_new_files_bytes_and_capacity";
    if skip_without_kvm(test) || skip_without_curl(test) {
        return;
    }
    let mut api = Api::start("api-drive-swap", &[]);
    boot_with_disk_a(&mut api);
    let d = api.dir.display().to_string();
    api.expect_fault(
        "PATCH",
        "/drives/nope",
        Some(&format!(
            r#"{{"drive_id": "nope", "path_on_host": "{d}/b.img"}}"#
        )),
        "no drive with id \"nope\"",
    );
    api.expect_fault(
        "PATCH",
        "/drives/data",
        Some(r#"{"drive_id": "data", "rate_limiter": {"ops": {"size": 10, "refill_time": 100}}}"#),
        "rate limiter of a running drive is not supported",
    );
    api.expect_fault(
        "PATCH",
        "/drives/data",
        Some(&format!(
            r#"{{"drive_id": "data", "path_on_host": "{d}/missing.img"}}"#
        )),
        "missing.img",
    );
    patch_to_b(&api, &api.dir.clone());
    let (run, dir) = api.finish(Duration::from_secs(30));
    assert_guest_saw_b(&run);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_drive_swapped_while_paused_is_the_one_a_snapshot_reopens_and_the_guest_is_told_on_load() {
    let test =
        "a_drive_swapped_while_paused_is_the_one_a_snapshot_reopens_and_the_guest_is_told_on_load";
    if skip_without_kvm(test) || skip_without_curl(test) {
        return;
    }
    let mut first = Api::start("api-drive-swap-snap", &[]);
    boot_with_disk_a(&mut first);
    let d = first.dir.display().to_string();
    first.expect("PATCH", "/vm", Some(r#"{"state": "Paused"}"#), 204);
    first.expect(
        "PUT",
        "/snapshot/create",
        Some(&format!(
            r#"{{"snapshot_type": "Full", "snapshot_path": "{d}/state0", "mem_file_path": "{d}/mem0"}}"#
        )),
        204,
    );
    // The devices are stopped by the snapshot: the swap lands, the guest is told later.
    patch_to_b(&first, &first.dir.clone());
    first.expect(
        "PUT",
        "/snapshot/create",
        Some(&format!(
            r#"{{"snapshot_type": "Full", "snapshot_path": "{d}/state", "mem_file_path": "{d}/mem"}}"#
        )),
        204,
    );
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(first.vm.pid() as i32, libc::SIGKILL) };
    let (_, first_dir) = first.finish(Duration::from_secs(10));

    let second = Api::start("api-drive-swap-load", &[]);
    let fd = first_dir.display();
    second.expect(
        "PUT",
        "/snapshot/load",
        Some(&format!(
            r#"{{"snapshot_path": "{fd}/state", "mem_backend": {{"backend_type": "File", "backend_path": "{fd}/mem"}}, "resume_vm": true}}"#
        )),
        204,
    );
    let (run, second_dir) = second.finish(Duration::from_secs(30));
    // The restored guest prints only what came after `ready`.
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_guest_was_told_of_b(&run);
    std::fs::remove_dir_all(first_dir).unwrap();
    std::fs::remove_dir_all(second_dir).unwrap();
}
