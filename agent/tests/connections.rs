//! The agent's connections and lifetime: the vsock handshake it emulates in test mode, a
//! line too long to frame, the connection limit, a host that goes away mid-run, output
//! held open by a workload's leftovers, and `shutdown`.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use agent_protocol::protocol::{ErrorKind, Op, StreamKind, MAX_LINE};
use support::*;

#[test]
fn a_connect_to_another_port_is_closed() {
    let root = Scratch::new("other-port-root");
    let agent = Agent::start("other-port", &root.0);
    let mut stream = agent.connect_raw();
    stream.write_all(b"CONNECT 1025\n").unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no OK line: {rest:?}");
    assert!(agent
        .control()
        .request(Op::Hello { seed: None })
        .ok
        .is_some());
}

#[test]
fn a_line_too_long_closes_its_connection_but_not_the_agent() {
    let root = Scratch::new("long-line-root");
    let agent = Agent::start("long-line", &root.0);
    let mut control = agent.control();
    let line = vec![b'x'; MAX_LINE + 16];
    // The agent may close before it has read everything: a failed write is fine.
    let _ = std::io::Write::write_all(&mut agent_writer(&control), &line);
    let reply = control.read_reply();
    assert_eq!(reply.id, None);
    assert_eq!(
        reply.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Protocol)
    );
    assert!(control.is_closed_by_agent());
    assert!(agent
        .control()
        .request(Op::Hello { seed: None })
        .ok
        .is_some());
}

/// A second handle on the control connection's socket, to write without a reply.
fn agent_writer(control: &Control) -> std::os::unix::net::UnixStream {
    control.writer().try_clone().unwrap()
}

#[test]
fn connections_beyond_the_limit_are_closed_and_the_agent_recovers() {
    let root = Scratch::new("limit-root");
    let agent = Agent::start("limit", &root.0);
    let held: Vec<_> = (0..64).map(|_| agent.connect()).collect();
    let mut refused = agent.connect_raw();
    let _ = refused.write_all(b"CONNECT 1024\n");
    let mut answer = Vec::new();
    let _ = refused.read_to_end(&mut answer);
    assert!(
        answer.is_empty(),
        "the 65th connection is refused: {answer:?}"
    );
    drop(held);
    // The agent notices the closed connections on its next round.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = agent.connect_raw();
        let _ = stream.write_all(b"CONNECT 1024\n");
        let mut ok = [0u8; 8];
        if stream.read_exact(&mut ok).is_ok() && &ok == b"OK 1024\n" {
            break;
        }
        assert!(Instant::now() < deadline, "no connection accepted again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_host_that_disconnects_mid_run_gets_its_workload_killed() {
    let Some(rootfs) = rootfs_or_skip("disconnect_mid_run") else {
        return;
    };
    let mut agent = Agent::start("disconnect", &rootfs);
    let name = unique("disconnect");
    let mut control = agent.control();
    create(
        &mut control,
        &name,
        container_config(&rootfs, &name, &["sleep", "100"]),
        dir(&rootfs),
    );
    let stdout = attach_ok(&agent, &name, StreamKind::Stdout);
    let pid = start(&mut control, &name);
    control.close();
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "pid {pid} lives on"
    );
    assert!(
        read_to_end(stdout).is_empty(),
        "its stream connection is closed"
    );
    assert!(agent.is_running());
    // The name is free again, and a new host runs a workload under it.
    let mut control = agent.control();
    let config = container_config(&rootfs, &name, &["echo", "again"]);
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);
    assert_eq!(
        (run.wait.status, run.stdout.as_slice()),
        (0, &b"again\n"[..])
    );
}

#[test]
fn leftovers_in_the_cgroup_are_killed_when_the_first_process_ends() {
    let Some(rootfs) = rootfs_or_skip("leftovers_killed") else {
        return;
    };
    let agent = Agent::start("leftovers", &rootfs);
    let mut control = agent.control();
    let name = unique("leftovers");
    // The background sleep holds stdout open; the agent must not wait for it.
    let config = baseline_config(&rootfs, &name, &["sh", "-c", "sleep 100 & echo started"]);
    let began = Instant::now();
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);
    assert_eq!(
        (run.wait.status, run.stdout.as_slice()),
        (0, &b"started\n"[..])
    );
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn output_held_by_leftovers_without_a_cgroup_is_closed_after_a_grace() {
    let Some(rootfs) = rootfs_or_skip("leftovers_grace") else {
        return;
    };
    let agent = Agent::start("grace", &rootfs);
    let mut control = agent.control();
    let name = unique("grace");
    let mut config = baseline_config(&rootfs, &name, &["sh", "-c", "sleep 6 & echo started"]);
    config.cgroup = false;
    let began = Instant::now();
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);
    let took = began.elapsed();
    assert_eq!(
        (run.wait.status, run.stdout.as_slice()),
        (0, &b"started\n"[..])
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "answered after the 2 s grace, not after the leftover: {took:?}"
    );
}

#[test]
fn shutdown_answers_kills_what_runs_and_exits_0() {
    let Some(rootfs) = rootfs_or_skip("shutdown") else {
        return;
    };
    let mut agent = Agent::start("shutdown", &rootfs);
    let mut control = agent.control();
    let name = unique("shutdown");
    create(
        &mut control,
        &name,
        container_config(&rootfs, &name, &["sleep", "100"]),
        dir(&rootfs),
    );
    let pid = start(&mut control, &name);
    let reply = control.request(Op::Shutdown);
    assert!(reply.ok.is_some(), "{reply:?}");
    let status = agent.exit_within(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "pid {pid} lives on"
    );
    assert!(!agent.socket.exists(), "the socket file is removed");
}

#[test]
fn sigterm_ends_the_test_mode_agent_cleanly() {
    let root = Scratch::new("sigterm-root");
    let mut agent = Agent::start("sigterm-agent", &root.0);
    // SAFETY: kill(2) of the agent process this test started.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGTERM) };
    let status = agent.exit_within(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[test]
fn a_wait_for_a_workload_removed_before_it_ran_gets_an_error() {
    let root = Scratch::new("removed-root");
    let agent = Agent::start("removed", &root.0);
    let name = unique("removed");
    let mut owner = agent.control();
    create(
        &mut owner,
        &name,
        container_config(&root.0, &name, &["true"]),
        dir(&root.0),
    );
    let mut watcher = agent.control();
    let id = watcher.send(Op::Wait {
        container: name.clone(),
    });
    // The owner goes away before starting it: the workload is removed.
    owner.close();
    let reply = watcher.read_reply();
    assert_eq!(reply.id, Some(id));
    let error = reply.error.expect("an error reply");
    assert_eq!(error.kind, ErrorKind::Failed);
    assert!(error.message.contains("removed"), "{error:?}");
}
