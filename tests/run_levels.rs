//! `vmm run` at the levels this host runs itself: `process` (the chrooted baseline) and
//! `container`; and the VM levels' refusal on a host that cannot boot Linux (PVM). Needs
//! root and busybox (prints SKIP otherwise).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use container_support::{
    cgroup_dirs, host_mounts_under, rootfs_or_skip, stderr, stdout, OwnRootfs, VMM,
};

const HOST_LEVELS: [&str; 2] = ["process", "container"];

fn vmm_run(level: &str, rootfs: &Path, options: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(VMM);
    c.args(["run", "--isolation", level, "--rootfs"])
        .arg(rootfs)
        .args(options)
        .arg("--")
        .args(cmd);
    c
}

fn output(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().expect("run vmm")
}

#[test]
fn exit_status_and_separate_stdout_and_stderr_at_host_levels() {
    let Some(rootfs) = rootfs_or_skip("exit_status_and_separate_stdout_and_stderr_at_host_levels")
    else {
        return;
    };
    for level in HOST_LEVELS {
        let out = output(vmm_run(
            level,
            &rootfs,
            &[],
            &["sh", "-c", "echo out; echo err >&2; exit 42"],
        ));
        assert_eq!(out.status.code(), Some(42), "{level}: {}", stderr(&out));
        assert_eq!(stdout(&out), "out\n", "{level}");
        assert_eq!(stderr(&out), "err\n", "{level}");
    }
}

#[test]
fn one_mib_of_binary_output_arrives_byte_exact_at_host_levels() {
    let Some(shared) = rootfs_or_skip("one_mib_of_binary_output_arrives_byte_exact_at_host_levels")
    else {
        return;
    };
    let own = OwnRootfs::new(&shared, "run-binary");
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(own.0.join("blob"), &data).unwrap();
    for level in HOST_LEVELS {
        let out = output(vmm_run(level, &own.0, &[], &["cat", "/blob"]));
        assert!(out.status.success(), "{level}: {}", stderr(&out));
        assert!(
            out.stdout == data,
            "{level}: {} bytes differ from the 1 MiB sent",
            out.stdout.len()
        );
    }
}

#[test]
fn stdin_and_its_end_reach_the_workload_at_host_levels() {
    let Some(rootfs) = rootfs_or_skip("stdin_and_its_end_reach_the_workload_at_host_levels") else {
        return;
    };
    for level in HOST_LEVELS {
        let mut child = vmm_run(level, &rootfs, &[], &["sh", "-c", "cat; echo done"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"line one\nline two\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{level}");
        assert_eq!(stdout(&out), "line one\nline two\ndone\n", "{level}");
    }
}

/// The host pid of the container `name`'s first process, once it is in its cgroup.
fn container_pid(name: &str) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for dir in cgroup_dirs(name) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if let Some(pid) = procs.lines().next().and_then(|l| l.trim().parse().ok()) {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn workload_killed_by_signal_9_gives_137_and_leaves_nothing() {
    let Some(rootfs) = rootfs_or_skip("workload_killed_by_signal_9_gives_137_and_leaves_nothing")
    else {
        return;
    };
    let out = output(vmm_run(
        "process",
        &rootfs,
        &[],
        &["sh", "-c", "kill -9 $$"],
    ));
    assert_eq!(out.status.code(), Some(137), "process: {}", stderr(&out));

    // A container's PID 1 ignores even SIGKILL from inside its namespace (as in any
    // runtime): the kill comes from the host, as `kill -9` of the workload would.
    let name = format!("t-run-kill-{}", std::process::id());
    let child = vmm_run("container", &rootfs, &["--name", &name], &["sleep", "100"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = container_pid(&name).expect("the workload's pid in its cgroup");
    // SAFETY: kill(2) with plain integers; the pid is the live workload.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "container");
    assert!(
        cgroup_dirs(&name).is_empty(),
        "left behind: {:?}",
        cgroup_dirs(&name)
    );
}

#[test]
fn sigterm_to_vmm_reaches_the_workload_at_host_levels() {
    let Some(rootfs) = rootfs_or_skip("sigterm_to_vmm_reaches_the_workload_at_host_levels") else {
        return;
    };
    // A trap, since PID 1 of a PID namespace (the container level) gets only the signals
    // it handles.
    let script = "trap 'echo got-TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
    for level in HOST_LEVELS {
        let mut child = vmm_run(level, &rootfs, &[], &["sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert_eq!(line, "ready\n", "{level}");
        // SAFETY: kill(2) with plain integers, to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert_eq!(line, "got-TERM\n", "{level}");
        assert_eq!(child.wait().unwrap().code(), Some(7), "{level}");
    }
}

#[test]
fn process_level_shares_the_hosts_pids_and_hostname_and_leaves_no_mounts() {
    let Some(shared) =
        rootfs_or_skip("process_level_shares_the_hosts_pids_and_hostname_and_leaves_no_mounts")
    else {
        return;
    };
    let own = OwnRootfs::new(&shared, "run-process");
    let host_init = std::fs::read_to_string("/proc/1/comm").unwrap();
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = output(vmm_run(
        "process",
        &own.0,
        &[],
        &[
            "sh",
            "-c",
            "cat /proc/1/comm /proc/sys/kernel/hostname; echo $$",
        ],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], host_init.trim(), "the host's PID 1 is visible");
    assert_eq!(lines[1], host_name.trim());
    assert_ne!(lines[2], "1", "no PID namespace");
    assert!(
        host_mounts_under(&own.0).is_empty(),
        "mounts left: {:?}",
        host_mounts_under(&own.0)
    );
}

#[test]
fn container_level_isolates_and_removes_its_cgroup() {
    let Some(rootfs) = rootfs_or_skip("container_level_isolates_and_removes_its_cgroup") else {
        return;
    };
    let name = format!("t-run-{}", std::process::id());
    let out = output(vmm_run(
        "container",
        &rootfs,
        &[
            "--name",
            &name,
            "--hostname",
            "box",
            "--memory",
            "64m",
            "--pids",
            "32",
        ],
        &["sh", "-c", "echo $$; hostname"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1\nbox\n");
    assert!(
        cgroup_dirs(&name).is_empty(),
        "left behind: {:?}",
        cgroup_dirs(&name)
    );
}

#[test]
fn process_level_warns_that_limits_are_not_applied() {
    let Some(rootfs) = rootfs_or_skip("process_level_warns_that_limits_are_not_applied") else {
        return;
    };
    let out = output(vmm_run("process", &rootfs, &["--memory", "64m"], &["true"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--memory is not applied at the process level"),
        "{}",
        stderr(&out)
    );
}

/// One line on stderr that names `needle`, and exit status 2.
fn assert_bad_input(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

#[test]
fn bad_input_gets_one_line_and_exit_2_at_every_level() {
    let Some(rootfs) = rootfs_or_skip("bad_input_gets_one_line_and_exit_2_at_every_level") else {
        return;
    };
    for level in ["process", "container", "vm", "vm+container"] {
        let out = output(vmm_run(
            level,
            Path::new("/nonexistent/rootfs"),
            &[],
            &["true"],
        ));
        assert_bad_input(&out, "/nonexistent/rootfs");
    }
    for level in HOST_LEVELS {
        let out = output(vmm_run(level, &rootfs, &[], &["no-such-command"]));
        assert_bad_input(&out, "no-such-command");
    }
    let out = output(vmm_run("jail", &rootfs, &[], &["true"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("jail"), "{}", stderr(&out));

    let bundle = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("run-bad-bundle-{}", std::process::id()));
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    std::fs::write(bundle.join("config.json"), "{ \"ociVersion\": ").unwrap();
    for level in ["container", "vm+container"] {
        let mut c = Command::new(VMM);
        c.args(["run", "--isolation", level, "--bundle"])
            .arg(&bundle);
        assert_bad_input(&output(c), "config.json");
    }
    std::fs::remove_dir_all(&bundle).unwrap();
}

/// Whether this host's KVM is PVM (Linux guests cannot boot), as `vmm doctor` reports it.
fn host_is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

#[test]
fn vm_levels_refuse_at_once_on_a_pvm_host_and_leave_nothing() {
    let Some(rootfs) = rootfs_or_skip("vm_levels_refuse_at_once_on_a_pvm_host_and_leave_nothing")
    else {
        return;
    };
    if !host_is_pvm() {
        println!("SKIP vm_levels_refuse_at_once_on_a_pvm_host_and_leave_nothing: this host's KVM is not PVM");
        return;
    }
    let snapshot: &[&str] = &["--from-snapshot"];
    for (level, options) in [
        ("vm", &[][..]),
        ("vm+container", &[][..]),
        ("vm", snapshot),
        ("vm+container", snapshot),
    ] {
        let started = Instant::now();
        let out = output(vmm_run(level, &rootfs, options, &["true"]));
        assert_bad_input(&out, "PVM");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{level}: took {:?}",
            started.elapsed()
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("vmm-run-"))
        .map(|e| e.path())
        .filter(|p| {
            let pid: i32 = p.file_name().unwrap().to_string_lossy()["vmm-run-".len()..]
                .parse()
                .unwrap_or(0);
            // SAFETY: kill with signal 0 only checks whether the process exists.
            pid > 0 && unsafe { libc::kill(pid, 0) } != 0
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The host interfaces, as (name, ifindex).
fn host_interfaces() -> Vec<(String, u32)> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| {
            let index = std::fs::read_to_string(e.path().join("ifindex")).unwrap_or_default();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, index.trim().parse().unwrap_or(0))
        })
        .collect()
}

/// Runs `vmm run --isolation container --net link` and gives its output and the name of its
/// host interface (`vmm<pid>`).
fn run_with_link(rootfs: &Path, cmd: &[&str]) -> (Output, String) {
    let child = vmm_run("container", rootfs, &["--net", "link"], cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let host_end = format!("vmm{}", child.id());
    (child.wait_with_output().unwrap(), host_end)
}

#[test]
fn net_link_gives_eth0_a_slash_30_routed_via_the_host_and_leaves_no_veth() {
    let Some(rootfs) =
        rootfs_or_skip("net_link_gives_eth0_a_slash_30_routed_via_the_host_and_leaves_no_veth")
    else {
        return;
    };
    let script = "ip -4 addr show dev eth0; ip route; cat /sys/class/net/eth0/iflink; \
                  ping -c1 -W2 $(ip route | awk '/default/ {print $3}')";
    let (out, host_end) = run_with_link(&rootfs, &["sh", "-c", script]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));

    let word_after = |key: &str| -> String {
        let at = text
            .find(key)
            .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"));
        text[at + key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let (addr, prefix) = word_after("inet ")
        .split_once('/')
        .map(|(a, p)| (a.to_owned(), p.to_owned()))
        .unwrap();
    let gateway = word_after("default via ");
    assert!(addr.starts_with("10.231."), "eth0 has {addr}");
    assert_eq!(prefix, "30");
    let workload: std::net::Ipv4Addr = addr.parse().unwrap();
    let host: std::net::Ipv4Addr = gateway.parse().unwrap();
    assert_eq!(u32::from(host) + 1, u32::from(workload), "gateway {host}");
    assert!(text.contains("1 packets received"), "ping failed:\n{text}");

    // The host's end is gone with the run: no interface with its name or its index (the
    // container's eth0/iflink).
    let peer_index: u32 = text
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("eth0's iflink");
    let left: Vec<_> = host_interfaces()
        .into_iter()
        .filter(|(name, index)| *name == host_end || *index == peer_index)
        .collect();
    assert!(left.is_empty(), "left on the host: {left:?}");

    // Also when the run fails after the pair was made (the command is looked up later).
    let (out, host_end) = run_with_link(&rootfs, &["no-such-command"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        host_interfaces().iter().all(|(name, _)| *name != host_end),
        "{host_end} left on the host"
    );
}
