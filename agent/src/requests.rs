//! What each request line does: the `CONNECT` handshake of test mode, the first line that
//! makes a connection a control or a stream connection, and every op of the protocol.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_protocol::protocol::{
    decode_request, ConsoleSize, ErrorKind, FileCopy, HelloReply, LinkAddresses, Op, ProtocolError,
    Reply, Request, RootfsSource, StartReply, StreamKind, PROTOCOL_VERSION, SEED_BYTES,
};
use runtime::config::{ContainerConfig, ProcessConfig};
use runtime::launch::{self, Stdio};
use runtime::options::{check_id, resolve_rootfs};

use crate::connection::{ConnId, Role};
use crate::event_loop::{Agent, Setting};
use crate::files::CopiedFiles;
use crate::guest_init;
use crate::link::{self, LinkError};
use crate::listener::answer_connect;
use crate::request_error::RequestError;
use crate::rootfs::{OverlayRoot, RUN_DIR};
use crate::sys;
use crate::terminal::terminal_stdio;
use crate::workload::{global_oom_kills, stream_index, Phase, Workload};

/// Workloads the agent keeps at once (each holds mounts and a cgroup).
pub const MAX_CONTAINERS: usize = 64;

/// Pending `wait`s per workload (a host that repeats them cannot make the list grow
/// without bound).
pub const MAX_WAITS: usize = 64;

/// How long a `shutdown` reply may take to leave before the agent goes on regardless.
const SHUTDOWN_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers `hello`, after seeding the guest kernel's random number generator with the
/// host's `seed` when there is one (see [`Op::Hello`]).
fn hello(seed: Option<&[u8]>) -> Result<HelloReply, RequestError> {
    if let Some(seed) = seed {
        let seed =
            <&[u8; SEED_BYTES]>::try_from(seed).map_err(|_| RequestError::BadSeed(seed.len()))?;
        sys::seed_kernel_random(seed).map_err(RequestError::Seed)?;
    }
    Ok(HelloReply {
        protocol: PROTOCOL_VERSION,
        agent: format!("vmm-agent {}", env!("CARGO_PKG_VERSION")),
        kernel: sys::kernel_release(),
    })
}

impl Agent {
    /// Takes the connection's complete lines while it accepts requests.
    pub(crate) fn process_lines(&mut self, id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            if !conn.takes_requests() || self.stop {
                return;
            }
            let line = match conn.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return,
                Err(e) => {
                    // The stream cannot be framed any more: say so (unless it never got
                    // past the handshake) and close.
                    if !matches!(conn.role, Role::Handshake) {
                        conn.send(&Reply::error(None, ErrorKind::Protocol, e.to_string()));
                    }
                    conn.close_after_flush();
                    return;
                }
            };
            self.handle_line(id, &line);
        }
    }

    fn handle_line(&mut self, id: ConnId, line: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let first = match conn.role {
            Role::Handshake => {
                match answer_connect(line) {
                    Some(ok) => {
                        conn.send_raw(ok.as_bytes());
                        conn.role = Role::Undecided;
                    }
                    None => conn.abort(),
                }
                return;
            }
            Role::Undecided => true,
            Role::Control => false,
            Role::Stream(_) => return,
        };
        let request = match decode_request(line) {
            Ok(request) => request,
            Err((request_id, e)) => {
                conn.role = Role::Control;
                conn.send(&protocol_error(request_id, &e));
                conn.flush();
                return;
            }
        };
        if let Op::Attach { container, stream } = request.op {
            if first {
                self.attach(id, request.id, container, stream);
            } else {
                conn.send(&RequestError::AttachNotFirst.reply(request.id));
            }
            return;
        }
        conn.role = Role::Control;
        let request_id = request.id;
        if let Some(reply) = self.dispatch(id, request) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.send(&reply.unwrap_or_else(|e| e.reply(request_id)));
                conn.flush();
            }
        }
    }

    /// Does a control request; `None` when the answer comes later (`wait`, or `shutdown`
    /// which sends its own).
    fn dispatch(&mut self, conn: ConnId, request: Request) -> Option<Result<Reply, RequestError>> {
        let id = request.id;
        let answer = match request.op {
            Op::Hello { seed } => hello(seed.as_deref()).map(|hello| Reply::ok(id, &hello)),
            Op::Create {
                container,
                config,
                rootfs,
                link,
                files,
            } => self
                .create(conn, container, *config, rootfs, link, files)
                .map(|()| Reply::empty(id)),
            Op::Start {
                container,
                console_size,
            } => self
                .start(&container, console_size)
                .map(|pid| Reply::ok(id, &StartReply { pid })),
            Op::Wait { container } => match self.wait(conn, id, &container) {
                Ok(()) => return None,
                Err(e) => Err(e),
            },
            Op::Exec {
                container,
                target,
                process,
                terminal,
            } => self
                .exec(conn, container, &target, *process, terminal)
                .map(|()| Reply::empty(id)),
            Op::Resize { container, size } => {
                self.resize(&container, size).map(|()| Reply::empty(id))
            }
            Op::Signal { container, signal } => {
                self.signal(&container, signal).map(|()| Reply::empty(id))
            }
            Op::Shutdown => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.send(&Reply::empty(id));
                    c.flush_for(SHUTDOWN_REPLY_TIMEOUT);
                }
                self.stop = true;
                return None;
            }
            // Handled before dispatch: only a connection's first line may attach.
            Op::Attach { .. } => Err(RequestError::AttachNotFirst),
        };
        Some(answer)
    }

    fn create(
        &mut self,
        owner: ConnId,
        container: String,
        mut config: ContainerConfig,
        rootfs: RootfsSource,
        link: Option<LinkAddresses>,
        files: Vec<FileCopy>,
    ) -> Result<(), RequestError> {
        self.check_new_name(&container)?;
        if let Some(link) = link {
            // First, so that a link that fails leaves nothing mounted behind.
            self.set_up_link(link)?;
        }
        let (root, overlay) = match (rootfs, &self.setting) {
            // The host cannot mount a guest's disk: test mode stands a directory in for it.
            (RootfsSource::Disk { .. }, Setting::Test { rootfs_dir }) => {
                (resolve_rootfs(rootfs_dir)?, None)
            }
            (
                RootfsSource::Disk {
                    device,
                    fstype,
                    bytes,
                },
                Setting::Guest,
            ) => {
                if let Some(bytes) = bytes {
                    crate::rootfs::wait_for_swapped_disk(&device, bytes)?;
                }
                let overlay = OverlayRoot::new(Path::new(RUN_DIR), &container);
                overlay.mount(&device, &fstype)?;
                (overlay.root(), Some(overlay))
            }
            (RootfsSource::Dir { path }, _) => (resolve_rootfs(&path)?, None),
        };
        config.rootfs = root;
        // The cgroup is named after the id, which is unique here: two workloads whose
        // hosts chose the same config id must not share (and kill) one group.
        config.id.clone_from(&container);
        match self.finish_create(&container, &mut config, files) {
            Ok(copied) => {
                let mut workload = Workload::new(owner, config, overlay);
                workload.files = copied;
                self.workloads.insert(container, workload);
                Ok(())
            }
            Err(e) => {
                if let Some(overlay) = &overlay {
                    overlay.unmount();
                }
                Err(e)
            }
        }
    }

    /// A name a new workload (or exec) may take: valid, free, and within the limit.
    fn check_new_name(&self, container: &str) -> Result<(), RequestError> {
        check_id(container)?;
        if self.workloads.contains_key(container) {
            return Err(RequestError::Exists(container.to_owned()));
        }
        if self.workloads.len() >= MAX_CONTAINERS {
            return Err(RequestError::TooMany);
        }
        Ok(())
    }

    /// `exec`: another process of the running workload `target`, recorded as a workload
    /// named `container` (its config is the target's, with `process` in place of the
    /// first); `start` makes it join the target's namespaces and cgroup.
    fn exec(
        &mut self,
        owner: ConnId,
        container: String,
        target: &str,
        process: ProcessConfig,
        terminal: bool,
    ) -> Result<(), RequestError> {
        self.check_new_name(&container)?;
        let of = self
            .workloads
            .get(target)
            .ok_or_else(|| RequestError::Unknown(target.to_owned()))?;
        if of.pid().is_none() || of.exec_of.is_some() {
            return Err(RequestError::NotExecTarget(target.to_owned()));
        }
        let mut config = of.config.clone();
        config.process = process;
        config.terminal = terminal;
        config.console_size = None;
        let mut workload = Workload::new(owner, config, None);
        workload.exec_of = Some(target.to_owned());
        self.workloads.insert(container, workload);
        Ok(())
    }

    /// The steps of `create` after the root is in place: the copies of host files, and
    /// the guest's hostname at the `vm` level.
    fn finish_create(
        &self,
        container: &str,
        config: &mut ContainerConfig,
        files: Vec<FileCopy>,
    ) -> Result<Option<CopiedFiles>, RequestError> {
        let copied = match files.is_empty() {
            true => None,
            false => Some(CopiedFiles::write(
                self.files_dir(container),
                config,
                files,
            )?),
        };
        if let (Some(hostname), true) = (&config.hostname, self.is_guest()) {
            // The `vm` level shares the guest's UTS namespace: its hostname is the guest's.
            guest_init::set_hostname(hostname)?;
        }
        Ok(copied)
    }

    /// Where the copies of a workload's host files go: beside its root in a guest; in
    /// test mode, in this host's temporary directory.
    fn files_dir(&self, container: &str) -> PathBuf {
        match self.setting {
            Setting::Guest => Path::new(RUN_DIR).join(format!("{container}.files")),
            Setting::Test { .. } => std::env::temp_dir().join(format!(
                "vmm-agent-{}-{container}.files",
                std::process::id()
            )),
        }
    }

    /// Gives eth0 the guest's end of `link` (once: a later workload may ask for the same
    /// link, not another one).
    fn set_up_link(&mut self, link: LinkAddresses) -> Result<(), LinkError> {
        link::check(&link)?;
        if !self.is_guest() {
            return Err(LinkError::NotInGuest);
        }
        match self.link {
            Some(current) if current == link => return Ok(()),
            Some(current) => {
                return Err(LinkError::Configured {
                    current: link::describe(&current),
                })
            }
            None => {}
        }
        link::configure(&mut link::Kernel, &link, link::NIC_APPEAR_TIMEOUT)?;
        self.link = Some(link);
        Ok(())
    }

    fn attach(&mut self, conn_id: ConnId, request_id: u64, container: String, kind: StreamKind) {
        let checked = match self.workloads.get_mut(&container) {
            None => Err(RequestError::Unknown(container.clone())),
            Some(w) if !matches!(w.phase, Phase::Created) => {
                Err(RequestError::Started(container.clone()))
            }
            Some(w) if w.attached[stream_index(kind)] => Err(RequestError::Attached {
                container: container.clone(),
                stream: kind.name(),
            }),
            Some(w) => {
                w.attached[stream_index(kind)] = true;
                w.streams[stream_index(kind)] = Some(conn_id);
                Ok(())
            }
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        match checked {
            Ok(()) => {
                conn.send(&Reply::empty(request_id));
                conn.become_stream(container, kind);
            }
            Err(e) => {
                conn.send(&e.reply(request_id));
                conn.close_after_flush();
            }
        }
        conn.flush();
    }

    /// Starts a created workload with its attached streams on pipes (the others on
    /// /dev/null), or on its terminal (of `console_size`) when it has one. A start that
    /// fails removes the workload: create it again to retry.
    fn start(
        &mut self,
        container: &str,
        console_size: Option<ConsoleSize>,
    ) -> Result<i32, RequestError> {
        let workload = self
            .workloads
            .get_mut(container)
            .ok_or_else(|| RequestError::Unknown(container.to_owned()))?;
        if console_size.is_some() {
            workload.config.console_size = console_size;
        }
        let workload = self
            .workloads
            .get(container)
            .ok_or_else(|| RequestError::Unknown(container.to_owned()))?;
        if !matches!(workload.phase, Phase::Created) {
            return Err(RequestError::Started(container.to_owned()));
        }
        let attached: Vec<(StreamKind, ConnId)> = StreamKind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind, workload.streams[stream_index(kind)]?)))
            .filter(|(_, id)| self.conns.contains_key(id))
            .collect();
        let stdio_err = |source| RequestError::Stdio {
            container: container.to_owned(),
            source,
        };
        let (stdio, pending_terminal, ours) = match workload.config.terminal {
            true => {
                let (stdio, pending) = terminal_stdio().map_err(stdio_err)?;
                (stdio, Some(pending), Vec::new())
            }
            false => {
                let (stdio, ours) = workload_stdio(&attached).map_err(stdio_err)?;
                (stdio, None, ours)
            }
        };
        let oom_kills_at_start = if self.is_guest() {
            global_oom_kills()
        } else {
            None
        };
        let spawned = match &workload.exec_of {
            None => launch::spawn(&workload.config, stdio, &launch::signal_set(&[])),
            Some(target) => self.spawn_exec(target, &workload.config, stdio),
        };
        let running = match spawned {
            Ok(running) => running,
            Err(e) => {
                self.remove_workload(container);
                return Err(e.into());
            }
        };
        let pid = running.pid();
        let (terminal, ours) = match pending_terminal.map(|p| p.connect(&attached)) {
            None => (None, ours),
            Some(Ok((primary, ours))) => (Some(primary), ours),
            Some(Err(e)) => {
                // Dropping `running` kills it: a workload cut off from its terminal.
                drop(running);
                self.remove_workload(container);
                return Err(stdio_err(e));
            }
        };
        if let Some(workload) = self.workloads.get_mut(container) {
            workload.phase = Phase::Running(running);
            workload.oom_kills_at_start = oom_kills_at_start;
            workload.terminal = terminal;
        }
        for (conn_id, pipe) in ours {
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.connect_pipe(pipe);
            }
        }
        Ok(pid)
    }

    /// An exec's process, in the namespaces and cgroup of `target` (still running?).
    fn spawn_exec(
        &self,
        target: &str,
        config: &ContainerConfig,
        stdio: launch::Stdio,
    ) -> Result<launch::Running, runtime::error::ContainerError> {
        let running = match self.workloads.get(target).map(|w| &w.phase) {
            Some(Phase::Running(running)) => running,
            _ => {
                return Err(runtime::error::ContainerError::Unsupported(format!(
                    "exec in {target:?}, which is not running any more"
                )))
            }
        };
        runtime::exec::spawn_in(
            config,
            running.pid(),
            &running.cgroup_dirs(),
            config.process.clone(),
            stdio,
        )
    }

    fn wait(&mut self, conn: ConnId, request_id: u64, container: &str) -> Result<(), RequestError> {
        let workload = self
            .workloads
            .get_mut(container)
            .ok_or_else(|| RequestError::Unknown(container.to_owned()))?;
        if workload.waiters.len() >= MAX_WAITS {
            return Err(RequestError::TooManyWaits(container.to_owned()));
        }
        workload.waiters.push((conn, request_id));
        self.settle(container);
        Ok(())
    }

    fn resize(&mut self, container: &str, size: ConsoleSize) -> Result<(), RequestError> {
        let workload = self
            .workloads
            .get(container)
            .ok_or_else(|| RequestError::Unknown(container.to_owned()))?;
        let terminal = workload
            .terminal
            .as_ref()
            .ok_or_else(|| RequestError::NoTerminal(container.to_owned()))?;
        runtime::sys::linux::set_window_size(terminal.as_raw_fd(), size).map_err(|source| {
            RequestError::Resize {
                container: container.to_owned(),
                source,
            }
        })
    }

    fn signal(&mut self, container: &str, signal: i32) -> Result<(), RequestError> {
        if !(1..=libc::SIGRTMAX()).contains(&signal) {
            return Err(RequestError::BadSignal(signal));
        }
        let workload = self
            .workloads
            .get(container)
            .ok_or_else(|| RequestError::Unknown(container.to_owned()))?;
        let not_running = |source| RequestError::NotRunning {
            container: container.to_owned(),
            source,
        };
        match &workload.phase {
            Phase::Running(running) => running.signal(signal).map_err(not_running),
            _ => Err(not_running(io::Error::from_raw_os_error(libc::ESRCH))),
        }
    }
}

fn protocol_error(id: Option<u64>, e: &ProtocolError) -> Reply {
    Reply::error(id, ErrorKind::Protocol, e.to_string())
}

/// The workload's standard streams: a pipe for each attached one (the workload's end in
/// the returned `Stdio`, the agent's end, non-blocking, for the relay), /dev/null for the
/// others, so an unattached output never blocks and an unattached input reads end of file.
fn workload_stdio(
    attached: &[(StreamKind, ConnId)],
) -> io::Result<(Stdio, Vec<(ConnId, OwnedFd)>)> {
    let mut stdio = Stdio::default();
    let mut ours = Vec::new();
    for kind in StreamKind::ALL {
        let theirs = match attached.iter().find(|(k, _)| *k == kind) {
            Some(&(_, conn)) => {
                let (read_end, write_end) = sys::pipe()?;
                let (theirs, mine) = match kind {
                    StreamKind::Stdin => (read_end, write_end),
                    _ => (write_end, read_end),
                };
                sys::set_nonblocking(mine.as_fd())?;
                ours.push((conn, mine));
                theirs
            }
            None => sys::open(&PathBuf::from("/dev/null"), libc::O_RDWR)?,
        };
        match kind {
            StreamKind::Stdin => stdio.stdin = Some(theirs),
            StreamKind::Stdout => stdio.stdout = Some(theirs),
            StreamKind::Stderr => stdio.stderr = Some(theirs),
        }
    }
    Ok((stdio, ours))
}
