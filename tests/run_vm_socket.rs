//! `vmm run`'s host side of the VM levels, on any host: `--vm-socket` talks to an agent
//! through a socket that speaks the VMM's vsock handshake. Here that is the real
//! `vmm-agent` in its test mode on this host (the workload runs here, as it would in a
//! guest), or a fake agent that misbehaves. Booting real guests is the nested tier's part
//! (tests/realkvm). Needs root, busybox and the vmm-agent binary (SKIP otherwise).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use container_support::{rootfs_or_skip, stderr, stdout, OwnRootfs, VMM};

/// The agent binary cargo built next to `vmm` (`cargo test --workspace` builds it).
fn agent_binary() -> Option<PathBuf> {
    let path = Path::new(VMM).with_file_name("vmm-agent");
    path.is_file().then_some(path)
}

/// A socket path of this test's own, short enough for sun_path (108 bytes).
fn short_socket_path(kind: &str, test: &str) -> PathBuf {
    let tag: String = test.split('_').map(|w| &w[..1]).collect();
    std::env::temp_dir().join(format!("vmm-{kind}-{tag}-{}.sock", std::process::id()))
}

/// A `vmm-agent --listen unix:...` on a private socket, killed on drop.
struct TestAgent {
    child: Child,
    socket: PathBuf,
}

impl TestAgent {
    fn start(test: &str, rootfs: &Path) -> Option<Self> {
        let Some(agent) = agent_binary() else {
            println!("SKIP {test}: vmm-agent is not built (cargo build -p vmm-agent, or cargo test --workspace)");
            return None;
        };
        let socket = short_socket_path("agent", test);
        let child = Command::new(agent)
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--rootfs-dir")
            .arg(rootfs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(Self { child, socket })
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn vmm_run(level: &str, socket: &Path, options: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(VMM);
    c.args(["run", "--isolation", level, "--vm-socket"])
        .arg(socket)
        .args(options)
        .arg("--")
        .args(cmd);
    c
}

fn output(mut c: Command) -> Output {
    c.stdin(Stdio::null()).output().expect("run vmm")
}

#[test]
fn stdout_stderr_and_exit_status_come_back_through_the_agent() {
    let test = "stdout_stderr_and_exit_status_come_back_through_the_agent";
    let Some(shared) = rootfs_or_skip(test) else {
        return;
    };
    let own = OwnRootfs::new(&shared, "vm-socket-stdio");
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(own.0.join("blob"), &data).unwrap();
    let Some(agent) = TestAgent::start(test, &own.0) else {
        return;
    };
    for level in ["vm", "vm+container"] {
        let out = output(vmm_run(
            level,
            &agent.socket,
            &[],
            &["sh", "-c", "cat /blob; echo err >&2; exit 42"],
        ));
        assert_eq!(out.status.code(), Some(42), "{level}: {}", stderr(&out));
        assert!(
            out.stdout == data,
            "{level}: stdout is {} bytes, not the 1 MiB blob",
            out.stdout.len()
        );
        assert_eq!(stderr(&out), "err\n", "{level}");
    }
}

#[test]
fn stdin_reaches_the_workload_with_its_end() {
    let test = "stdin_reaches_the_workload_with_its_end";
    let Some(rootfs) = rootfs_or_skip(test) else {
        return;
    };
    let Some(agent) = TestAgent::start(test, &rootfs) else {
        return;
    };
    for level in ["vm", "vm+container"] {
        let mut child = vmm_run(
            level,
            &agent.socket,
            &[],
            &["sh", "-c", "cat; echo eof-seen"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let input: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&input).map(|()| input));
        let out = child.wait_with_output().unwrap();
        let input = writer.join().unwrap().unwrap();
        assert!(out.status.success(), "{level}");
        assert_eq!(
            out.stdout.len(),
            input.len() + "eof-seen\n".len(),
            "{level}"
        );
        assert!(
            out.stdout.starts_with(&input) && out.stdout.ends_with(b"eof-seen\n"),
            "{level}"
        );
    }
}

#[test]
fn signals_to_vmm_reach_the_workload_and_kill_9_gives_137() {
    let test = "signals_to_vmm_reach_the_workload_and_kill_9_gives_137";
    let Some(rootfs) = rootfs_or_skip(test) else {
        return;
    };
    let Some(agent) = TestAgent::start(test, &rootfs) else {
        return;
    };
    let out = output(vmm_run(
        "vm",
        &agent.socket,
        &[],
        &["sh", "-c", "kill -9 $$"],
    ));
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));

    for (level, script, signal, want) in [
        ("vm", "echo ready; exec sleep 100", libc::SIGTERM, 143),
        (
            "vm+container",
            "trap 'exit 7' INT; echo ready; sleep 100 & wait",
            libc::SIGINT,
            7,
        ),
    ] {
        let mut child = vmm_run(level, &agent.socket, &[], &["sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "{level}");
        let sent = Instant::now();
        // SAFETY: kill(2) with plain integers, to our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(child.wait().unwrap().code(), Some(want), "{level}");
        assert!(sent.elapsed() < Duration::from_secs(5), "{level}");
    }
}

#[test]
fn agent_outlives_a_host_killed_mid_run_and_serves_the_next() {
    let test = "agent_outlives_a_host_killed_mid_run_and_serves_the_next";
    let Some(rootfs) = rootfs_or_skip(test) else {
        return;
    };
    let Some(agent) = TestAgent::start(test, &rootfs) else {
        return;
    };
    let marker = format!("sleep 7{}", std::process::id() % 1000);
    let mut host = vmm_run(
        "vm",
        &agent.socket,
        &[],
        &["sh", "-c", &format!("echo started; exec {marker}")],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(host.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    host.kill().unwrap();
    host.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let running = || {
        Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    while running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running(), "the abandoned workload still runs");
    let out = output(vmm_run(
        "vm+container",
        &agent.socket,
        &[],
        &["echo", "alive"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "alive\n");
}

#[test]
fn command_the_guest_lacks_is_bad_input_in_one_line() {
    let test = "command_the_guest_lacks_is_bad_input_in_one_line";
    let Some(rootfs) = rootfs_or_skip(test) else {
        return;
    };
    let Some(agent) = TestAgent::start(test, &rootfs) else {
        return;
    };
    let out = output(vmm_run(
        "vm+container",
        &agent.socket,
        &[],
        &["no-such-command"],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end().lines().count(),
        1,
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
}

#[test]
fn a_closed_stdout_ends_the_workload_with_sigpipe() {
    let test = "a_closed_stdout_ends_the_workload_with_sigpipe";
    let Some(rootfs) = rootfs_or_skip(test) else {
        return;
    };
    let Some(agent) = TestAgent::start(test, &rootfs) else {
        return;
    };
    let mut child = vmm_run(
        "vm",
        &agent.socket,
        &[],
        &["sh", "-c", "while :; do echo y; done"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = [0u8; 2];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141), "128 + SIGPIPE");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A fake agent: answers the vsock handshake, then runs `script` on each connection.
fn fake_agent(test: &str, script: fn(UnixStream, usize)) -> PathBuf {
    let socket = short_socket_path("fake", test);
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() || !line.starts_with("CONNECT ") {
                continue;
            }
            let _ = conn.write_all(b"OK 1073741824\n");
            std::thread::spawn(move || script(conn, n));
        }
    });
    socket
}

/// Reads one request line of a fake agent's connection.
fn request(conn: &UnixStream) -> serde_json::Value {
    let mut line = String::new();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    // Byte-wise reads would be exact; the host sends one request and waits, so a
    // buffered reader loses nothing here.
    reader.read_line(&mut line).unwrap_or(0);
    serde_json::from_str(&line).unwrap_or(serde_json::Value::Null)
}

fn run_against(socket: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let out = output(vmm_run(
        "vm+container",
        socket,
        &["--boot-timeout", "5"],
        &["true"],
    ));
    (out, started.elapsed())
}

fn assert_fails_in_one_line(out: &Output, took: Duration, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(
        stderr(out).contains(needle),
        "{needle:?} not in: {}",
        stderr(out)
    );
    assert_eq!(stderr(out).trim_end().lines().count(), 1, "{}", stderr(out));
}

#[test]
fn host_reports_an_agent_that_answers_garbage() {
    let socket = fake_agent("garbage", |mut conn, _| {
        let _ = request(&conn);
        let _ = conn.write_all(b"this is not json\n");
    });
    let (out, took) = run_against(&socket);
    assert_fails_in_one_line(&out, took, "malformed reply");
}

#[test]
fn host_reports_an_agent_of_another_protocol_version() {
    let socket = fake_agent("version", |mut conn, _| {
        let req = request(&conn);
        let reply = serde_json::json!({"v": 1, "id": req["id"], "ok": {"protocol": 9, "agent": "vmm-agent 9.0", "kernel": "x"}});
        let _ = conn.write_all(format!("{reply}\n").as_bytes());
    });
    let (out, took) = run_against(&socket);
    assert_fails_in_one_line(&out, took, "protocol version 9");
}

#[test]
fn host_reports_an_agent_that_hangs_up_mid_run() {
    let socket = fake_agent("hangup", |mut conn, n| {
        if n > 0 {
            // A stream connection: accept the attach, then nothing.
            let req = request(&conn);
            let reply = serde_json::json!({"v": 1, "id": req["id"], "ok": {}});
            let _ = conn.write_all(format!("{reply}\n").as_bytes());
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        for _ in 0..3 {
            let req = request(&conn);
            let ok = match req["op"].as_str() {
                Some("hello") => serde_json::json!({"protocol": 1, "agent": "fake", "kernel": "x"}),
                Some("start") => serde_json::json!({"pid": 2}),
                _ => serde_json::json!({}),
            };
            let reply = serde_json::json!({"v": 1, "id": req["id"], "ok": ok});
            let _ = conn.write_all(format!("{reply}\n").as_bytes());
        }
        // hello, create and start answered; the wait never is: the agent goes away.
        let _ = request(&conn);
    });
    let (out, took) = run_against(&socket);
    assert_fails_in_one_line(&out, took, "went away");
}

#[test]
fn host_gives_up_on_an_agent_that_never_answers() {
    let socket = fake_agent("silent", |conn, _| {
        let _ = request(&conn);
        std::thread::sleep(Duration::from_secs(60));
    });
    let (out, took) = run_against(&socket);
    assert_fails_in_one_line(&out, took, "did not answer");
}

#[test]
fn vm_socket_that_does_not_exist_is_bad_input_at_once() {
    let started = Instant::now();
    let out = output(vmm_run(
        "vm",
        Path::new("/nonexistent/vsock.sock"),
        &[],
        &["true"],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/vsock.sock"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn an_exec_on_a_terminal_takes_the_size_of_vmm_runs_terminal_and_its_resizes() {
    let test = "an_exec_on_a_terminal_takes_the_size_of_vmm_runs_terminal_and_its_resizes";
    let Some(rootfs) = rootfs_or_skip(test) else {
        return;
    };
    let Some(agent) = TestAgent::start(test, &rootfs) else {
        return;
    };
    let target = container_support::unique("tty-target");
    let mut host = vmm_run(
        "vm+container",
        &agent.socket,
        &["--name", &target],
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo started; sleep 30 & wait",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(host.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");

    // vmm-runc's exec -t: vmm run on a pty it controls, the process on one in the guest.
    let script = "tty; stty size; trap 'stty size; exit 3' WINCH; echo ready; \
                  while :; do sleep 0.05; done";
    let options = runtime::options::RunOptions::new(
        rootfs.clone(),
        ["sh", "-c", script].map(String::from).to_vec(),
    );
    let process = runtime::options::config_from_options(&options)
        .unwrap()
        .process;
    let process_file = std::env::temp_dir().join(format!("{target}.process.json"));
    std::fs::write(&process_file, serde_json::to_vec(&process).unwrap()).unwrap();
    let (primary, secondary) = pty(30, 90);
    let mut exec = Command::new(VMM);
    exec.args(["run", "--isolation", "vm+container", "--vm-socket"])
        .arg(&agent.socket)
        .args(["--exec-in", &target, "--exec-terminal", "--exec-process"])
        .arg(&process_file)
        .stdin(secondary.try_clone().unwrap())
        .stdout(secondary)
        .stderr(Stdio::piped());
    // SAFETY: setsid and ioctl are async-signal-safe, as a pre_exec hook needs.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut exec, || {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        })
    };
    let mut child = exec.spawn().unwrap();
    // Our copies of the secondary end go, so reads of the primary end once vmm run does.
    drop(exec);
    let mut primary = std::fs::File::from(primary);
    let seen = read_pty_until(&mut primary, "ready\r\n");
    assert!(seen.starts_with("/dev/pts/"), "{seen:?}");
    assert!(seen.contains("\r\n30 90\r\n"), "{seen:?}");
    runtime::sys::linux::set_window_size(
        std::os::fd::AsRawFd::as_raw_fd(&primary),
        runtime::config::ConsoleSize { rows: 20, cols: 60 },
    )
    .unwrap();
    let rest = read_pty_until(&mut primary, "20 60\r\n");
    assert_eq!(rest, "20 60\r\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    let _ = std::fs::remove_file(&process_file);
    // The target ends by itself (SIGTERM, passed on), so the agent removes its cgroup
    // before this test kills the agent.
    // SAFETY: kill(2) with plain integers, to our own child.
    unsafe { libc::kill(host.id() as i32, libc::SIGTERM) };
    assert_eq!(host.wait().unwrap().code(), Some(0));
}

/// A raw pty of `rows` x `cols` (as vmm-runc makes: the guest's pty does the line
/// discipline): (primary, secondary), close-on-exec.
fn pty(rows: u16, cols: u16) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut primary, mut secondary) = (-1, -1);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the locals; no name or termios asked.
    let r = unsafe {
        libc::openpty(
            &mut primary,
            &mut secondary,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [primary, secondary] {
        // SAFETY: fcntl on descriptors openpty just made.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw edits it, tcsetattr
    // reads it, all on the secondary end openpty made.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(secondary, &mut termios), 0);
        libc::cfmakeraw(&mut termios);
        assert_eq!(libc::tcsetattr(secondary, libc::TCSANOW, &termios), 0);
    }
    // SAFETY: openpty made both; nothing else owns them.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(primary),
            std::os::fd::OwnedFd::from_raw_fd(secondary),
        )
    }
}

/// What the pty's primary end gives until it has given `end` (10 s at most).
fn read_pty_until(primary: &mut std::fs::File, end: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).ends_with(end) {
        assert!(
            Instant::now() < deadline,
            "no {end:?} in {:?}",
            String::from_utf8_lossy(&seen)
        );
        let mut poll = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(primary),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, 100) } == 1 {
            let n = primary.read(&mut buf).expect("the pty ended early");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}
