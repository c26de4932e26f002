//! stdio, signals, exit status and cleanup of `vmm container run`. Root-only.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use container_support::*;

#[test]
fn exit_status_of_the_workload_is_returned() {
    let Some(rootfs) = rootfs_or_skip("exit_status") else {
        return;
    };
    for code in [0, 3, 42] {
        let out = run(
            &rootfs,
            &unique("exit"),
            &[],
            &["sh", "-c", &format!("exit {code}")],
        );
        assert_eq!(out.status.code(), Some(code));
    }
}

#[test]
fn stdout_stderr_and_stdin_pass_through() {
    let Some(rootfs) = rootfs_or_skip("stdio") else {
        return;
    };
    let mut child = command(
        &rootfs,
        &unique("stdio"),
        &[],
        &["sh", "-c", "read line; echo out:$line; echo err:$line >&2"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "out:ping\n");
    assert_eq!(stderr(&out), "err:ping\n");
}

#[test]
fn sigterm_to_the_runtime_is_forwarded_to_the_workload() {
    let Some(rootfs) = rootfs_or_skip("signals") else {
        return;
    };
    let mut child = command(
        &rootfs,
        &unique("sig"),
        &[],
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: the pid is our live child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "got TERM\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));
}

#[test]
fn killed_workload_gives_128_plus_signal_and_leaves_nothing_behind() {
    let Some(rootfs) = rootfs_or_skip("cleanup_after_kill") else {
        return;
    };
    let name = unique("kill");
    let mut child = command(
        &rootfs,
        &name,
        &["--pids", "32"],
        &["sh", "-c", "sleep 60 & sleep 60 & echo ready; wait"],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let dirs = cgroup_dirs(&name);
    assert!(!dirs.is_empty(), "no cgroup for {name}");
    let procs = std::fs::read_to_string(dirs[0].join("cgroup.procs")).unwrap();
    let pids: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");
    let init = *pids.iter().min().unwrap();
    // SAFETY: `init` is the container's first process, found in its cgroup.
    unsafe { libc::kill(init, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "container processes still alive: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        cgroup_dirs(&name).is_empty(),
        "left behind: {:?}",
        cgroup_dirs(&name)
    );
    assert!(
        host_mounts_under(&rootfs).is_empty(),
        "{:?}",
        host_mounts_under(&rootfs)
    );
}

#[test]
fn bundle_runs_with_its_config() {
    let Some(rootfs) = rootfs_or_skip("bundle") else {
        return;
    };
    let bundle = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bundle-{}", std::process::id()));
    std::fs::create_dir_all(&bundle).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": { "uid": 0, "gid": 0 },
            "args": ["sh", "-c", "hostname; grep CapEff /proc/self/status; ulimit -n; exit 9"],
            "env": ["PATH=/bin:/sbin"], "cwd": "/",
            "capabilities": { "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"] },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 100, "soft": 50 }],
            "noNewPrivileges": true
        },
        "root": { "path": rootfs, "readonly": true },
        "hostname": "from-bundle",
        "mounts": [{ "destination": "/proc", "type": "proc", "source": "proc" },
                   { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"] }],
        "linux": { "namespaces": [{ "type": "pid" }, { "type": "mount" }, { "type": "uts" }, { "type": "ipc" }, { "type": "network" }] }
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let out = std::process::Command::new(VMM)
        .args(["container", "run", "--name", &unique("bundle"), "--bundle"])
        .arg(&bundle)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&bundle);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from-bundle\nCapEff:\t0000000000000020\n50\n");
}
