//! The built `vmm-probe` binary, run as `vmm compare` runs it: its commands, its JSON, its
//! exit statuses and its one-line complaints.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use probe::report::{BenchResults, Observation, PROBE_VERSION};
use support::{absent_canaries, Holder, Planted, PROBE};

fn probe(args: &[&str]) -> Output {
    Command::new(PROBE).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A directory of this test's own for the file benchmark.
fn io_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("probe-{test}"));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A net server on 127.0.0.1, as `vmm compare` runs one.
fn net_server() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || probe::net_server::serve(listener));
    addr.to_string()
}

#[test]
fn true_exits_zero_and_says_nothing() {
    let out = probe(&["true"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn installed_as_true_it_exits_zero_without_arguments() {
    let out = Command::new(PROBE).arg0("/bin/true").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn bench_prints_bench_results_as_its_last_line() {
    let dir = io_dir("bench");
    let work = "100000";
    let out = probe(&[
        "bench",
        "--budget-ms",
        "20",
        "--cpu-work",
        work,
        "--io-dir",
        dir.to_str().unwrap(),
        "--net",
        &net_server(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let results: BenchResults = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(results.probe_version, PROBE_VERSION);
    assert_eq!(results.cpu_checksum, probe::bench::cpu::checksum(100_000));
    let net = results.net.as_ref().expect("--net was given");
    for (name, value) in [
        ("null_syscall_ns", results.null_syscall_ns),
        ("fork_exec_us", results.fork_exec_us),
        ("cpu_ms", results.cpu_ms),
        ("mem_bandwidth_mb_s", results.mem_bandwidth_mb_s),
        ("file_random_read_iops", results.file_random_read_iops),
        ("file_seq_write_mb_s", results.file_seq_write_mb_s),
        ("rtt_us", net.rtt_us),
        ("throughput_mb_s", net.throughput_mb_s),
    ] {
        assert!(value > 0.0 && value.is_finite(), "{name} = {value}");
    }
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "the I/O file is left"
    );
}

#[test]
fn bench_without_net_reports_no_net() {
    let dir = io_dir("no-net");
    let out = probe(&[
        "bench",
        "--budget-ms=1",
        "--cpu-work=1000",
        &format!("--io-dir={}", dir.display()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results: BenchResults = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(results.net, None);
}

#[test]
fn bench_waits_for_go_after_saying_ready() {
    let dir = io_dir("go");
    let mut child = Command::new(PROBE)
        .args([
            "bench",
            "--budget-ms",
            "1",
            "--cpu-work",
            "1000",
            "--wait-for-go",
        ])
        .arg("--io-dir")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "vmm-probe: ready\n");
    thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "ran without the go");
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    let results: BenchResults = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(results.probe_version, PROBE_VERSION);
}

#[test]
fn isolation_prints_one_observation_seeing_planted_canaries() {
    let planted = Planted::new();
    let canaries = serde_json::to_string(&planted.canaries).unwrap();
    let child = Command::new(PROBE)
        .args(["isolation", "--canaries", &canaries])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1);
    let seen: Observation = serde_json::from_str(&text).unwrap();
    assert_eq!(seen.pid, pid);
    assert!(seen.canaries.process && seen.canaries.shm && seen.canaries.tmp_file);
    assert!(seen.canaries.abstract_socket && seen.canaries.tcp_port);
}

#[test]
fn isolation_does_not_see_absent_canaries() {
    let canaries = serde_json::to_string(&absent_canaries()).unwrap();
    let out = probe(&["isolation", "--canaries", &canaries]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen: Observation = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(seen.canaries, Default::default());
}

#[test]
fn hold_names_the_process_and_stays() {
    let name = support::unique_name("hold-");
    let holder = Holder::start(&name);
    let comm = fs::read_to_string(format!("/proc/{}/comm", holder.pid())).unwrap();
    assert_eq!(comm, format!("{name}\n"));
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["isolation"],
        &["isolation", "--canaries", "not json"],
        &["bench", "--budget-ms", "soon"],
        &["bench", "--net", "host.example:80"],
        &["hold"],
    ] {
        let out = probe(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("vmm-probe: "), "{args:?}: {err:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_failed_measurement_exits_1_naming_it_and_the_os_error() {
    let out = probe(&[
        "bench",
        "--budget-ms",
        "1",
        "--cpu-work",
        "1000",
        "--io-dir",
        "/nonexistent-vmm-probe",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.starts_with("vmm-probe: create /nonexistent-vmm-probe/.vmm-probe-io-"));
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(out.stdout.is_empty());
}
