//! cgroup limits of `vmm container run`: memory (OOM kill reported), pids (a fork bomb
//! stopped), cpu quota written, and the group removed afterwards. Root-only.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use container_support::*;

#[test]
fn memory_limit_ends_in_an_oom_kill_reported_as_such() {
    let Some(rootfs) = rootfs_or_skip("memory_limit") else {
        return;
    };
    let name = unique("oom");
    let out = run(
        &rootfs,
        &name,
        &["--memory", "24m"],
        &[
            "sh",
            "-c",
            "a=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#a}",
        ],
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("killed by the OOM killer"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("25165824"), "{}", stderr(&out));
    assert!(cgroup_dirs(&name).is_empty(), "{:?}", cgroup_dirs(&name));
}

#[test]
fn memory_within_the_limit_is_not_reported_as_oom() {
    let Some(rootfs) = rootfs_or_skip("memory_ok") else {
        return;
    };
    let out = run(
        &rootfs,
        &unique("nooom"),
        &["--memory", "64m"],
        &[
            "sh",
            "-c",
            "a=$(head -c 1000000 /dev/zero | tr '\\0' a); echo ${#a}",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1000000\n");
    assert!(!stderr(&out).contains("OOM"));
}

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    let Some(rootfs) = rootfs_or_skip("pids_limit") else {
        return;
    };
    let out = run(
        &rootfs,
        &unique("pids"),
        &["--pids", "16"],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; echo all started",
        ],
    );
    assert!(stderr(&out).contains("can't fork"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("all started"));
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn limits_are_written_to_the_containers_cgroup_and_removed_after() {
    let Some(rootfs) = rootfs_or_skip("cgroup_files") else {
        return;
    };
    let name = unique("limits");
    let mut child = command(
        &rootfs,
        &name,
        &["--memory", "32m", "--pids", "9", "--cpus", "0.5"],
        &["sh", "-c", "echo ready; read x || true"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let read = |controller: &str, file: &str| {
        let dir = v1_dir(controller, &name).or_else(|| {
            let v2 = std::path::Path::new("/sys/fs/cgroup/vmm").join(&name);
            v2.is_dir().then_some(v2)
        });
        let dir = dir.unwrap_or_else(|| panic!("no {controller} cgroup for {name}"));
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (mem, pids, cpu) = if v2 {
        (
            read("memory", "memory.max"),
            read("pids", "pids.max"),
            read("cpu", "cpu.max"),
        )
    } else {
        (
            read("memory", "memory.limit_in_bytes"),
            read("pids", "pids.max"),
            read("cpu", "cpu.cfs_quota_us"),
        )
    };
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(mem, "33554432");
    assert_eq!(pids, "9");
    assert!(cpu.starts_with("50000"), "{cpu}");
    assert!(
        cgroup_dirs(&name).is_empty(),
        "left behind: {:?}",
        cgroup_dirs(&name)
    );
}

#[test]
fn cgroup_namespace_shows_the_container_group_as_root() {
    let Some(rootfs) = rootfs_or_skip("cgroup_ns") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("cgns"),
        &["--memory", "64m"],
        "cat /proc/self/cgroup",
    );
    for line in out.lines() {
        assert!(line.ends_with(":/"), "{out}");
    }
}

/// A bundle whose workload says "ready" and waits for a line on stdin, with
/// `linux.resources` = `resources`.
fn waiting_bundle(
    rootfs: &std::path::Path,
    tag: &str,
    resources: serde_json::Value,
) -> std::path::PathBuf {
    let bundle = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bundle-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&bundle).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": { "uid": 0, "gid": 0 },
            "args": ["sh", "-c", "echo ready; read x || true"],
            "env": ["PATH=/bin:/sbin"], "cwd": "/"
        },
        "root": { "path": rootfs, "readonly": true },
        "mounts": [{ "destination": "/proc", "type": "proc", "source": "proc" }],
        "linux": {
            "namespaces": [{ "type": "pid" }, { "type": "mount" }],
            "resources": resources
        }
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    bundle
}

#[test]
fn bundle_swap_reservation_swappiness_and_burst_are_written_to_the_cgroup() {
    let Some(rootfs) = rootfs_or_skip("bundle_resources") else {
        return;
    };
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let name = unique("resources");
    let mut memory = serde_json::json!({
        "limit": 64 << 20, "swap": 96 << 20, "reservation": 16 << 20
    });
    if !v2 {
        memory["swappiness"] = 7.into();
    }
    let bundle = waiting_bundle(
        &rootfs,
        "resources",
        serde_json::json!({
            "memory": memory,
            "cpu": { "quota": 40000, "period": 100000, "burst": 10000 }
        }),
    );
    let mut child = std::process::Command::new(VMM)
        .args(["container", "run", "--state-root"])
        .arg(state_root())
        .args(["--name", &name, "--bundle"])
        .arg(&bundle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let read = |controller: &str, file: &str| {
        let dir = v1_dir(controller, &name)
            .unwrap_or_else(|| std::path::Path::new("/sys/fs/cgroup/vmm").join(&name));
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| format!("{file}: {e}"))
            .trim()
            .to_owned()
    };
    let seen = if v2 {
        vec![
            read("memory", "memory.swap.max"),
            read("memory", "memory.low"),
            read("cpu", "cpu.max.burst"),
        ]
    } else {
        vec![
            read("memory", "memory.memsw.limit_in_bytes"),
            read("memory", "memory.soft_limit_in_bytes"),
            read("memory", "memory.swappiness"),
            read("cpu", "cpu.cfs_burst_us"),
        ]
    };
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&bundle);
    assert_eq!(line, "ready\n");
    assert!(status.success());
    let expected: Vec<String> = if v2 {
        vec![
            (32u64 << 20).to_string(),
            (16u64 << 20).to_string(),
            "10000".into(),
        ]
    } else {
        vec![
            (96u64 << 20).to_string(),
            (16u64 << 20).to_string(),
            "7".into(),
            "10000".into(),
        ]
    };
    assert_eq!(seen, expected);
    assert!(cgroup_dirs(&name).is_empty(), "{:?}", cgroup_dirs(&name));
}
