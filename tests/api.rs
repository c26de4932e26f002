//! Firecracker's API on `vmm --api-sock`, driven by real clients: curl over the unix
//! socket for every endpoint, and a Python client (http.client over AF_UNIX, stdlib only:
//! tests/api/go_sdk_sequence.py) that replays firecracker-go-sdk's calls, boots the test
//! guest and stops it with SendCtrlAltDel; a thousand requests leave the VMM's RSS and fds
//! flat. Bad requests: tests/api_bad_requests.rs.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{boot_source, skip_without_curl, Api};
use common::{scratch_dir, skip_without_kvm, spawn_vmm, TEST_GUEST, VMM};

/// Why the VMM could not create a tap here, or None when it can.
fn tap_skip_reason() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        Some("not root (creating a tap needs CAP_NET_ADMIN)")
    } else if !Path::new("/dev/net/tun").exists() {
        Some("no /dev/net/tun")
    } else {
        None
    }
}

#[test]
fn curl_reaches_every_endpoint_before_and_after_start() {
    let test = "curl_reaches_every_endpoint_before_and_after_start";
    if skip_without_kvm(test) || skip_without_curl(test) {
        return;
    }
    let api = Api::start("api-curl", &["--boot-timer"]);
    let d = api.dir.display();
    std::fs::write(api.dir.join("data.img"), vec![0u8; 1 << 20]).unwrap();

    let info = api.expect("GET", "/", None, 200);
    assert!(info.contains(r#""state":"Not started""#), "{info}");
    api.expect("GET", "/version", None, 200);
    api.expect(
        "PUT",
        "/logger",
        Some(&format!(
            r#"{{"log_path": "{d}/log", "level": "Info", "show_level": true}}"#
        )),
        204,
    );
    api.expect(
        "PUT",
        "/metrics",
        Some(&format!(r#"{{"metrics_path": "{d}/metrics"}}"#)),
        204,
    );
    api.expect(
        "PUT",
        "/machine-config",
        Some(r#"{"vcpu_count": 1, "mem_size_mib": 64}"#),
        204,
    );
    api.expect(
        "PATCH",
        "/machine-config",
        Some(r#"{"mem_size_mib": 96}"#),
        204,
    );
    let machine = api.expect("GET", "/machine-config", None, 200);
    assert!(machine.contains(r#""mem_size_mib":96"#), "{machine}");
    api.expect(
        "PUT",
        "/boot-source",
        Some(&boot_source("boot,rng,ctrlaltdel boottimer")),
        204,
    );
    api.expect(
        "PUT",
        "/drives/stub",
        Some(&format!(
            r#"{{"drive_id": "stub", "path_on_host": "{d}/missing.img", "is_root_device": false}}"#
        )),
        204,
    );
    // A placeholder drive pointed at its real file before boot.
    api.expect(
        "PATCH",
        "/drives/stub",
        Some(&format!(
            r#"{{"drive_id": "stub", "path_on_host": "{d}/data.img"}}"#
        )),
        204,
    );
    api.expect(
        "PUT",
        "/vsock",
        Some(&format!(r#"{{"guest_cid": 3, "uds_path": "{d}/v.sock"}}"#)),
        204,
    );
    api.expect("PUT", "/entropy", Some("{}"), 204);
    // The VMM creates the tap at InstanceStart, which needs CAP_NET_ADMIN.
    let net = match tap_skip_reason() {
        Some(reason) => {
            eprintln!("SKIP {test} (network-interfaces only): {reason}");
            false
        }
        None => {
            let tap = format!("vmmapi{}", std::process::id() % 100_000);
            api.expect(
                "PUT",
                "/network-interfaces/eth0",
                Some(&format!(
                    r#"{{"iface_id": "eth0", "host_dev_name": "{tap}", "guest_mac": "06:00:ac:10:00:02"}}"#
                )),
                204,
            );
            true
        }
    };
    api.expect(
        "PUT",
        "/balloon",
        Some(r#"{"amount_mib": 0, "deflate_on_oom": true, "stats_polling_interval_s": 1}"#),
        204,
    );
    let balloon = api.expect("GET", "/balloon", None, 200);
    assert!(balloon.contains(r#""deflate_on_oom":true"#), "{balloon}");
    api.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
        204,
    );

    let info = api.expect("GET", "/", None, 200);
    assert!(info.contains(r#""state":"Running""#), "{info}");
    api.expect("PATCH", "/balloon", Some(r#"{"amount_mib": 2}"#), 204);
    let balloon = api.expect("GET", "/balloon", None, 200);
    assert!(balloon.contains(r#""amount_mib":2"#), "{balloon}");
    let stats = api.expect("GET", "/balloon/statistics", None, 200);
    assert!(stats.contains(r#""target_mib":2"#), "{stats}");
    api.expect(
        "PATCH",
        "/balloon/statistics",
        Some(r#"{"stats_polling_interval_s": 1}"#),
        204,
    );
    api.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "FlushMetrics"}"#),
        204,
    );
    if net {
        api.expect_fault(
            "PATCH",
            "/network-interfaces/eth0",
            Some(r#"{"iface_id": "eth0"}"#),
            "not supported",
        );
    }
    // A snapshot is refused while the VM runs; paused, the VM says so in GET /.
    api.expect_fault(
        "PUT",
        "/snapshot/create",
        Some(&format!(
            r#"{{"snapshot_path": "{d}/s", "mem_file_path": "{d}/m"}}"#
        )),
        "must be paused",
    );
    api.expect("PATCH", "/vm", Some(r#"{"state": "Paused"}"#), 204);
    assert!(api
        .expect("GET", "/", None, 200)
        .contains(r#""state":"Paused""#));
    api.expect("PATCH", "/vm", Some(r#"{"state": "Resumed"}"#), 204);
    assert!(api
        .expect("GET", "/", None, 200)
        .contains(r#""state":"Running""#));
    let mut api = api;
    assert!(
        api.vm
            .wait_for_line("vmmtest: ctrlaltdel ready", Duration::from_secs(20)),
        "{}",
        api.vm.output_so_far()
    );
    api.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
        204,
    );
    let sock = api.sock.clone();
    let (run, dir) = api.finish(Duration::from_secs(30));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.stdout.contains("vmmtest: ok boot"),
        "{}",
        run.describe()
    );
    assert!(run.stdout.contains("vmmtest: ok rng"), "{}", run.describe());
    assert_eq!(
        run.fact("ctrlaltdel_scancodes"),
        Some("14,11,e0,71"),
        "{}",
        run.describe()
    );
    assert!(!sock.exists(), "the socket is removed when the VMM exits");

    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(
        log.contains(":INFO] The API server received a PUT request on \"/actions\"."),
        "{log}"
    );
    // Standard error moved to the log: the guest's boot-timer report is there.
    assert!(
        log.contains("boot-timer: guest reached the boot timer"),
        "{log}"
    );
    let metrics = std::fs::read_to_string(dir.join("metrics")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.len() >= 2,
        "a FlushMetrics line and the final one: {metrics}"
    );
    let sum = |section: &str, key: &str| -> u64 {
        lines
            .iter()
            .map(|l| l[section][key].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(sum("vcpu", "exit_io_out") > 10, "{metrics}");
    assert!(
        sum("entropy", "requests") >= 1,
        "{metrics}\n{}",
        run.describe()
    );
    assert!(sum("api_server", "requests") >= 20, "{metrics}");
    assert!(
        lines
            .iter()
            .any(|l| l["boot_timer"]["guest_reached_us"].as_u64().is_some()),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn python_client_replays_the_go_sdk_sequence_and_ctrl_alt_del_stops_the_guest() {
    let test = "python_client_replays_the_go_sdk_sequence_and_ctrl_alt_del_stops_the_guest";
    if skip_without_kvm(test) {
        return;
    }
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIP {test}: python3 is not installed");
        return;
    }
    // Started bare, as the SDK starts firecracker: the client polls until it answers.
    let dir = scratch_dir("api-python");
    let sock = dir.join("api.sock");
    let vm = spawn_vmm(vec!["--api-sock".into(), sock.display().to_string()]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/go_sdk_sequence.py");
    let client = Command::new("python3")
        .arg(script)
        .arg(&sock)
        .arg(TEST_GUEST)
        .arg(&dir)
        .output()
        .expect("run the Python client");
    let out = String::from_utf8_lossy(&client.stdout);
    let run = vm.finish(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        client.status.success(),
        "client: {out}\n{}",
        String::from_utf8_lossy(&client.stderr)
    );
    for call in [
        "call GET /machine-config -> 200",
        "call PUT /logger -> 204",
        "call PUT /metrics -> 204",
        "call PUT /machine-config -> 204",
        "call PUT /boot-source -> 204",
        "call PUT /drives/rootfs -> 204",
        "call PUT /vsock -> 204",
        "call PUT /actions -> 204",
        "call GET / -> 200",
    ] {
        assert!(out.contains(call), "{call} missing:\n{out}");
    }
    assert!(
        out.contains("call PUT /network-interfaces/eth0 -> 204") || out.contains("skip network: "),
        "{out}"
    );
    // The log came through the FIFO the client read, with level and origin.
    assert!(out.contains(":INFO:src/api/"), "{out}");
    assert!(!out.contains("metrics lines: 0"), "{out}");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.stdout
            .contains("vmmtest: ctrlaltdel received, resetting"),
        "{}",
        run.describe()
    );
}

/// Sends `request` and reads one response (headers and Content-Length body) from `reader`.
fn round_trip(stream: &mut UnixStream, reader: &mut impl BufRead, request: &[u8]) -> String {
    stream.write_all(request).unwrap();
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            length = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn a_thousand_requests_leave_rss_and_fds_flat() {
    let api = Api::start("api-loop", &[]);
    let pid = api.vm.pid();
    let put = br#"{"vcpu_count": 1, "mem_size_mib": 128}"#;
    let mut put_request = format!(
        "PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        put.len()
    )
    .into_bytes();
    put_request.extend_from_slice(put);
    let requests: [&[u8]; 3] = [
        b"GET /machine-config HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &put_request,
        b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ];
    // A warm-up round, so the first allocations are not counted as growth.
    let round = |count: usize| {
        for batch in 0..count / 10 {
            // Ten requests on each keep-alive connection, then a new one.
            let mut stream = UnixStream::connect(&api.sock).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            for i in 0..10 {
                let r = round_trip(&mut stream, &mut reader, requests[(batch + i) % 3]);
                assert!(r.starts_with("HTTP/1.1 "), "{r}");
            }
        }
    };
    round(100);
    std::thread::sleep(Duration::from_millis(50));
    let (rss_before, fds_before) = (common::rss_kib(pid).unwrap(), open_fds(pid));
    round(1000);
    std::thread::sleep(Duration::from_millis(50));
    let (rss_after, fds_after) = (common::rss_kib(pid).unwrap(), open_fds(pid));
    println!("RSS {rss_before} KiB -> {rss_after} KiB, fds {fds_before} -> {fds_after}");
    assert_eq!(fds_after, fds_before, "fds leaked");
    assert!(
        rss_after <= rss_before + 64,
        "RSS grew from {rss_before} to {rss_after} KiB over 1000 requests"
    );
    let _ = std::fs::remove_dir_all(&api.dir);
}

#[test]
fn api_sock_on_something_that_is_not_a_socket_is_refused_with_one_line() {
    let dir = scratch_dir("api-not-socket");
    let file = dir.join("api.sock");
    std::fs::write(&file, "keep").unwrap();
    let run = common::run_vmm(&["--api-sock", file.to_str().unwrap()]);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
    assert!(
        run.stderr.contains("is a file, not a socket"),
        "{}",
        run.describe()
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = scratch_dir("api-stale");
    let sock = dir.join("api.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let api = Api::start("api-stale-run", &[]);
    let _ = std::fs::remove_dir_all(&api.dir);
    // The same path, reused by a new VMM.
    let mut vm = spawn_vmm(vec!["--api-sock".into(), sock.display().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "{}", vm.output_so_far());
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_file_with_api_sock_boots_at_once_and_the_api_serves_alongside() {
    let test = "config_file_with_api_sock_boots_at_once_and_the_api_serves_alongside";
    if skip_without_kvm(test) || skip_without_curl(test) {
        return;
    }
    let dir = scratch_dir("api-config-file");
    let config = dir.join("vm.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"boot-source": {}, "machine-config": {{"vcpu_count": 1, "mem_size_mib": 64}}}}"#,
            boot_source("ctrlaltdel")
        ),
    )
    .unwrap();
    let mut api = Api::start(
        "api-config-file-run",
        &["--config-file", config.to_str().unwrap()],
    );
    assert!(api
        .vm
        .wait_for_line("vmmtest: ctrlaltdel ready", Duration::from_secs(20)));
    let info = api.expect("GET", "/", None, 200);
    assert!(info.contains(r#""state":"Running""#), "{info}");
    let machine = api.expect("GET", "/machine-config", None, 200);
    assert!(machine.contains(r#""mem_size_mib":64"#), "{machine}");
    api.expect_fault(
        "PUT",
        "/boot-source",
        Some(&boot_source("none")),
        "after starting",
    );
    api.expect(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
        204,
    );
    let (run, api_dir) = api.finish(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&api_dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
}

/// A VMM idling in the test guest (waiting for Ctrl-Alt-Del): (VmRSS, RssAnon) in KiB.
/// With `api`, it is started with `--api-sock` and has answered 50 requests first.
fn idle_memory(name: &str, api: bool) -> (u64, u64) {
    let dir = scratch_dir(name);
    let sock = dir.join("api.sock");
    let mut args: Vec<String> = vec![
        "--kernel".into(),
        TEST_GUEST.into(),
        "--cmdline".into(),
        "console=ttyS0 tests=ctrlaltdel".into(),
    ];
    if api {
        args.extend(["--api-sock".into(), sock.display().to_string()]);
    }
    let mut vm = spawn_vmm(args);
    assert!(vm.wait_for_line("vmmtest: ctrlaltdel ready", Duration::from_secs(20)));
    if api {
        let mut stream = UnixStream::connect(&sock).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for i in 0..50 {
            let request: &[u8] = match i % 3 {
                0 => b"GET / HTTP/1.1\r\n\r\n",
                1 => b"GET /machine-config HTTP/1.1\r\n\r\n",
                _ => b"PUT /boot-source HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            };
            round_trip(&mut stream, &mut reader, request);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss = common::rss_kib(vm.pid()).unwrap();
    let anon = common::status_kib(vm.pid(), "RssAnon").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (rss, anon)
}

/// The API's own memory is what it adds to each VMM process: its thread, its buffers and
/// allocations (RssAnon). VmRSS also counts the pages of the binary's code it ran, which
/// every VMM process running the binary shares; printed, for the record.
#[test]
fn the_api_thread_adds_at_most_half_a_mib_of_memory() {
    if skip_without_kvm("the_api_thread_adds_at_most_half_a_mib_of_memory") {
        return;
    }
    // The median of three of each, against a page or two of noise.
    let median = |api: bool| {
        let mut runs: Vec<(u64, u64)> = (0..3)
            .map(|i| idle_memory(&format!("memory-{api}-{i}"), api))
            .collect();
        runs.sort_by_key(|r| r.1);
        runs[1]
    };
    let (rss_without, anon_without) = median(false);
    let (rss_with, anon_with) = median(true);
    println!(
        "idle VmRSS {rss_without} KiB without --api-sock, {rss_with} KiB with it after 50 \
         requests; RssAnon {anon_without} KiB, {anon_with} KiB"
    );
    assert!(
        anon_with <= anon_without + 512,
        "the API adds {} KiB",
        anon_with.saturating_sub(anon_without)
    );
}

#[test]
fn vmm_binary_is_where_the_tests_expect_it() {
    assert!(Path::new(VMM).exists());
}
