//! Bad requests to Firecracker's API on `vmm --api-sock`, before and after the VM starts:
//! unknown paths, wrong methods, invalid JSON, unknown fields and requests in the wrong
//! state each get Firecracker's status and `fault_message`, driven with curl.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::api::{boot_source, skip_without_curl, Api};
use common::skip_without_kvm;

#[test]
fn bad_requests_before_start_get_firecrackers_status_and_message() {
    if skip_without_curl("bad_requests_before_start_get_firecrackers_status_and_message") {
        return;
    }
    let api = Api::start("api-bad", &[]);
    api.expect_fault(
        "GET",
        "/nowhere",
        None,
        "Invalid request method and/or path: GET nowhere.",
    );
    api.expect_fault(
        "POST",
        "/actions",
        Some("{}"),
        "Invalid request method and/or path: POST actions.",
    );
    api.expect_fault(
        "DELETE",
        "/drives/rootfs",
        None,
        "Invalid request method and/or path: DELETE drives.",
    );
    api.expect_fault(
        "PUT",
        "/boot-source",
        Some("{nope"),
        "An error occurred when deserializing the json body of a request: key must be a string",
    );
    api.expect_fault(
        "PUT",
        "/machine-config",
        Some(r#"{"vcpu_count": 1, "mem_size_mib": 64, "turbo": true}"#),
        "unknown field `turbo`",
    );
    api.expect_fault("PUT", "/boot-source", None, "Empty PUT request.");
    api.expect_fault(
        "PUT",
        "/drives/a-b",
        Some("{}"),
        "API Resource IDs can only contain alphanumeric characters and underscores.",
    );
    // Wrong state: run-time actions before a VM runs, and InstanceStart without a kernel.
    api.expect_fault(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
        "not supported before starting the microVM",
    );
    api.expect_fault(
        "PATCH",
        "/balloon",
        Some(r#"{"amount_mib": 1}"#),
        "not supported before starting the microVM",
    );
    api.expect_fault(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        "Start microvm error: Cannot start microvm without kernel configuration.",
    );
    // A kernel that is not there: refused with the VMM's own reason, and the API serves on.
    api.expect(
        "PUT",
        "/boot-source",
        Some(r#"{"kernel_image_path": "/nonexistent/vmlinux"}"#),
        204,
    );
    api.expect_fault(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        "/nonexistent/vmlinux",
    );
    let info = api.expect("GET", "/", None, 200);
    assert!(info.contains(r#""state":"Not started""#), "{info}");
    // After configuration, a snapshot may no longer be loaded.
    api.expect_fault(
        "PUT",
        "/snapshot/load",
        Some(r#"{"snapshot_path": "s", "mem_file_path": "m"}"#),
        "Loading a microVM snapshot not allowed after configuring boot-specific resources.",
    );
    let _ = std::fs::remove_dir_all(&api.dir);
}

#[test]
fn bad_requests_after_start_get_firecrackers_status_and_message() {
    let test = "bad_requests_after_start_get_firecrackers_status_and_message";
    if skip_without_kvm(test) || skip_without_curl(test) {
        return;
    }
    let api = Api::start("api-bad-running", &[]);
    api.expect("PUT", "/boot-source", Some(&boot_source("ctrlaltdel")), 204);
    api.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        204,
    );
    let after = "The requested operation is not supported after starting the microVM.";
    api.expect_fault(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        after,
    );
    api.expect_fault(
        "PUT",
        "/machine-config",
        Some(r#"{"vcpu_count": 1, "mem_size_mib": 64}"#),
        after,
    );
    api.expect_fault("PUT", "/logger", Some(r#"{"level": "Debug"}"#), after);
    api.expect_fault(
        "PUT",
        "/snapshot/load",
        Some(r#"{"snapshot_path": "s", "mem_file_path": "m"}"#),
        after,
    );
    api.expect_fault("GET", "/balloon", None, "No balloon device found.");
    api.expect_fault(
        "PATCH",
        "/drives/rootfs",
        Some(r#"{"drive_id": "rootfs", "path_on_host": "x"}"#),
        // A running drive's file can be swapped (tests/api_drive_swap.rs); this VM has none.
        "no drive with id \"rootfs\"",
    );
    api.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
        204,
    );
    let (run, dir) = api.finish(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
}
