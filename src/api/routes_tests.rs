//! Routing: every endpoint, and each kind of refusal with Firecracker's words.

use super::*;

fn req(method: &str, path: &str, body: Option<&str>) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        body: body.map(|b| b.as_bytes().to_vec()),
        close: false,
    }
}

fn fault(method: &str, path: &str, body: Option<&str>) -> String {
    let response = route(&req(method, path, body)).unwrap_err();
    assert_eq!(response.status, 400);
    let v: serde_json::Value = serde_json::from_str(response.body.as_deref().unwrap()).unwrap();
    v["fault_message"].as_str().unwrap().to_string()
}

#[test]
fn every_endpoint_routes_to_its_action() {
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        ("GET", "/", None, "GetInstanceInfo"),
        ("GET", "/version", None, "GetVersion"),
        ("GET", "/machine-config", None, "GetMachineConfig"),
        (
            "PUT",
            "/machine-config",
            Some(r#"{"vcpu_count":1,"mem_size_mib":64}"#),
            "PutMachineConfig",
        ),
        (
            "PATCH",
            "/machine-config",
            Some(r#"{"mem_size_mib":64}"#),
            "PatchMachineConfig",
        ),
        (
            "PUT",
            "/boot-source",
            Some(r#"{"kernel_image_path":"k"}"#),
            "PutBootSource",
        ),
        (
            "PUT",
            "/drives/rootfs",
            Some(r#"{"drive_id":"rootfs","path_on_host":"r","is_root_device":true}"#),
            "PutDrive",
        ),
        (
            "PATCH",
            "/drives/rootfs",
            Some(r#"{"drive_id":"rootfs","path_on_host":"r2"}"#),
            "PatchDrive",
        ),
        (
            "PUT",
            "/network-interfaces/eth0",
            Some(r#"{"iface_id":"eth0","host_dev_name":"tap0"}"#),
            "PutNetworkInterface",
        ),
        (
            "PATCH",
            "/network-interfaces/eth0",
            Some(r#"{"iface_id":"eth0"}"#),
            "PatchNetworkInterface",
        ),
        (
            "PUT",
            "/vsock",
            Some(r#"{"guest_cid":3,"uds_path":"v"}"#),
            "PutVsock",
        ),
        ("PUT", "/entropy", Some("{}"), "PutEntropy"),
        (
            "PUT",
            "/balloon",
            Some(r#"{"amount_mib":1,"deflate_on_oom":false}"#),
            "PutBalloon",
        ),
        (
            "PATCH",
            "/balloon",
            Some(r#"{"amount_mib":2}"#),
            "PatchBalloon",
        ),
        (
            "PATCH",
            "/balloon/statistics",
            Some(r#"{"stats_polling_interval_s":2}"#),
            "PatchBalloonStatistics",
        ),
        ("GET", "/balloon", None, "GetBalloon"),
        ("GET", "/balloon/statistics", None, "GetBalloonStatistics"),
        (
            "PUT",
            "/actions",
            Some(r#"{"action_type":"InstanceStart"}"#),
            "Instance(InstanceStart)",
        ),
        (
            "PUT",
            "/actions",
            Some(r#"{"action_type":"SendCtrlAltDel"}"#),
            "Instance(SendCtrlAltDel)",
        ),
        (
            "PUT",
            "/actions",
            Some(r#"{"action_type":"FlushMetrics"}"#),
            "Instance(FlushMetrics)",
        ),
        (
            "PATCH",
            "/vm",
            Some(r#"{"state":"Paused"}"#),
            "PatchVm(Paused)",
        ),
        (
            "PUT",
            "/snapshot/create",
            Some(r#"{"snapshot_path":"s","mem_file_path":"m"}"#),
            "CreateSnapshot",
        ),
        (
            "PUT",
            "/snapshot/load",
            Some(r#"{"snapshot_path":"s","mem_file_path":"m"}"#),
            "LoadSnapshot",
        ),
        ("PUT", "/logger", Some(r#"{"log_path":"l"}"#), "PutLogger"),
        (
            "PUT",
            "/metrics",
            Some(r#"{"metrics_path":"m"}"#),
            "PutMetrics",
        ),
    ];
    for (method, path, body, want) in cases {
        let action = route(&req(method, path, *body))
            .unwrap_or_else(|r| panic!("{method} {path}: {:?}", r.body));
        let got = format!("{action:?}");
        assert!(got.starts_with(want), "{method} {path}: {got}");
    }
}

#[test]
fn unknown_paths_and_wrong_methods_get_firecrackers_400() {
    assert_eq!(
        fault("GET", "/nope", None),
        "Invalid request method and/or path: GET nope."
    );
    assert_eq!(
        fault("POST", "/actions", Some("{}")),
        "Invalid request method and/or path: POST actions."
    );
    assert_eq!(
        fault("DELETE", "/drives/rootfs", None),
        "Invalid request method and/or path: DELETE drives."
    );
    assert_eq!(
        fault("PUT", "/snapshot/backup", Some("{}")),
        "Invalid request method and/or path: PUT /snapshot/backup."
    );
}

#[test]
fn bodies_where_none_belong_or_none_where_one_is_needed_are_refused() {
    assert_eq!(
        fault("GET", "/", Some("{}")),
        "GET request cannot have a body."
    );
    assert_eq!(fault("PUT", "/boot-source", None), "Empty PUT request.");
    assert_eq!(fault("PATCH", "/vm", None), "Empty PATCH request.");
    assert_eq!(
        fault("PATCH", "/machine-config", Some("{}")),
        "Empty PATCH request."
    );
}

#[test]
fn invalid_json_and_unknown_fields_are_named() {
    let f = fault("PUT", "/boot-source", Some("{not json"));
    assert!(
        f.starts_with("An error occurred when deserializing the json body of a request: "),
        "{f}"
    );
    let f = fault(
        "PUT",
        "/vsock",
        Some(r#"{"guest_cid":3,"uds_path":"v","turbo":1}"#),
    );
    assert!(f.contains("unknown field `turbo`"), "{f}");
    let f = fault("PUT", "/actions", Some(r#"{"action_type":"Reboot"}"#));
    assert!(f.contains("unknown variant `Reboot`"), "{f}");
}

#[test]
fn ids_must_be_present_well_formed_and_match_the_body() {
    let drive = r#"{"drive_id":"rootfs","path_on_host":"r","is_root_device":true}"#;
    assert_eq!(
        fault("PUT", "/drives", Some(drive)),
        "The ID cannot be empty."
    );
    assert_eq!(
        fault("PUT", "/drives/root-fs", Some(drive)),
        "API Resource IDs can only contain alphanumeric characters and underscores."
    );
    assert_eq!(
        fault("PUT", "/drives/data", Some(drive)),
        "The id from the path does not match the id from the body!"
    );
    assert_eq!(
        fault(
            "PUT",
            "/network-interfaces/eth1",
            Some(r#"{"iface_id":"eth0","host_dev_name":"tap0"}"#)
        ),
        "The id from the path [eth1] does not match the id from the body [eth0]!"
    );
}

#[test]
fn balloon_and_snapshot_subpaths_are_checked() {
    assert_eq!(
        fault("GET", "/balloon/stats", None),
        "Unrecognized GET request path `stats`."
    );
    assert_eq!(
        fault("PUT", "/snapshot", Some("{}")),
        "Missing snapshot operation type."
    );
}
