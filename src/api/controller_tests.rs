//! The state machine without a VM: a launcher thread stands in for the main thread.

use std::sync::mpsc;

use super::*;
use crate::api::http::Request;

fn controller() -> (Controller, mpsc::Receiver<Launch>) {
    let running = RunningVm::new();
    let (tx, rx) = mpsc::channel();
    let controller = Controller::new(
        Preboot::new(1, 128, "console=ttyS0"),
        running.clone(),
        tx,
        Arc::new(Logger::default()),
        Arc::new(Metrics::new(running)),
        Control::new(crate::vm::VmControl::new()),
        None,
    );
    (controller, rx)
}

/// The main thread's part for one launch: run it (a restore of files that do not exist
/// fails before any VM is made) and hand its failure back to the waiting controller.
fn main_thread_fails_next_launch(
    c: &Controller,
    rx: mpsc::Receiver<Launch>,
) -> std::thread::JoinHandle<mpsc::Receiver<Launch>> {
    let running = c.running.clone();
    std::thread::spawn(move || {
        let launch = rx.recv().unwrap();
        let options = RunOptions {
            control: Some(crate::vm::VmControl::new()),
            ..Default::default()
        };
        let why = match launch(options) {
            Err(e) => edge::error_chain(&e),
            Ok(outcome) => format!("unexpectedly ran: {outcome:?}"),
        };
        running.failed_to_start(why);
        rx
    })
}

/// A controller given a kernel and told its VM was started (by the main thread).
fn started_controller() -> (Controller, mpsc::Receiver<Launch>) {
    let (mut c, rx) = controller();
    call(
        &mut c,
        "PUT",
        "/boot-source",
        Some(r#"{"kernel_image_path": "vmlinux"}"#),
    );
    let config = c.preboot.vm_config(None).unwrap();
    c.started_elsewhere(&config);
    (c, rx)
}

fn call(c: &mut Controller, method: &str, path: &str, body: Option<&str>) -> Response {
    c.handle(Request {
        method: method.into(),
        path: path.into(),
        body: body.map(|b| b.as_bytes().to_vec()),
        close: false,
    })
}

fn fault(response: &Response) -> String {
    assert_eq!(response.status, 400, "{response:?}");
    let v: serde_json::Value = serde_json::from_str(response.body.as_deref().unwrap()).unwrap();
    v["fault_message"].as_str().unwrap().to_string()
}

const START: &str = r#"{"action_type": "InstanceStart"}"#;
const LOAD: &str = r#"{"snapshot_path": "s", "mem_file_path": "m"}"#;

#[test]
fn run_time_actions_are_refused_before_start() {
    let (mut c, _rx) = controller();
    for (method, path, body) in [
        ("PUT", "/actions", r#"{"action_type": "SendCtrlAltDel"}"#),
        ("PUT", "/actions", r#"{"action_type": "FlushMetrics"}"#),
        ("PATCH", "/vm", r#"{"state": "Paused"}"#),
        ("PUT", "/snapshot/create", LOAD),
        ("PATCH", "/balloon", r#"{"amount_mib": 1}"#),
    ] {
        let r = call(&mut c, method, path, Some(body));
        assert_eq!(fault(&r), NOT_SUPPORTED_PRE_BOOT, "{method} {path}");
    }
}

#[test]
fn a_failed_start_is_a_400_with_the_reason_and_the_vm_stays_not_started() {
    let (mut c, rx) = controller();
    let r = call(&mut c, "PUT", "/actions", Some(START));
    assert_eq!(
        fault(&r),
        "Start microvm error: Cannot start microvm without kernel configuration."
    );
    call(
        &mut c,
        "PUT",
        "/boot-source",
        Some(r#"{"kernel_image_path": "vmlinux"}"#),
    );
    // The main thread's part: take the launch, fail it.
    let running = c.running.clone();
    let main = std::thread::spawn(move || {
        let _launch = rx.recv().unwrap();
        running.failed_to_start("kernel image \"vmlinux\" is missing".into());
        rx
    });
    let r = call(&mut c, "PUT", "/actions", Some(START));
    assert_eq!(
        fault(&r),
        "Start microvm error: kernel image \"vmlinux\" is missing"
    );
    let _rx = main.join().unwrap();
    let info = call(&mut c, "GET", "/", None);
    assert!(info.body.unwrap().contains("Not started"));
    // Still configurable.
    let r = call(
        &mut c,
        "PUT",
        "/machine-config",
        Some(r#"{"vcpu_count": 1, "mem_size_mib": 64}"#),
    );
    assert_eq!(r.status, 204);
}

#[test]
fn snapshot_load_is_refused_after_boot_configuration_but_not_after_logger_or_metrics() {
    let (mut c, rx) = controller();
    let dir = std::env::temp_dir().join(format!("vmm-api-ctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let metrics = format!(r#"{{"metrics_path": "{}/m"}}"#, dir.display());
    assert_eq!(call(&mut c, "PUT", "/metrics", Some(&metrics)).status, 204);
    // Past the state check: the restore itself runs, and fails on the missing file.
    let main = main_thread_fails_next_launch(&c, rx);
    let r = call(&mut c, "PUT", "/snapshot/load", Some(LOAD));
    assert!(fault(&r).contains("\"s\""), "{r:?}");
    let _rx = main.join().unwrap();
    call(&mut c, "PUT", "/entropy", Some("{}"));
    let r = call(&mut c, "PUT", "/snapshot/load", Some(LOAD));
    assert_eq!(
        fault(&r),
        "Load snapshot error: Loading a microVM snapshot not allowed after configuring \
         boot-specific resources."
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_configuration_does_not_count_as_configuration() {
    let (mut c, rx) = controller();
    let r = call(
        &mut c,
        "PUT",
        "/vsock",
        Some(r#"{"guest_cid": 1, "uds_path": "v"}"#),
    );
    assert!(
        fault(&r).starts_with("Vsock config error: vsock.guest_cid"),
        "{r:?}"
    );
    let r = call(
        &mut c,
        "PUT",
        "/balloon",
        Some(r#"{"amount_mib": 4096, "deflate_on_oom": false}"#),
    );
    assert_eq!(
        fault(&r),
        "Balloon config error: the balloon's amount_mib 4096 is more than the guest's 128 \
         MiB of RAM"
    );
    let main = main_thread_fails_next_launch(&c, rx);
    let r = call(&mut c, "PUT", "/snapshot/load", Some(LOAD));
    assert!(fault(&r).contains("\"s\""), "{r:?}");
    let _rx = main.join().unwrap();
}

#[test]
fn a_vm_started_elsewhere_refuses_configuration_and_a_second_start() {
    let (mut c, _rx) = controller();
    let config = c.preboot.vm_config(None).err();
    assert!(config.is_some(), "no kernel yet");
    call(
        &mut c,
        "PUT",
        "/boot-source",
        Some(r#"{"kernel_image_path": "vmlinux"}"#),
    );
    let config = c.preboot.vm_config(None).unwrap();
    c.started_elsewhere(&config);
    for (method, path, body) in [
        ("PUT", "/actions", START),
        ("PUT", "/boot-source", r#"{"kernel_image_path": "other"}"#),
        ("PUT", "/snapshot/load", LOAD),
        ("PUT", "/logger", r#"{"level": "Debug"}"#),
    ] {
        let r = call(&mut c, method, path, Some(body));
        assert_eq!(fault(&r), NOT_SUPPORTED_POST_BOOT, "{method} {path}");
    }
    let info = call(&mut c, "GET", "/", None);
    assert!(info.body.unwrap().contains(r#""state":"Running""#));
}

#[test]
fn snapshot_create_needs_a_paused_vm_and_refuses_diff_snapshots() {
    let (mut c, _rx) = started_controller();
    let r = call(&mut c, "PUT", "/snapshot/create", Some(LOAD));
    assert!(fault(&r).contains("must be paused"), "{r:?}");
    let diff = r#"{"snapshot_path": "s", "mem_file_path": "m", "snapshot_type": "Diff"}"#;
    let r = call(&mut c, "PUT", "/snapshot/create", Some(diff));
    assert!(
        fault(&r).contains("Diff snapshots are not supported"),
        "{r:?}"
    );
}

#[test]
fn a_drive_patched_after_start_refuses_a_rate_limiter_and_needs_a_running_vm() {
    let (mut c, _rx) = started_controller();
    let limiter =
        r#"{"drive_id": "data", "rate_limiter": {"ops": {"size": 1, "refill_time": 10}}}"#;
    let r = call(&mut c, "PATCH", "/drives/data", Some(limiter));
    assert!(
        fault(&r).contains("rate limiter of a running drive is not supported"),
        "{r:?}"
    );
    // No VM is attached to the control here: the swap is refused, not taken.
    let path = r#"{"drive_id": "data", "path_on_host": "b.img"}"#;
    let r = call(&mut c, "PATCH", "/drives/data", Some(path));
    assert!(fault(&r).contains("no VM is running"), "{r:?}");
}
