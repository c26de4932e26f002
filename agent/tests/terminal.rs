//! Workloads on a terminal the agent makes (`terminal` in the config, or an exec's): a
//! pty in the workload's own devpts, of the size `start` gives, relayed on the stdin and
//! stdout streams, resized by `resize`. Root-only (SKIP otherwise).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, Read};

use agent_protocol::protocol::{ConsoleSize, ErrorKind, Op, StreamKind};
use support::*;

#[test]
fn a_terminal_workload_runs_on_a_pty_of_the_size_start_gives() {
    let Some(rootfs) = rootfs_or_skip("terminal_size") else {
        return;
    };
    let agent = Agent::start("terminal-size", &rootfs);
    let mut control = agent.control();
    let name = unique("tty");
    let mut config = container_config(&rootfs, &name, &["sh", "-c", "tty; stty size; exit 5"]);
    config.terminal = true;
    create(&mut control, &name, config, dir(&rootfs));
    let _stdin = attach_ok(&agent, &name, StreamKind::Stdin);
    let stdout = attach_ok(&agent, &name, StreamKind::Stdout);
    let stderr = attach_ok(&agent, &name, StreamKind::Stderr);
    start_sized(
        &mut control,
        &name,
        Some(ConsoleSize {
            rows: 33,
            cols: 111,
        }),
    );
    let out = String::from_utf8(read_to_end(stdout)).unwrap();
    // The pty's line discipline turns each newline into CR LF, as a terminal shows it.
    assert_eq!(out, "/dev/pts/0\r\n33 111\r\n");
    assert!(read_to_end(stderr).is_empty(), "stderr is the pty's too");
    assert_eq!(wait(&mut control, &name).status, 5);
}

#[test]
fn resize_reaches_a_running_workload_as_sigwinch_and_its_new_size() {
    let Some(rootfs) = rootfs_or_skip("terminal_resize") else {
        return;
    };
    let agent = Agent::start("terminal-resize", &rootfs);
    let mut control = agent.control();
    let name = unique("tty-resize");
    let script = "trap 'stty size; exit 6' WINCH; echo ready; while :; do sleep 0.05; done";
    let mut config = container_config(&rootfs, &name, &["sh", "-c", script]);
    config.terminal = true;
    create(&mut control, &name, config, dir(&rootfs));
    let mut stdout = attach_ok(&agent, &name, StreamKind::Stdout);
    start_sized(
        &mut control,
        &name,
        Some(ConsoleSize { rows: 24, cols: 80 }),
    );
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "ready\r\n");
    let reply = control.request(Op::Resize {
        container: name.clone(),
        size: ConsoleSize { rows: 20, cols: 70 },
    });
    assert!(reply.error.is_none(), "resize: {reply:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "20 70\r\n");
    assert_eq!(wait(&mut control, &name).status, 6);
}

#[test]
fn resize_of_a_workload_without_a_terminal_is_refused() {
    let Some(rootfs) = rootfs_or_skip("terminal_none") else {
        return;
    };
    let agent = Agent::start("terminal-none", &rootfs);
    let mut control = agent.control();
    let name = unique("no-tty");
    let config = container_config(&rootfs, &name, &["sleep", "30"]);
    create(&mut control, &name, config, dir(&rootfs));
    start(&mut control, &name);
    let reply = control.request(Op::Resize {
        container: name.clone(),
        size: ConsoleSize { rows: 20, cols: 70 },
    });
    let error = reply.error.expect("a resize without a terminal fails");
    assert_eq!(error.kind, ErrorKind::BadInput);
    assert!(error.message.contains("no terminal"), "{}", error.message);
    control.request(Op::Signal {
        container: name.clone(),
        signal: libc::SIGKILL,
    });
    assert_eq!(wait(&mut control, &name).signal, Some(libc::SIGKILL));
}

#[test]
fn an_exec_with_a_terminal_gets_a_pty_of_its_own() {
    let Some(rootfs) = rootfs_or_skip("terminal_exec") else {
        return;
    };
    let agent = Agent::start("terminal-exec", &rootfs);
    let mut control = agent.control();
    let target = unique("tty-exec-target");
    let config = container_config(&rootfs, &target, &["sleep", "30"]);
    create(&mut control, &target, config.clone(), dir(&rootfs));
    start(&mut control, &target);
    let name = unique("tty-exec");
    let mut process = config.process.clone();
    process.args = ["sh", "-c", "tty; stty size"].map(String::from).to_vec();
    let reply = control.request(Op::Exec {
        container: name.clone(),
        target: target.clone(),
        process: Box::new(process),
        terminal: true,
    });
    assert!(reply.error.is_none(), "exec: {reply:?}");
    let stdout = attach_ok(&agent, &name, StreamKind::Stdout);
    start_sized(&mut control, &name, Some(ConsoleSize { rows: 9, cols: 42 }));
    let out = String::from_utf8(read_to_end(stdout)).unwrap();
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    assert!(out.ends_with("\r\n9 42\r\n"), "{out:?}");
    assert_eq!(wait(&mut control, &name).status, 0);
    control.request(Op::Signal {
        container: target.clone(),
        signal: libc::SIGKILL,
    });
    assert_eq!(wait(&mut control, &target).signal, Some(libc::SIGKILL));
}
