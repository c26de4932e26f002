//! `vmm-runc`, the OCI runtime command line, driven as Podman and containerd drive it
//! (create, start, state, kill, delete, exec), on OCI bundles over the busybox rootfs:
//! every operation in every state, the spec's hooks in order with the state on their
//! stdin, a terminal through --console-socket, a runtime killed during `create`, and bad
//! input. Root-only; prints SKIP otherwise.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;
mod vmm_runc_support;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use container_support::rootfs_or_skip;
use vmm_runc_support::*;

#[test]
fn create_start_state_delete_follow_the_spec_lifecycle() {
    let Some(rootfs) = rootfs_or_skip("runc_lifecycle") else {
        return;
    };
    become_subreaper();
    let b = Bundle::new(
        "lifecycle",
        &rootfs,
        &["sh", "-c", "read line; exit 7"],
        |_| {},
    );
    // The workload reads stdin: a pipe the test holds open decides when it ends.
    let (r, w) = pipe();
    let bundle = b.dir.to_str().unwrap().to_owned();
    let out = b.runc_with_stdin(
        &["create", "--bundle", &bundle, "--pid-file", "pid", &b.id],
        Stdio::from(r),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(b.status(), "created");
    let pid = b.pid();
    let pid_file = std::fs::read_to_string(b.dir.join("pid")).unwrap();
    assert_eq!(
        pid_file,
        pid.to_string(),
        "the pid file holds the pid, no newline"
    );
    assert!(
        !b.cgroup_dirs().is_empty(),
        "create makes the cgroup at cgroupsPath"
    );
    let listed = b.ok(&["list", "--format", "json"]);
    assert!(
        listed.contains(&b.id) && listed.contains("created"),
        "{listed}"
    );

    b.ok(&["start", &b.id]);
    assert_eq!(b.status(), "running");
    let refused = b.runc(&["delete", &b.id]);
    assert!(
        !refused.status.success(),
        "a running container is deleted without --force"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("running"));
    let ps: Vec<i32> = serde_json::from_str(&b.ok(&["ps", "--format", "json", &b.id])).unwrap();
    assert_eq!(ps, vec![pid]);

    drop(w); // EOF: `read` returns and the workload exits 7.
    assert_eq!(
        reap(pid),
        Some(7),
        "the workload's own status reaches its reaper"
    );
    assert_eq!(b.status(), "stopped");
    let state: serde_json::Value = serde_json::from_str(&b.ok(&["state", &b.id])).unwrap();
    assert!(
        state.get("pid").is_none(),
        "a stopped container has no pid: {state}"
    );
    b.ok(&["delete", &b.id]);
    assert!(b.cgroup_dirs().is_empty(), "delete removes the cgroup");
    assert!(!b.root.join(&b.id).exists(), "delete removes the state");
    let gone = b.runc(&["state", &b.id]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
}

#[test]
fn each_operation_is_allowed_or_refused_by_state() {
    let Some(rootfs) = rootfs_or_skip("runc_states") else {
        return;
    };
    become_subreaper();
    let b = Bundle::new("states", &rootfs, &["sleep", "1000"], |_| {});
    let id = b.id.as_str();
    let refused = |args: &[&str], why: &str| {
        let out = b.runc(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    };
    // Unknown ID.
    refused(&["start", id], "does not exist");
    refused(&["kill", id, "KILL"], "does not exist");
    refused(&["delete", id], "does not exist");
    b.ok(&["delete", "--force", id]); // forcefully deleting what is gone is done
                                      // Created.
    b.create();
    refused(
        &["create", "--bundle", b.dir.to_str().unwrap(), id],
        "already exists",
    );
    refused(&["exec", id, "true"], "created");
    // Running.
    b.ok(&["start", id]);
    refused(&["start", id], "running");
    assert_eq!(b.ok(&["exec", id, "sh", "-c", "echo in; exit 0"]), "in\n");
    // Stopped (killed by name, signal number form too).
    let pid = b.pid();
    b.ok(&["kill", id, "9"]);
    let _ = reap(pid);
    b.wait_status("stopped");
    refused(&["start", id], "stopped");
    refused(&["kill", id, "TERM"], "stopped");
    refused(&["exec", id, "true"], "stopped");
    b.ok(&["delete", id]);
}

#[test]
fn created_container_is_deleted_by_killing_its_waiting_process() {
    let Some(rootfs) = rootfs_or_skip("runc_delete_created") else {
        return;
    };
    become_subreaper();
    let b = Bundle::new("delcreated", &rootfs, &["true"], |_| {});
    b.create();
    let pid = b.pid();
    b.ok(&["delete", &b.id]);
    let _ = reap(pid);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the waiting process lives on"
    );
    assert!(b.cgroup_dirs().is_empty());
}

#[test]
fn kill_all_signals_every_process_of_the_container() {
    let Some(rootfs) = rootfs_or_skip("runc_kill_all") else {
        return;
    };
    become_subreaper();
    // The workload ignores TERM; its child does not.
    let b = Bundle::new(
        "killall",
        &rootfs,
        &["sh", "-c", "trap '' TERM; sleep 1000 & wait"],
        |_| {},
    );
    b.create();
    b.ok(&["start", &b.id]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b
        .ok(&["ps", "--format", "json", &b.id])
        .matches(',')
        .count()
        < 1
    {
        assert!(Instant::now() < deadline, "the child never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    b.ok(&["kill", "--all", &b.id, "KILL"]);
    b.wait_status("stopped");
}

#[test]
fn hooks_run_in_the_spec_order_with_the_state_on_stdin() {
    let Some(rootfs) = rootfs_or_skip("runc_hooks") else {
        return;
    };
    become_subreaper();
    let log_dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir).unwrap();
    // Host hooks write to the host's log dir; container hooks to the same dir bound at /hooklog.
    let hook = |stage: &str, dir: &str| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("read -r state; echo \"{stage} $state\" >> {dir}/order")],
        })
    };
    let host = log_dir.to_str().unwrap().to_owned();
    let b = Bundle::new("hooks", &rootfs, &["true"], |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/hooklog", "type": "bind", "source": host, "options": ["rbind"]
        }));
        c["hooks"] = serde_json::json!({
            "createRuntime": [hook("createRuntime", &host)],
            // Before pivot_root: its path and files are the runtime's, as the spec says.
            "createContainer": [hook("createContainer", &host)],
            "startContainer": [hook("startContainer", "/hooklog")],
            "poststart": [hook("poststart", &host)],
            "poststop": [hook("poststop", &host)],
        });
    });
    b.create();
    let pid = b.pid();
    b.ok(&["start", &b.id]);
    let _ = reap(pid);
    b.ok(&["delete", &b.id]);
    let order = std::fs::read_to_string(log_dir.join("order")).unwrap();
    let _ = std::fs::remove_dir_all(&log_dir);
    let stages: Vec<&str> = order
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{order}"
    );
    for line in order.lines() {
        let state: serde_json::Value =
            serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
        assert_eq!(state["id"], b.id.as_str(), "{line}");
        assert_eq!(state["ociVersion"], "1.2.0");
    }
    assert!(
        order.contains("\"status\":\"stopped\""),
        "poststop sees a stopped container"
    );
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let Some(rootfs) = rootfs_or_skip("runc_hook_fails") else {
        return;
    };
    let b = Bundle::new("hookfail", &rootfs, &["true"], |c| {
        c["hooks"] = serde_json::json!({ "createRuntime": [{ "path": "/bin/false" }] });
    });
    let out = b.runc(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("createRuntime hook"));
    assert!(!b.root.join(&b.id).exists(), "state left behind");
    assert!(b.cgroup_dirs().is_empty(), "cgroup left behind");
}

#[test]
fn runtime_killed_during_create_does_not_block_the_next_create() {
    let Some(rootfs) = rootfs_or_skip("runc_killed_create") else {
        return;
    };
    become_subreaper();
    let marker = format!("/tmp/vmm-runc-hook-{}", std::process::id());
    // The createRuntime hook marks that create is under way, then holds it there.
    let b = Bundle::new("killedcreate", &rootfs, &["true"], |c| {
        c["hooks"] = serde_json::json!({ "createRuntime": [{
            "path": "/bin/sh", "args": ["sh", "-c", format!("touch {marker}; sleep 30")]
        }]});
    });
    let mut create = b
        .command(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&marker).exists() {
        assert!(Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    create.kill().unwrap(); // SIGKILL, mid-create
    create.wait().unwrap();
    let _ = std::fs::remove_file(&marker);
    // The half-made container's process goes with its runtime.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.cgroup_dirs().iter().all(|d| {
        std::fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .trim()
            .is_empty()
    }) {
        assert!(
            Instant::now() < deadline,
            "the half-made container's process lives on"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Without the hook, the same ID is created, started and deleted.
    let config = b.dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c.as_object_mut().unwrap().remove("hooks");
    std::fs::write(&config, c.to_string()).unwrap();
    b.create();
    let pid = b.pid();
    b.ok(&["start", &b.id]);
    let _ = reap(pid);
    b.ok(&["delete", &b.id]);
    assert!(b.cgroup_dirs().is_empty());
}

#[test]
fn terminal_goes_to_the_console_socket() {
    let Some(rootfs) = rootfs_or_skip("runc_console") else {
        return;
    };
    become_subreaper();
    let b = Bundle::new(
        "console",
        &rootfs,
        &["sh", "-c", "tty; echo on-the-pty"],
        |c| {
            c["process"]["terminal"] = true.into();
        },
    );
    let socket = b.dir.join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    b.ok(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--console-socket",
        socket.to_str().unwrap(),
        &b.id,
    ]);
    let (conn, _) = listener.accept().unwrap();
    let primary = runtime::sys::linux::recv_fd(conn.as_raw_fd(), 0).unwrap();
    let pid = b.pid();
    b.ok(&["start", &b.id]);
    let _ = reap(pid);
    let mut seen = String::new();
    let mut file = std::fs::File::from(primary);
    let mut buf = [0u8; 256];
    // Reads end with EIO once the secondary's last holder exits.
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("/dev/pts/0"), "{seen:?}");
    assert!(seen.contains("on-the-pty"), "{seen:?}");
}

#[test]
fn bad_input_gets_one_line_and_a_non_zero_exit() {
    let Some(rootfs) = rootfs_or_skip("runc_bad_input") else {
        return;
    };
    let b = Bundle::new("badinput", &rootfs, &["true"], |_| {});
    let bundle = b.dir.to_str().unwrap();
    let bad_json = b.dir.join("bad");
    std::fs::create_dir_all(&bad_json).unwrap();
    std::fs::write(bad_json.join("config.json"), "{ not json").unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["create", "--bundle", "/no/such/bundle", "x1"],
            "cannot read config.json",
        ),
        (
            &["create", "--bundle", bad_json.to_str().unwrap(), "x2"],
            "not a valid OCI runtime spec",
        ),
        (
            &["create", "--bundle", bundle, "../escape"],
            "invalid container ID",
        ),
        (
            &["create", "--bundle", bundle, "a/b"],
            "invalid container ID",
        ),
        (&["start", "never-made"], "does not exist"),
        (&["kill", "never-made", "SIGNOPE"], "unknown signal"),
    ];
    for (args, want) in cases {
        let out = b.runc(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    for args in [&["frobnicate"][..], &["create", "--no-such-flag", "x"]] {
        let out = b.runc(args);
        assert!(!out.status.success(), "{args:?} succeeded");
    }
    let systemd = b.runc(&["--systemd-cgroup", "create", "--bundle", bundle, "x3"]);
    assert!(String::from_utf8_lossy(&systemd.stderr).contains("--systemd-cgroup"));
}

#[test]
fn errors_are_logged_as_json_lines_for_the_caller() {
    let Some(rootfs) = rootfs_or_skip("runc_json_log") else {
        return;
    };
    let b = Bundle::new("jsonlog", &rootfs, &["/no/such/program"], |_| {});
    let log = b.dir.join("log.json");
    let out = b.runc(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        &b.id,
    ]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"].as_str().unwrap().contains("/no/such/program"),
        "{line}"
    );
    assert!(line["time"].is_string());
}

#[test]
fn run_waits_for_the_workload_and_removes_the_container() {
    let Some(rootfs) = rootfs_or_skip("runc_run") else {
        return;
    };
    let b = Bundle::new("run", &rootfs, &["sh", "-c", "hostname; exit 3"], |_| {});
    let out = b.runc(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "runc-test\n");
    assert!(!b.root.join(&b.id).exists());
    assert!(b.cgroup_dirs().is_empty());
}

#[test]
fn vm_isolation_annotation_is_refused_at_once_where_linux_guests_cannot_boot() {
    let Some(rootfs) = rootfs_or_skip("runc_vm_annotation") else {
        return;
    };
    let b = Bundle::new("vmann", &rootfs, &["true"], |c| {
        c["annotations"] = serde_json::json!({ "io.vmm.isolation": "vm+container" });
    });
    let started = Instant::now();
    let out = b.runc(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.contains("vm+container"), "{err}");
    assert!(!b.root.join(&b.id).exists());
    let bogus = Bundle::new("vmbogus", &rootfs, &["true"], |c| {
        c["annotations"] = serde_json::json!({ "io.vmm.isolation": "chroot" });
    });
    let out = bogus.runc(&["create", "--bundle", bogus.dir.to_str().unwrap(), &bogus.id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("io.vmm.isolation"));
}

#[test]
fn features_and_version_describe_the_runtime() {
    let out = Command::new(VMM_RUNC).arg("features").output().unwrap();
    assert!(out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == "createRuntime"));
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);
    let v = Command::new(VMM_RUNC).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        text.starts_with("vmm-runc ") && text.contains("spec: 1.2.0"),
        "{text}"
    );
}
