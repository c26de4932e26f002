//! Requests the agent must refuse, each with the right error reply, after which it keeps
//! serving: unknown containers, ops out of order, malformed lines, a second attach. Most
//! need no root (nothing is started); the few that start a workload SKIP without it.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use agent_protocol::protocol::{ErrorKind, ErrorReply, Op, Reply, StreamKind, SEED_BYTES};
use support::*;

/// The error of a reply, which must not be a success.
fn error_of(reply: &Reply) -> &ErrorReply {
    reply
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("an error reply: {reply:?}"))
}

/// The agent still answers `hello` on a new connection.
fn assert_still_serving(agent: &Agent) {
    let reply = agent.control().request(Op::Hello { seed: None });
    assert!(reply.ok.is_some(), "{reply:?}");
}

/// An agent with an empty directory as its rootfs (enough for `create`).
fn agent_with_empty_root(test: &str) -> (Agent, Scratch) {
    let root = Scratch::new(&format!("{test}-root"));
    (Agent::start(test, &root.0), root)
}

#[test]
fn start_before_create_is_refused() {
    let (agent, _root) = agent_with_empty_root("start-first");
    let mut control = agent.control();
    let reply = control.request(Op::Start {
        container: "never-created".into(),
        console_size: None,
    });
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::Protocol);
    assert!(error.message.contains("never-created"), "{error:?}");
    let hello = control.request(Op::Hello { seed: None });
    assert!(hello.ok.is_some(), "the connection stays open: {hello:?}");
}

#[test]
fn wait_and_signal_for_an_unknown_container_are_refused() {
    let (agent, _root) = agent_with_empty_root("unknown");
    let mut control = agent.control();
    for op in [
        Op::Wait {
            container: "ghost".into(),
        },
        Op::Signal {
            container: "ghost".into(),
            signal: libc::SIGTERM,
        },
    ] {
        let reply = control.request(op);
        assert_eq!(error_of(&reply).kind, ErrorKind::Protocol, "{reply:?}");
    }
    let (reply, _stream) = agent.attach("ghost", StreamKind::Stdout);
    assert_eq!(error_of(&reply).kind, ErrorKind::Protocol);
    assert_still_serving(&agent);
}

#[test]
fn a_second_attach_of_the_same_stream_is_refused_and_closed() {
    let (agent, root) = agent_with_empty_root("attach-twice");
    let mut control = agent.control();
    let name = unique("attach-twice");
    create(
        &mut control,
        &name,
        container_config(&root.0, &name, &["true"]),
        dir(&root.0),
    );
    let (first, _kept) = agent.attach(&name, StreamKind::Stdout);
    assert!(first.error.is_none(), "{first:?}");
    let (second, rest) = agent.attach(&name, StreamKind::Stdout);
    let error = error_of(&second);
    assert_eq!(error.kind, ErrorKind::Protocol);
    assert!(error.message.contains("stdout"), "{error:?}");
    assert!(read_to_end(rest).is_empty(), "then the agent closes it");
    let (stderr, _) = agent.attach(&name, StreamKind::Stderr);
    assert!(
        stderr.error.is_none(),
        "other streams still attach: {stderr:?}"
    );
}

#[test]
fn malformed_json_gets_a_protocol_error_and_the_connection_stays_open() {
    let (agent, _root) = agent_with_empty_root("malformed");
    let mut control = agent.control();
    control.send_line(b"{\"v\":1,\"id\":4,\"op\":\n");
    let reply = control.read_reply();
    assert_eq!(reply.id, None);
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::Protocol);
    assert!(error.message.contains("not valid JSON"), "{error:?}");
    let hello = control.request(Op::Hello { seed: None });
    assert!(hello.ok.is_some(), "{hello:?}");
}

#[test]
fn a_wrong_version_is_refused() {
    let (agent, _root) = agent_with_empty_root("version");
    let mut control = agent.control();
    control.send_line(b"{\"v\":2,\"id\":9,\"op\":\"hello\"}\n");
    let reply = control.read_reply();
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::Protocol);
    assert!(error.message.contains("version 2"), "{error:?}");
    assert_still_serving(&agent);
}

#[test]
fn an_unknown_op_is_refused_with_its_id() {
    let (agent, _root) = agent_with_empty_root("unknown-op");
    let mut control = agent.control();
    control.send_line(b"{\"v\":1,\"id\":12,\"op\":\"format_disk\"}\n");
    let reply = control.read_reply();
    assert_eq!(reply.id, Some(12));
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::Protocol);
    assert!(error.message.contains("format_disk"), "{error:?}");
    assert_still_serving(&agent);
}

#[test]
fn attach_after_the_first_line_is_a_protocol_error() {
    let (agent, root) = agent_with_empty_root("attach-late");
    let mut control = agent.control();
    let name = unique("attach-late");
    create(
        &mut control,
        &name,
        container_config(&root.0, &name, &["true"]),
        dir(&root.0),
    );
    let reply = control.request(Op::Attach {
        container: name.clone(),
        stream: StreamKind::Stdout,
    });
    assert_eq!(error_of(&reply).kind, ErrorKind::Protocol);
    let (stdout, _) = agent.attach(&name, StreamKind::Stdout);
    assert!(
        stdout.error.is_none(),
        "the stream is still free: {stdout:?}"
    );
}

#[test]
fn a_bad_container_name_and_a_duplicate_are_bad_input() {
    let (agent, root) = agent_with_empty_root("names");
    let mut control = agent.control();
    let name = unique("names");
    let reply = control.request(Op::Create {
        container: "../escape".into(),
        config: Box::new(container_config(&root.0, &name, &["true"])),
        rootfs: dir(&root.0),
        link: None,
        files: Vec::new(),
    });
    assert_eq!(error_of(&reply).kind, ErrorKind::BadInput, "{reply:?}");
    create(
        &mut control,
        &name,
        container_config(&root.0, &name, &["true"]),
        dir(&root.0),
    );
    let reply = control.request(Op::Create {
        container: name.clone(),
        config: Box::new(container_config(&root.0, &name, &["true"])),
        rootfs: dir(&root.0),
        link: None,
        files: Vec::new(),
    });
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::BadInput);
    assert!(error.message.contains("exists"), "{error:?}");
}

#[test]
fn a_missing_rootfs_directory_is_bad_input() {
    let (agent, root) = agent_with_empty_root("no-rootfs");
    let mut control = agent.control();
    let name = unique("no-rootfs");
    let reply = control.request(Op::Create {
        container: name.clone(),
        config: Box::new(container_config(&root.0, &name, &["true"])),
        rootfs: dir(&root.0.join("missing")),
        link: None,
        files: Vec::new(),
    });
    assert_eq!(error_of(&reply).kind, ErrorKind::BadInput, "{reply:?}");
}

#[test]
fn signals_before_start_or_out_of_range_are_refused() {
    let (agent, root) = agent_with_empty_root("signals");
    let mut control = agent.control();
    let name = unique("signals");
    create(
        &mut control,
        &name,
        container_config(&root.0, &name, &["true"]),
        dir(&root.0),
    );
    let reply = control.request(Op::Signal {
        container: name.clone(),
        signal: libc::SIGTERM,
    });
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::Failed);
    assert!(error.message.contains("No such process"), "{error:?}");
    for signal in [0, -1, 65, 1000] {
        let reply = control.request(Op::Signal {
            container: name.clone(),
            signal,
        });
        assert_eq!(error_of(&reply).kind, ErrorKind::BadInput, "{signal}");
    }
}

#[test]
fn a_missing_command_is_bad_input_and_frees_the_name() {
    let Some(rootfs) = rootfs_or_skip("missing_command") else {
        return;
    };
    let agent = Agent::start("no-command", &rootfs);
    let mut control = agent.control();
    let name = unique("no-command");
    create(
        &mut control,
        &name,
        container_config(&rootfs, &name, &["no-such-command"]),
        dir(&rootfs),
    );
    let reply = control.request(Op::Start {
        container: name.clone(),
        console_size: None,
    });
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::BadInput);
    assert!(error.message.contains("no-such-command"), "{error:?}");
    // A failed start removes the container: the name can be created again.
    let config = container_config(&rootfs, &name, &["true"]);
    let run = run(&agent, &mut control, &name, config, dir(&rootfs), None);
    assert_eq!(run.wait.status, 0);
}

#[test]
fn a_second_start_is_refused() {
    let Some(rootfs) = rootfs_or_skip("second_start") else {
        return;
    };
    let agent = Agent::start("start-twice", &rootfs);
    let mut control = agent.control();
    let name = unique("start-twice");
    let config = container_config(&rootfs, &name, &["true"]);
    create(&mut control, &name, config, dir(&rootfs));
    start(&mut control, &name);
    let reply = control.request(Op::Start {
        container: name.clone(),
        console_size: None,
    });
    assert_eq!(error_of(&reply).kind, ErrorKind::Protocol, "{reply:?}");
    assert_eq!(wait(&mut control, &name).status, 0);
}

#[test]
fn a_link_in_test_mode_is_bad_input_and_creates_nothing() {
    // Off a guest the agent would reconfigure the host's eth0: it refuses instead.
    let (agent, root) = agent_with_empty_root("link");
    let mut control = agent.control();
    let name = unique("link");
    let reply = control.request(Op::Create {
        container: name.clone(),
        config: Box::new(container_config(&root.0, &name, &["true"])),
        rootfs: dir(&root.0),
        link: Some(agent_protocol::protocol::LinkAddresses::slot(0)),
        files: Vec::new(),
    });
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::BadInput, "{error:?}");
    assert!(error.message.contains("PID 1 of a guest"), "{error:?}");
    let reply = control.request(Op::Start {
        container: name.clone(),
        console_size: None,
    });
    assert_eq!(error_of(&reply).kind, ErrorKind::Protocol, "{reply:?}");
    assert_still_serving(&agent);
}

#[test]
fn a_hello_seed_of_the_wrong_length_is_refused_and_the_connection_stays_open() {
    let (agent, _root) = agent_with_empty_root("short-seed");
    let mut control = agent.control();
    let reply = control.request(Op::Hello {
        seed: Some(vec![1; 5]),
    });
    let error = error_of(&reply);
    assert_eq!(error.kind, ErrorKind::Protocol);
    assert!(
        error
            .message
            .contains(&format!("{SEED_BYTES} bytes, not 5")),
        "{error:?}"
    );
    let hello = control.request(Op::Hello { seed: None });
    assert!(hello.ok.is_some(), "{hello:?}");
}

/// As root the seed reaches the kernel (here the host's, which 32 random bytes cannot
/// harm); without CAP_SYS_ADMIN the kernel refuses it, and the agent says so rather than
/// answer as if the generator were reseeded.
#[test]
fn a_hello_seed_is_fed_to_the_kernel_or_its_refusal_is_reported() {
    let (agent, _root) = agent_with_empty_root("seed");
    let mut control = agent.control();
    let mut seed = vec![0u8; SEED_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .unwrap();
    let reply = control.request(Op::Hello { seed: Some(seed) });
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(reply.ok.is_some(), "{reply:?}");
    } else {
        let error = error_of(&reply);
        assert_eq!(error.kind, ErrorKind::Failed);
        assert!(
            error.message.contains("random number generator"),
            "{error:?}"
        );
    }
}
