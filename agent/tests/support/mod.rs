//! Helpers of the agent's integration tests: the busybox rootfs (built once by
//! resources/container-rootfs.sh), the real `vmm-agent` started in test mode on a private
//! Unix socket, and a host side that speaks the protocol to it as `vmm` does (the
//! `CONNECT 1024` handshake, then JSON lines).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agent_protocol::protocol::{
    decode_reply, encode, ConsoleSize, FileCopy, Op, Reply, Request, RootfsSource, StartReply,
    StreamKind, WaitReply,
};
use runtime::config::ContainerConfig;
use runtime::options::{baseline_config_from_options, config_from_options, RunOptions};

pub const AGENT: &str = env!("CARGO_BIN_EXE_vmm-agent");

/// How long a test waits for any one reply or stream before it fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn shared_rootfs() -> &'static Result<PathBuf, String> {
    static ROOTFS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("container-rootfs");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../resources/container-rootfs.sh"
        );
        let out = Command::new("sh")
            .arg(script)
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if out.status.success() {
            Ok(dir)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    })
}

/// The busybox rootfs when workloads can run here (root, busybox); otherwise prints
/// `SKIP` and gives None.
pub fn rootfs_or_skip(test: &str) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP {test}: needs root");
        return None;
    }
    match shared_rootfs() {
        Ok(dir) => Some(dir.clone()),
        Err(why) => {
            println!("SKIP {test}: no busybox rootfs ({why})");
            None
        }
    }
}

/// A directory of this test's own (removed on drop): a socket's home, an empty rootfs
/// for requests that never start anything, or a private rootfs copy.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A private copy of `rootfs` inside this directory, for tests that add files.
    pub fn copy_of(&self, rootfs: &Path) -> PathBuf {
        let dir = self.0.join("rootfs");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(rootfs)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "copy the rootfs");
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A container name unique to this test process.
pub fn unique(test: &str) -> String {
    format!("a-{test}-{}", std::process::id())
}

/// The isolated container of `vmm container run` for `command`.
pub fn container_config(rootfs: &Path, name: &str, command: &[&str]) -> ContainerConfig {
    config_from_options(&options(rootfs, name, command)).unwrap()
}

/// The `vm` level's workload: chrooted, no namespaces but a mount namespace, in a cgroup
/// of its own.
pub fn baseline_config(rootfs: &Path, name: &str, command: &[&str]) -> ContainerConfig {
    let mut config = baseline_config_from_options(&options(rootfs, name, command)).unwrap();
    config.cgroup = true;
    config
}

pub fn options(rootfs: &Path, name: &str, command: &[&str]) -> RunOptions {
    RunOptions {
        name: Some(name.to_owned()),
        ..RunOptions::new(rootfs, command.iter().map(|s| s.to_string()).collect())
    }
}

/// `vmm-agent --listen unix:… --rootfs-dir …`, killed on drop if still running.
pub struct Agent {
    child: Child,
    pub socket: PathBuf,
    _home: Scratch,
}

impl Agent {
    /// Starts the agent and waits for its "listening" line.
    pub fn start(test: &str, rootfs_dir: &Path) -> Self {
        let home = Scratch::new(&format!("{test}-home"));
        let socket = home.0.join("agent.sock");
        let mut child = Command::new(AGENT)
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--rootfs-dir")
            .arg(rootfs_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start vmm-agent");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(
            line,
            format!("vmm-agent: listening on unix:{}\n", socket.display())
        );
        Self {
            child,
            socket,
            _home: home,
        }
    }

    /// A connection past the vsock handshake (`CONNECT 1024` → `OK 1024`).
    pub fn connect(&self) -> UnixStream {
        let mut stream = self.connect_raw();
        stream.write_all(b"CONNECT 1024\n").unwrap();
        assert_eq!(read_line_unbuffered(&mut stream), "OK 1024");
        stream
    }

    /// A connection before the handshake.
    pub fn connect_raw(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.socket).expect("connect to the agent");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }

    pub fn control(&self) -> Control {
        Control::new(self.connect())
    }

    /// A stream connection: the attach line, then the reply; the reader keeps the bytes
    /// that follow the reply.
    pub fn attach(&self, container: &str, stream: StreamKind) -> (Reply, BufReader<UnixStream>) {
        let mut socket = self.connect();
        let attach = Request::new(
            1,
            Op::Attach {
                container: container.to_owned(),
                stream,
            },
        );
        socket.write_all(&encode(&attach)).unwrap();
        let mut reader = BufReader::new(socket);
        let reply = read_reply(&mut reader);
        (reply, reader)
    }

    /// The agent's exit status, if it exits within `timeout`.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the agent process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line read a byte at a time (so nothing after it is consumed), newline stripped.
fn read_line_unbuffered(stream: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

pub fn read_reply(reader: &mut impl BufRead) -> Reply {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).expect("read a reply");
    assert_eq!(line.last(), Some(&b'\n'), "a whole reply line: {line:?}");
    line.pop();
    decode_reply(&line).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&line)))
}

/// A control connection.
pub struct Control {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Control {
    pub fn new(stream: UnixStream) -> Self {
        let writer = stream.try_clone().unwrap();
        Self {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        }
    }

    /// Sends a request; returns its id.
    pub fn send(&mut self, op: Op) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(&encode(&Request::new(id, op)));
        id
    }

    /// The connection's socket, for writing past the request helpers.
    pub fn writer(&self) -> &UnixStream {
        &self.writer
    }

    pub fn send_line(&mut self, line: &[u8]) {
        self.writer.write_all(line).unwrap();
    }

    pub fn read_reply(&mut self) -> Reply {
        read_reply(&mut self.reader)
    }

    /// Sends a request and reads its reply (which must carry its id).
    pub fn request(&mut self, op: Op) -> Reply {
        let id = self.send(op);
        let reply = self.read_reply();
        assert_eq!(reply.id, Some(id), "{reply:?}");
        reply
    }

    /// True when the agent closed this connection (end of file or reset).
    pub fn is_closed_by_agent(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }

    pub fn close(self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

pub fn create(control: &mut Control, name: &str, config: ContainerConfig, rootfs: RootfsSource) {
    create_with_files(control, name, config, rootfs, Vec::new());
}

/// `create` carrying copies of host files for the config's bind mounts.
pub fn create_with_files(
    control: &mut Control,
    name: &str,
    config: ContainerConfig,
    rootfs: RootfsSource,
    files: Vec<FileCopy>,
) {
    let reply = control.request(Op::Create {
        container: name.to_owned(),
        config: Box::new(config),
        rootfs,
        link: None,
        files,
    });
    assert!(reply.error.is_none(), "create: {reply:?}");
}

pub fn start(control: &mut Control, name: &str) -> i32 {
    start_sized(control, name, None)
}

/// `start` with the size of the workload's terminal.
pub fn start_sized(control: &mut Control, name: &str, console_size: Option<ConsoleSize>) -> i32 {
    let reply = control.request(Op::Start {
        container: name.to_owned(),
        console_size,
    });
    reply.into_result::<StartReply>().expect("start").pid
}

pub fn wait(control: &mut Control, name: &str) -> WaitReply {
    let reply = control.request(Op::Wait {
        container: name.to_owned(),
    });
    reply.into_result::<WaitReply>().expect("wait")
}

/// A directory rootfs source.
pub fn dir(path: &Path) -> RootfsSource {
    RootfsSource::Dir {
        path: path.to_owned(),
    }
}

/// How a workload run through the agent ended, and what it wrote.
#[derive(Debug)]
pub struct Run {
    pub pid: i32,
    pub wait: WaitReply,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// create, attach stdout and stderr (and stdin when given), start, feed stdin then shut
/// down its sending side, read both outputs to their end, wait.
pub fn run(
    agent: &Agent,
    control: &mut Control,
    name: &str,
    config: ContainerConfig,
    rootfs: RootfsSource,
    stdin: Option<Vec<u8>>,
) -> Run {
    run_with_files(agent, control, name, config, rootfs, stdin, Vec::new())
}

/// [`run`], its `create` carrying `files`.
pub fn run_with_files(
    agent: &Agent,
    control: &mut Control,
    name: &str,
    config: ContainerConfig,
    rootfs: RootfsSource,
    stdin: Option<Vec<u8>>,
    files: Vec<FileCopy>,
) -> Run {
    create_with_files(control, name, config, rootfs, files);
    run_created(agent, control, name, stdin)
}

/// The rest of [`run`] for a workload already created (or prepared by `exec`): attach,
/// start, feed stdin, read both outputs to their end, wait.
pub fn run_created(
    agent: &Agent,
    control: &mut Control,
    name: &str,
    stdin: Option<Vec<u8>>,
) -> Run {
    let stdin_stream = stdin
        .as_ref()
        .map(|_| attach_ok(agent, name, StreamKind::Stdin));
    let stdout = attach_ok(agent, name, StreamKind::Stdout);
    let stderr = attach_ok(agent, name, StreamKind::Stderr);
    let pid = start(control, name);
    let feeder = stdin_stream.zip(stdin).map(|(reader, bytes)| {
        std::thread::spawn(move || {
            let mut socket = reader.into_inner();
            socket.write_all(&bytes).unwrap();
            socket.shutdown(Shutdown::Write).unwrap();
        })
    });
    let stdout = std::thread::spawn(move || read_to_end(stdout));
    let stderr = std::thread::spawn(move || read_to_end(stderr));
    let wait = wait(control, name);
    if let Some(feeder) = feeder {
        feeder.join().unwrap();
    }
    Run {
        pid,
        wait,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn attach_ok(agent: &Agent, name: &str, kind: StreamKind) -> BufReader<UnixStream> {
    let (reply, reader) = agent.attach(name, kind);
    assert!(reply.error.is_none(), "attach {kind:?}: {reply:?}");
    reader
}

pub fn read_to_end(mut reader: BufReader<UnixStream>) -> Vec<u8> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .expect("read a stream to its end");
    bytes
}

/// True once /proc/<pid> is gone (the process ended and was reaped), within `timeout`.
pub fn gone_within(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
