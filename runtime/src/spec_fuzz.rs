//! Fuzzing the OCI config.json → [`ContainerConfig`] path (`spec::config_from_bundle`,
//! `spec::config_from_spec`) and the seccomp compilation an accepted profile goes through
//! next, on stable as ordinary tests (`fuzzkit`; docs/fuzzing.md):
//!
//! - any bytes as a bundle's config.json: a config or an error, never a panic;
//! - near-valid specs (a full one with a few values changed, removed or added): an
//!   accepted config keeps the rules the runtime relies on later (a command, absolute
//!   paths, a valid name and hostname, limits as the cgroup files take them, mounts only
//!   in a mount namespace, a user namespace only with mappings), survives the JSON round trip the guest agent's
//!   protocol puts it through, and its seccomp profile compiles or is refused cleanly.

use fuzzkit::{accepted_or_refused, fail, Reach};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::config::{ContainerConfig, CpuQuota, Resources};
use super::hostname;
use super::options::check_id;
use super::seccomp;
use super::spec::{config_from_bundle, config_from_spec};
use super::spec_tests::Bundle;

/// Cases per target in a plain `cargo test` run.
const CASES: u32 = 512;

/// A spec using most of what the runtime implements, with a bind mount of a directory in
/// the bundle.
fn template() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": true,
            "consoleSize": {"height": 24, "width": 80},
            "user": {"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [10, 20]},
            "args": ["sh", "-c", "echo hi"],
            "env": ["PATH=/usr/bin:/bin", "TERM=xterm"],
            "cwd": "/home",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL", "CAP_CHOWN"],
                "inheritable": [],
                "ambient": ["CAP_KILL"]
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512},
                {"type": "RLIMIT_NPROC", "hard": 64, "soft": 64}
            ],
            "noNewPrivileges": true,
            "oomScoreAdj": 100
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "fuzz",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/data", "type": "bind", "source": "data",
             "options": ["rbind", "ro", "rprivate"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "hooks": {
            "prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}],
            "poststop": [{"path": "/bin/true", "env": ["A=1"]}]
        },
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "sysctl": {"net.ipv4.ping_group_range": "0 0"},
            "resources": {
                "devices": [{"allow": false, "access": "rwm"},
                            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
                "memory": {"limit": 67108864, "swap": 67108864, "reservation": 33554432,
                           "swappiness": 10},
                "pids": {"limit": 32},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000}
            },
            "cgroupsPath": "/fuzz/container-1",
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}, {"type": "cgroup"}, {"type": "user"}
            ],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 38,
                "architectures": ["SCMP_ARCH_X86_64"],
                "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "syscalls": [
                    {"names": ["read", "write", "exit_group", "seccomp"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                     "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                              {"index": 0, "value": 17, "op": "SCMP_CMP_EQ"}]}
                ]
            },
            "rootfsPropagation": "rprivate",
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/sys"]
        }
    })
}

/// What the runtime relies on in an accepted config.
fn check_accepted(c: &ContainerConfig) -> Result<(), TestCaseError> {
    prop_assert!(!c.process.args.is_empty(), "no command");
    prop_assert!(c.process.cwd.is_absolute(), "cwd {:?}", c.process.cwd);
    prop_assert!(check_id(&c.id).is_ok(), "container name {:?}", c.id);
    prop_assert!(
        c.rootfs.is_absolute() && c.rootfs.is_dir(),
        "rootfs {:?}",
        c.rootfs
    );
    for m in &c.mounts {
        prop_assert!(m.destination.is_absolute(), "mount at {:?}", m.destination);
        if m.is_bind() {
            prop_assert!(
                m.source.is_absolute() && m.source.exists(),
                "bind of {:?}",
                m.source
            );
        }
    }
    if c.namespaces.user {
        prop_assert!(!c.uid_mappings.is_empty() && !c.gid_mappings.is_empty());
    }
    if !c.namespaces.mount {
        prop_assert!(
            c.mounts.is_empty() && c.masked_paths.is_empty() && c.readonly_paths.is_empty()
        );
    }
    check_resources(&c.resources)?;
    // What sethostname takes, and no more.
    prop_assert!(
        c.hostname
            .as_ref()
            .is_none_or(|h| !h.is_empty() && h.len() <= hostname::MAX),
        "hostname {:?}",
        c.hostname
    );
    // The guest agent's `create` carries the config as JSON.
    let json = serde_json::to_string(c).map_err(fail)?;
    let back: ContainerConfig =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
    prop_assert_eq!(&back, c, "the config does not survive its JSON round trip");
    if let Some(profile) = &c.seccomp {
        if let Err(e) = seccomp::compile(profile) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

/// The limits as the cgroup files take them: positive sizes and counts; a CPU quota of at
/// least 1 ms, or none (a period alone), in a period of 1 ms to 1 s, with a burst only
/// within a quota; swap only with a memory limit and not below it (or -1).
fn check_resources(r: &Resources) -> Result<(), TestCaseError> {
    let positive = |v: Option<i64>| v.is_none_or(|v| v > 0);
    prop_assert!(positive(r.memory), "memory {:?}", r.memory);
    prop_assert!(
        positive(r.memory_reservation),
        "reservation {:?}",
        r.memory_reservation
    );
    prop_assert!(positive(r.pids), "pids {:?}", r.pids);
    let quota = r.cpu.map(|q| q.quota).filter(|&q| q != CpuQuota::UNLIMITED);
    prop_assert!(
        r.cpu
            .is_none_or(|q| (1_000..=1_000_000).contains(&q.period))
            && quota.is_none_or(|q| q >= 1_000),
        "cpu {:?}",
        r.cpu
    );
    prop_assert!(
        r.cpu_burst
            .is_none_or(|b| quota.is_some_and(|q| i64::try_from(b).is_ok_and(|b| b <= q))),
        "burst {:?} with cpu {:?}",
        r.cpu_burst,
        r.cpu
    );
    prop_assert!(r.cpu_shares.is_none_or(|s| (2..=262_144).contains(&s)));
    prop_assert!(
        r.memory_swap
            .is_none_or(|s| r.memory.is_some_and(|m| s == -1 || s >= m)),
        "swap {:?} with memory {:?}",
        r.memory_swap,
        r.memory
    );
    prop_assert!(r.memory_swappiness.is_none_or(|s| s <= 100));
    Ok(())
}

#[test]
fn template_of_the_spec_fuzz_is_accepted() {
    // The near-valid target starts from it: it must be valid, or it tests only refusals.
    let b = Bundle::empty("fuzz-template");
    let spec = serde_json::from_value(template()).unwrap();
    let c = config_from_spec(&spec, b.path()).unwrap();
    assert!(c.namespaces.user && c.seccomp.is_some() && c.mounts.len() == 4);
}

#[test]
fn oci_config_json_of_any_bytes_loads_or_fails_cleanly() {
    let b = Bundle::empty("fuzz-bytes");
    let garbage = prop_oneof![
        fuzzkit::json::garbage(),
        fuzzkit::json::text_of(fuzzkit::json::near(template(), 3), 3),
    ];
    fuzzkit::check(file!(), CASES, garbage, |bytes| {
        std::fs::write(b.path().join("config.json"), &bytes).map_err(fail)?;
        accepted_or_refused(config_from_bundle(b.path()), check_accepted)
    });
}

#[test]
fn near_valid_oci_specs_convert_within_the_runtime_rules_or_are_refused() {
    let b = Bundle::empty("fuzz-near");
    // Mutations must mostly reach our conversion, and some must pass it, or the checks
    // above are vacuous.
    let parsed = Reach::new("were taken by oci-spec");
    let accepted = Reach::new("were accepted");
    fuzzkit::check(file!(), CASES, fuzzkit::json::near(template(), 4), |doc| {
        // Whatever oci-spec refuses is refused with its reason; the rest is ours.
        let spec = serde_json::from_value::<oci_spec::runtime::Spec>(doc);
        parsed.record(spec.is_ok());
        let Ok(spec) = spec else {
            accepted.record(false);
            return Ok(());
        };
        let config = config_from_spec(&spec, b.path());
        accepted.record(config.is_ok());
        accepted_or_refused(config, check_accepted)
    });
    parsed.assert_at_least_one_in(4);
    accepted.assert_at_least_one_in(16);
}
