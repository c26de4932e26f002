//! `vmm compare` end to end: bad input is one line and exit 2; a full comparison on this
//! host (default levels, 3 runs) has every probe result as expected, a JSON report that
//! validates against docs/compare.schema.json, and an HTML report that renders in a real
//! headless Chromium with every chart present. Needs root (prints SKIP otherwise).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_vmm_with, Run};

/// A comparison of process and container with 3 runs takes ~15 s here; the VM levels add
/// minutes on a host that boots Linux.
const COMPARE_TIMEOUT: Duration = Duration::from_secs(900);

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no arguments.
    unsafe { libc::geteuid() == 0 }
}

fn compare(args: &[&str]) -> Run {
    let mut all = vec!["compare"];
    all.extend_from_slice(args);
    run_vmm_with(&all, b"", COMPARE_TIMEOUT)
}

fn assert_bad_input(run: &Run, naming: &str) {
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(naming)),
        "stderr does not name {naming:?}\n{}",
        run.describe()
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-compare-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_unknown_level_is_bad_input() {
    assert_bad_input(&compare(&["--levels", "process,jail"]), "jail");
}

#[test]
fn zero_runs_is_bad_input() {
    assert_bad_input(&compare(&["--runs", "0"]), "--runs");
}

#[test]
fn an_unknown_only_name_is_bad_input() {
    assert_bad_input(&compare(&["--only", "canary,bogus"]), "bogus");
}

#[test]
fn an_unwritable_output_path_is_bad_input() {
    assert_bad_input(
        &compare(&["--json", "/nonexistent-dir/report.json"]),
        "/nonexistent-dir/report.json",
    );
    assert_bad_input(&compare(&["--html", "/sys/vmm-report.html"]), "--html");
}

#[test]
fn a_rootfs_that_is_not_a_directory_is_bad_input() {
    assert_bad_input(&compare(&["--rootfs", "/etc/hostname"]), "not a directory");
}

#[test]
fn only_vm_levels_on_a_host_that_cannot_boot_linux_is_bad_input_naming_why() {
    if !is_root() {
        println!("SKIP only_vm_levels_on_a_host_that_cannot_boot_linux_is_bad_input_naming_why: needs root");
        return;
    }
    let run = compare(&["--levels", "vm,vm+container", "--runs", "1"]);
    if run.code() != Some(2) {
        println!(
            "SKIP only_vm_levels_on_a_host_that_cannot_boot_linux_is_bad_input_naming_why: \
             this host can run a VM level (exit {:?})",
            run.code()
        );
        return;
    }
    assert_bad_input(&run, "no level asked for can run here");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
}

#[test]
fn list_shows_every_probe_with_its_expectations() {
    let run = compare(&["--list"]);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    for name in [
        "kernel.shared",
        "ns.pid",
        "canary.shm",
        "mem.exceed",
        "net.rtt",
    ] {
        assert!(
            run.stdout.contains(name),
            "--list lacks {name}\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("vm+container"), "{}", run.stdout);
}

fn validate_against_schema(report: &serde_json::Value) {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compare.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report does not match the schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_schema_refuses_a_report_with_a_wrong_field() {
    let bad = serde_json::json!({"schema_version": 1, "levels": "process"});
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compare.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(!validator.is_valid(&bad), "the schema accepts anything");
}

#[test]
fn a_full_comparison_is_as_expected_and_its_reports_validate_and_render() {
    if !is_root() {
        println!(
            "SKIP a_full_comparison_is_as_expected_and_its_reports_validate_and_render: needs root"
        );
        return;
    }
    let dir = scratch("full");
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let run = compare(&[
        "--runs",
        "3",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    println!(
        "vmm compare --runs 3 took {:.1} s",
        run.elapsed.as_secs_f64()
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(
        run.stdout.contains("0 unexpected result(s)"),
        "{}",
        run.stdout
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    validate_against_schema(&report);
    let levels: Vec<&str> = report["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["process", "container", "vm", "vm+container"]);
    for level in report["levels"].as_array().unwrap() {
        if let Some(why) = level["skipped"].as_str() {
            assert!(level["name"].as_str().unwrap().starts_with("vm"), "{level}");
            println!("{} skipped: {why}", level["name"]);
        }
    }
    // Every cell of a level that ran is a verdict, and each verdict is "expected".
    for row in report["probes"].as_array().unwrap() {
        for cell in row["cells"].as_array().unwrap() {
            let ran = !cell["observed"].is_null();
            let verdict = cell["verdict"].as_str().unwrap();
            assert!(
                (ran && verdict == "expected") || (!ran && verdict == "not_run"),
                "{}: {cell}",
                row["id"]
            );
        }
    }
    // The host levels measured every benchmark they can (network: the process level).
    let ids: Vec<&str> = report["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    for row in report["benchmarks"].as_array().unwrap() {
        let process = &row["cells"][0];
        assert_eq!(
            process["stats"]["samples"].as_array().map(Vec::len),
            (row["id"] != "memory.cgroup_charge").then_some(3),
            "{row}"
        );
        if !row["id"].as_str().unwrap().starts_with("net.") && row["id"] != "memory.cgroup_charge" {
            assert!(row["cells"][1]["stats"].is_object(), "container: {row}");
        }
    }

    match chromium::find_chromium() {
        None => println!(
            "SKIP the HTML half of a_full_comparison_…: no chromium on PATH (.ci/run installs Debian's chromium)"
        ),
        Some(_) => {
            let check = chromium::check_report(&html, &ids).unwrap_or_else(|e| panic!("{e}"));
            println!("chromium: {check:?}");
            assert_eq!(check.dom_charts, ids.len());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
