//! Workloads run through the real `vmm-agent` in test mode, the way `vmm` drives it in a
//! guest: their output and exit status, byte-exact streams, stdin with its end of file,
//! signals, the `vm` level's chrooted baseline, and an OOM kill. Root-only (SKIP otherwise).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use agent_protocol::protocol::{FileCopy, HelloReply, Op, RootfsSource};
use support::*;

#[test]
fn hello_reports_protocol_agent_and_kernel() {
    let empty = Scratch::new("hello-root");
    let agent = Agent::start("hello", &empty.0);
    let mut control = agent.control();
    let hello: HelloReply = control
        .request(Op::Hello { seed: None })
        .into_result()
        .unwrap();
    assert_eq!(hello.protocol, 1);
    assert_eq!(
        hello.agent,
        format!("vmm-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(hello.kernel, release.trim());
}

#[test]
fn stdout_and_stderr_arrive_separately_with_the_exit_status() {
    let Some(rootfs) = rootfs_or_skip("stdout_and_stderr") else {
        return;
    };
    let agent = Agent::start("streams", &rootfs);
    let mut control = agent.control();
    let name = unique("streams");
    let config = container_config(
        &rootfs,
        &name,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 42"],
    );
    // A disk in test mode is the agent's --rootfs-dir.
    let disk = RootfsSource::Disk {
        device: "/dev/vda".into(),
        fstype: "ext4".into(),
        bytes: None,
    };
    let run = run(&agent, &mut control, &name, config, disk, None);
    assert_eq!(run.stdout, b"to-stdout\n");
    assert_eq!(run.stderr, b"to-stderr\n");
    assert_eq!(run.wait.status, 42);
    assert_eq!(run.wait.signal, None);
    assert!(!run.wait.oom_killed);
}

#[test]
fn a_mebibyte_of_binary_output_arrives_byte_exact() {
    let Some(shared) = rootfs_or_skip("mebibyte_output") else {
        return;
    };
    let scratch = Scratch::new("mebibyte");
    let rootfs = scratch.copy_of(&shared);
    // Every byte value, in an order that repeats only after the whole mebibyte.
    let data: Vec<u8> = (0u32..1 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(rootfs.join("data.bin"), &data).unwrap();
    let agent = Agent::start("mebibyte", &rootfs);
    let mut control = agent.control();
    let name = unique("mebibyte");
    let config = container_config(&rootfs, &name, &["cat", "/data.bin"]);
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);
    assert_eq!(
        run.wait.status,
        0,
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.stdout.len(), data.len());
    assert!(run.stdout == data, "the output differs from /data.bin");
}

#[test]
fn stdin_passes_through_and_its_end_reaches_the_workload() {
    let Some(rootfs) = rootfs_or_skip("stdin_passes_through") else {
        return;
    };
    let agent = Agent::start("stdin", &rootfs);
    let mut control = agent.control();
    let name = unique("stdin");
    // More than a pipe holds, so the relay must wait for the workload to read.
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let config = container_config(&rootfs, &name, &["cat"]);
    let run = run(
        &agent,
        &mut control,
        &name,
        config,
        dir(&rootfs),
        Some(input.clone()),
    );
    assert_eq!(run.wait.status, 0, "cat ends when its stdin does");
    assert!(run.stdout == input, "cat echoes exactly what it was sent");
}

// A container's first process is PID 1 of its namespace, which the kernel shields from
// signals it has no handler for (`kill -9 $$` in a container does nothing): the signal
// cases below run at the `vm` level, the baseline, where the workload is a plain process.

#[test]
fn a_workload_that_kills_itself_reports_signal_9() {
    let Some(rootfs) = rootfs_or_skip("kills_itself") else {
        return;
    };
    let agent = Agent::start("kill9", &rootfs);
    let mut control = agent.control();
    let name = unique("kill9");
    let config = baseline_config(&rootfs, &name, &["sh", "-c", "kill -9 $$"]);
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);
    assert_eq!(run.wait.status, 137);
    assert_eq!(run.wait.signal, Some(9));
    assert!(!run.wait.oom_killed);
}

#[test]
fn the_signal_op_terminates_a_sleeping_workload() {
    let Some(rootfs) = rootfs_or_skip("signal_op") else {
        return;
    };
    let agent = Agent::start("sigterm", &rootfs);
    let mut control = agent.control();
    let name = unique("sigterm");
    let config = baseline_config(&rootfs, &name, &["sleep", "100"]);
    create(&mut control, &name, config, dir(&rootfs));
    start(&mut control, &name);
    let reply = control.request(Op::Signal {
        container: name.clone(),
        signal: libc::SIGTERM,
    });
    assert!(reply.error.is_none(), "{reply:?}");
    let wait = wait(&mut control, &name);
    assert_eq!((wait.status, wait.signal), (143, Some(libc::SIGTERM)));
}

#[test]
fn the_signal_op_kills_a_container_with_sigkill() {
    let Some(rootfs) = rootfs_or_skip("signal_op_kill") else {
        return;
    };
    let agent = Agent::start("sigkill", &rootfs);
    let mut control = agent.control();
    let name = unique("sigkill");
    let config = container_config(&rootfs, &name, &["sleep", "100"]);
    create(&mut control, &name, config, dir(&rootfs));
    start(&mut control, &name);
    let reply = control.request(Op::Signal {
        container: name.clone(),
        signal: libc::SIGKILL,
    });
    assert!(reply.error.is_none(), "{reply:?}");
    let wait = wait(&mut control, &name);
    assert_eq!((wait.status, wait.signal), (137, Some(libc::SIGKILL)));
    assert!(!wait.oom_killed);
}

#[test]
fn a_baseline_workload_runs_chrooted_in_the_agents_pid_namespace() {
    let Some(rootfs) = rootfs_or_skip("baseline") else {
        return;
    };
    let agent = Agent::start("baseline", &rootfs);
    let mut control = agent.control();
    let name = unique("baseline");
    let config = baseline_config(
        &rootfs,
        &name,
        &["sh", "-c", "echo $$; test -x /bin/busybox && echo chrooted"],
    );
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);
    assert_eq!(
        run.wait.status,
        0,
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // No PID namespace: the shell's own pid is the one the agent reported.
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        format!("{}\nchrooted\n", run.pid)
    );
}

#[test]
fn a_workload_over_its_memory_limit_is_reported_oom_killed() {
    let Some(rootfs) = rootfs_or_skip("oom") else {
        return;
    };
    let agent = Agent::start("oom", &rootfs);
    let mut control = agent.control();
    let name = unique("oom");
    let mut options = options(
        &rootfs,
        &name,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    options.memory = Some(32 << 20);
    let config = runtime::options::config_from_options(&options).unwrap();
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);
    assert_eq!(
        (run.wait.status, run.wait.signal),
        (137, Some(9)),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.wait.oom_killed);
}

#[test]
fn copied_host_files_are_bound_in_the_container_and_removed_with_it() {
    let Some(shared) = rootfs_or_skip("copied_files") else {
        return;
    };
    let scratch = Scratch::new("copied-files");
    let rootfs = scratch.copy_of(&shared);
    let agent = Agent::start("copied-files", &rootfs);
    let mut control = agent.control();
    let name = unique("copied-files");
    let mut config = container_config(
        &rootfs,
        &name,
        &["sh", "-c", "cat /etc/copied; stat -c %a /etc/copied"],
    );
    // As the host sends it: a bind of a host path the agent cannot (and must not) reach.
    config.mounts.push(runtime::config::MountSpec {
        destination: "/etc/copied".into(),
        fstype: "bind".into(),
        source: "/nonexistent/on/the/host".into(),
        flags: libc::MS_BIND | libc::MS_REC,
        propagation: libc::MS_PRIVATE,
        data: String::new(),
    });
    let copy = FileCopy {
        mount: config.mounts.len() - 1,
        mode: 0o604,
        content: b"10.0.0.7 copied-in\n".to_vec(),
    };
    let run = run_with_files(
        &agent,
        &mut control,
        &name,
        config,
        dir(&rootfs),
        None,
        vec![copy],
    );
    assert_eq!(
        run.stdout,
        b"10.0.0.7 copied-in\n604\n",
        "stderr: {:?}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.wait.status, 0);
    // Its owner gone, the workload is removed, and its copies with it.
    let copies = std::env::temp_dir().join(format!("vmm-agent-{}-{name}.files", agent.pid()));
    control.close();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while copies.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!copies.exists(), "{copies:?} is left");
}

#[test]
fn an_exec_runs_in_the_running_containers_namespaces_with_its_own_streams() {
    let Some(rootfs) = rootfs_or_skip("exec") else {
        return;
    };
    let agent = Agent::start("exec", &rootfs);
    let mut control = agent.control();
    let target = unique("exec-target");
    let mut config = container_config(&rootfs, &target, &["sleep", "30"]);
    config.hostname = Some("exec-target".into());
    create(&mut control, &target, config.clone(), dir(&rootfs));
    start(&mut control, &target);

    let name = unique("exec");
    let mut process = config.process.clone();
    process.args = [
        "sh",
        "-c",
        "echo $(hostname) $(cat /proc/1/comm) pid=$$; exit 7",
    ]
    .map(String::from)
    .to_vec();
    let reply = control.request(Op::Exec {
        container: name.clone(),
        target: target.clone(),
        process: Box::new(process.clone()),
        terminal: false,
    });
    assert!(reply.error.is_none(), "exec: {reply:?}");
    let run = run_created(&agent, &mut control, &name, None);
    // The target's UTS and pid namespaces: its hostname, its sleep as PID 1.
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.starts_with("exec-target sleep pid="),
        "{stdout:?} {:?}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_ne!(stdout.trim_end(), "exec-target sleep pid=1");
    assert_eq!(run.wait.status, 7);

    // The target runs on; an exec of an exec, or of what is not there, is refused.
    let reply = control.request(Op::Exec {
        container: unique("exec-missing"),
        target: "no-such-workload".into(),
        process: Box::new(process),
        terminal: false,
    });
    assert!(reply.error.is_some(), "{reply:?}");
    control.request(Op::Signal {
        container: target.clone(),
        signal: libc::SIGKILL,
    });
    assert_eq!(wait(&mut control, &target).signal, Some(libc::SIGKILL));
}

#[test]
fn an_exec_in_a_chrooted_baseline_takes_its_root() {
    let Some(shared) = rootfs_or_skip("exec_baseline") else {
        return;
    };
    let scratch = Scratch::new("exec-baseline");
    let rootfs = scratch.copy_of(&shared);
    std::fs::write(rootfs.join("marker"), "in-the-workload-root\n").unwrap();
    let agent = Agent::start("exec-baseline", &rootfs);
    let mut control = agent.control();
    let target = unique("exec-baseline-target");
    let config = baseline_config(&rootfs, &target, &["sleep", "30"]);
    create(&mut control, &target, config.clone(), dir(&rootfs));
    start(&mut control, &target);

    let name = unique("exec-baseline");
    let mut process = config.process.clone();
    process.args = ["cat", "/marker"].map(String::from).to_vec();
    let reply = control.request(Op::Exec {
        container: name.clone(),
        target: target.clone(),
        process: Box::new(process),
        terminal: false,
    });
    assert!(reply.error.is_none(), "exec: {reply:?}");
    let run = run_created(&agent, &mut control, &name, None);
    assert_eq!(
        run.stdout,
        b"in-the-workload-root\n",
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.wait.status, 0);
    control.request(Op::Signal {
        container: target.clone(),
        signal: libc::SIGKILL,
    });
    assert_eq!(wait(&mut control, &target).signal, Some(libc::SIGKILL));
}

/// vm+container's `--net link`: the guest's NIC exists in the agent's network namespace and
/// the runtime moves it into the container's as eth0, where it gets the workload's address
/// and its route. Here a veth end stands in for the NIC; its peer, with the host's address,
/// answers the container's ping across it.
#[test]
fn a_container_gets_an_existing_interface_moved_in_as_its_link() {
    let Some(rootfs) = rootfs_or_skip("existing_interface_link") else {
        return;
    };
    let pid = std::process::id();
    let (host_end, nic) = (format!("vmh{pid}"), format!("vmn{pid}"));
    runtime::netlink::create_veth(&host_end, &nic, pid as i32).unwrap();
    let _cleanup = DeleteLinkOnDrop(host_end.clone());
    let addresses = runtime::netif::LinkAddresses::allocate(pid).unwrap();
    runtime::netif::set_ipv4(&host_end, addresses.host, addresses.prefix_len).unwrap();
    runtime::netif::set_up(&host_end).unwrap();

    let agent = Agent::start("moved-nic", &rootfs);
    let mut control = agent.control();
    let name = unique("moved-nic");
    let script = format!(
        "ip -4 addr show dev eth0; ip route; ping -c1 -W3 {}",
        addresses.host
    );
    let mut config = container_config(&rootfs, &name, &["sh", "-c", &script]);
    config.net_link = Some(runtime::config::NetLink {
        host_interface: nic.clone(),
        addresses,
        existing_interface: true,
    });
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);

    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.wait.status, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let workload = format!("inet {}/{}", addresses.workload, addresses.prefix_len);
    assert!(stdout.contains(&workload), "{stdout}");
    assert!(
        stdout.contains(&format!("default via {}", addresses.host)),
        "{stdout}"
    );
    assert!(stdout.contains("1 packets received"), "{stdout}");
    assert!(
        !std::path::Path::new("/sys/class/net").join(&nic).exists(),
        "the moved interface went with the container's namespace"
    );
}

/// Deletes a network interface of this namespace (a veth pair: both ends) on drop.
struct DeleteLinkOnDrop(String);

impl Drop for DeleteLinkOnDrop {
    fn drop(&mut self) {
        let _ = runtime::netlink::delete_link(&self.0);
    }
}
