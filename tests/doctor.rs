//! `vmm doctor` as a user runs it. Host-dependent assertions follow what this host says
//! about itself (/sys/module/kvm_pvm, /dev/kvm), so the tests hold on any host.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn doctor(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_vmm"))
        .arg("doctor")
        .args(args)
        .output()
        .expect("run vmm doctor");
    assert!(
        out.status.success(),
        "vmm doctor {args:?} failed: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn host_is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

const CAP_NAMES: &[&str] = &[
    "KVM_CAP_IRQCHIP",
    "KVM_CAP_IOEVENTFD",
    "KVM_CAP_IRQFD",
    "KVM_CAP_USER_MEMORY",
    "KVM_CAP_SET_TSS_ADDR",
    "KVM_CAP_SET_IDENTITY_MAP_ADDR",
    "KVM_CAP_PIT2",
    "KVM_CAP_PIT_STATE2",
    "KVM_CAP_EXT_CPUID",
    "KVM_CAP_MP_STATE",
    "KVM_CAP_ADJUST_CLOCK",
    "KVM_CAP_VCPU_EVENTS",
    "KVM_CAP_DEBUGREGS",
    "KVM_CAP_XCRS",
];

#[test]
fn table_has_every_row_and_both_verdicts() {
    let stdout = String::from_utf8(doctor(&[]).stdout).unwrap();
    let labels = [
        "/dev/kvm",
        "KVM API version",
        "max vCPUs",
        "hardware virtualization",
        "PVM (kvm_pvm)",
        "cgroup mode",
        "pid namespace",
        "user namespace",
        "cgroup namespace",
        "can boot unmodified Linux guests: ",
        "can run the built-in test guest: ",
    ];
    for label in labels.iter().chain(CAP_NAMES) {
        assert!(
            stdout.lines().any(|l| l.starts_with(label)),
            "no {label:?} line in:\n{stdout}"
        );
    }
    let pvm_line = stdout.lines().find(|l| l.starts_with("PVM")).unwrap();
    let expected = if host_is_pvm() { "yes" } else { "no" };
    assert!(pvm_line.ends_with(expected), "{pvm_line}");
}

#[test]
fn json_has_stable_keys_and_matches_this_host() {
    let stdout = doctor(&["--json"]).stdout;
    let v: Value = serde_json::from_slice(&stdout).expect("doctor --json prints one JSON object");
    let obj = v.as_object().expect("a JSON object");
    for key in [
        "kvm_access",
        "kvm_usable",
        "kvm_api_version",
        "capabilities",
        "missing_capabilities",
        "max_vcpus",
        "recommended_vcpus",
        "hw_virt_flags",
        "pvm_detected",
        "cgroup_mode",
        "namespaces",
        "can_boot_unmodified_linux",
        "can_boot_unmodified_linux_because",
        "can_run_test_guest",
        "can_run_test_guest_because",
    ] {
        assert!(obj.contains_key(key), "missing key {key} in {v}");
    }
    assert!(["v1", "hybrid", "v2", "none"].contains(&v["cgroup_mode"].as_str().unwrap()));

    let kvm_usable = v["kvm_usable"].as_bool().unwrap();
    if kvm_usable {
        assert_eq!(v["kvm_access"], "ok");
        assert_eq!(v["kvm_api_version"], 12);
        let caps = v["capabilities"].as_object().unwrap();
        for name in CAP_NAMES {
            assert!(caps[*name].is_boolean(), "{name} in {v}");
        }
        assert!(v["max_vcpus"].as_u64().unwrap() >= 1);
    } else {
        assert_eq!(v["capabilities"], Value::Null);
        assert_eq!(v["can_run_test_guest"], false);
        assert_eq!(v["can_boot_unmodified_linux"], false);
    }
    if !Path::new("/dev/kvm").exists() {
        assert!(!kvm_usable);
        let why = v["can_boot_unmodified_linux_because"].as_str().unwrap();
        assert!(why.contains("/dev/kvm does not exist"), "{why}");
    }

    if host_is_pvm() {
        assert_eq!(v["pvm_detected"], true);
        assert_eq!(v["can_boot_unmodified_linux"], false);
        let why = v["can_boot_unmodified_linux_because"].as_str().unwrap();
        assert!(why.contains("PVM (kvm_pvm)"), "{why}");
    }
    // The verdict bools and their reasons agree.
    for key in ["can_boot_unmodified_linux", "can_run_test_guest"] {
        let ok = v[key].as_bool().unwrap();
        assert_eq!(ok, v[format!("{key}_because")].is_null(), "{key} in {v}");
    }
}

#[test]
fn table_and_json_give_the_same_verdict() {
    let table = String::from_utf8(doctor(&[]).stdout).unwrap();
    let v: Value = serde_json::from_slice(&doctor(&["--json"]).stdout).unwrap();
    let line = table
        .lines()
        .find_map(|l| l.strip_prefix("can boot unmodified Linux guests: "))
        .unwrap();
    match v["can_boot_unmodified_linux_because"].as_str() {
        None => assert_eq!(line, "yes"),
        Some(why) => assert_eq!(line, format!("no, because {why}")),
    }
}
