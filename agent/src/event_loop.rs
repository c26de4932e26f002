//! The agent's single thread: one poll(2) over the listener, the signalfd, every
//! connection's socket and every relay's pipe. Single-threaded because the runtime clones
//! workloads from this process and the clone runs Rust code before it execs.
//!
//! Each round: poll; reap children (SIGCHLD); accept; do each ready descriptor's
//! non-blocking I/O; close the output of workloads whose grace ran out; answer the
//! complete request lines; close the connections that are done, which may end a workload
//! (its output flushed: `wait` answered) or kill it (its owner went away).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_protocol::protocol::LinkAddresses;

use crate::connection::{ConnId, Connection, Ending, Role};
use crate::listener::Listener;
use crate::relay::RELAY_CAPACITY;
use crate::rootfs;
use crate::signals::{self, Signals};
use crate::workload::{Phase, Workload};

/// Connections beyond this many are closed as soon as they are accepted, so a
/// misbehaving host cannot exhaust the agent's descriptors.
pub const MAX_CONNECTIONS: usize = 64;

/// How long the listener rests after accept failed for want of resources (EMFILE,
/// ENOMEM): the pending connection would otherwise wake every poll at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// PID 1 of a guest: disks are mounted, hostnames set, OOM kills counted guest-wide.
    Guest,
    /// On a host, for tests: a `disk` root is this directory instead.
    Test { rootfs_dir: PathBuf },
}

#[derive(Debug, thiserror::Error)]
#[error("poll the agent's descriptors")]
pub struct PollError(#[source] io::Error);

/// What a polled descriptor is.
#[derive(Debug, Clone, Copy)]
enum Source {
    Listener,
    Signals,
    Socket(ConnId),
    Pipe(ConnId),
}

pub struct Agent {
    pub(crate) setting: Setting,
    listener: Listener,
    signals: Signals,
    pub(crate) conns: BTreeMap<ConnId, Connection>,
    next_conn: ConnId,
    pub(crate) workloads: BTreeMap<String, Workload>,
    /// The read buffer of control and output-stream sockets.
    scratch: Vec<u8>,
    accept_paused_until: Option<Instant>,
    /// Set by `shutdown` (or, in test mode, SIGTERM/SIGINT/SIGHUP): the loop ends.
    pub(crate) stop: bool,
    /// The link eth0 was given (`create` with a link), once it has been.
    pub(crate) link: Option<LinkAddresses>,
}

impl Agent {
    pub fn new(setting: Setting, listener: Listener, signals: Signals) -> Self {
        Self {
            setting,
            listener,
            signals,
            conns: BTreeMap::new(),
            next_conn: 0,
            workloads: BTreeMap::new(),
            scratch: vec![0; RELAY_CAPACITY],
            accept_paused_until: None,
            stop: false,
            link: None,
        }
    }

    pub fn is_guest(&self) -> bool {
        self.setting == Setting::Guest
    }

    /// Serves until `shutdown` (or a termination signal in test mode).
    pub fn run(&mut self) -> Result<(), PollError> {
        while !self.stop {
            self.round()?;
        }
        Ok(())
    }

    fn round(&mut self) -> Result<(), PollError> {
        let now = Instant::now();
        let (mut fds, sources) = self.poll_set(now);
        let timeout = self.poll_timeout(now);
        // SAFETY: `fds` is a live array of `fds.len()` pollfds that poll may update.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(PollError(e));
        }
        for (fd, source) in fds.iter().zip(sources) {
            if fd.revents != 0 {
                self.on_ready(source, fd.revents);
            }
        }
        self.expire_output_deadlines(Instant::now());
        self.serve_requests();
        self.close_finished_connections();
        Ok(())
    }

    fn poll_set(&self, now: Instant) -> (Vec<libc::pollfd>, Vec<Source>) {
        let mut fds = Vec::with_capacity(2 + 2 * self.conns.len());
        let mut sources = Vec::with_capacity(fds.capacity());
        let mut add = |fd: RawFd, events: i16, source| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            sources.push(source);
        };
        if self.accept_paused_until.is_none_or(|t| now >= t) {
            add(
                self.listener.as_fd().as_raw_fd(),
                libc::POLLIN,
                Source::Listener,
            );
        }
        add(
            self.signals.as_fd().as_raw_fd(),
            libc::POLLIN,
            Source::Signals,
        );
        for (&id, conn) in &self.conns {
            let events = conn.socket_events();
            if events != 0 {
                add(conn.socket_fd(), events, Source::Socket(id));
            }
            if let Some((fd, events)) = conn.pipe_events() {
                add(fd, events, Source::Pipe(id));
            }
        }
        (fds, sources)
    }

    /// Milliseconds until the next deadline (an output grace or the accept back-off), or
    /// -1 (none: wait for I/O).
    fn poll_timeout(&self, now: Instant) -> libc::c_int {
        let next = self
            .workloads
            .values()
            .filter_map(|w| w.output_deadline)
            .chain(self.accept_paused_until)
            .min();
        match next {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(now);
                // Rounded up, so the deadline has passed when poll returns.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        }
    }

    fn on_ready(&mut self, source: Source, revents: i16) {
        match source {
            Source::Listener => self.accept_all(),
            Source::Signals => self.on_signals(),
            Source::Socket(id) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.on_socket(revents, &mut self.scratch);
                }
            }
            Source::Pipe(id) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.on_pipe(revents);
                }
            }
        }
    }

    fn accept_all(&mut self) {
        self.accept_paused_until = None;
        loop {
            match self.listener.accept() {
                Ok(Some(socket)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        // Refused: closing it is all the host learns.
                        drop(socket);
                        continue;
                    }
                    let role = if self.listener.emulates_vsock_handshake() {
                        Role::Handshake
                    } else {
                        Role::Undecided
                    };
                    self.next_conn += 1;
                    self.conns
                        .insert(self.next_conn, Connection::new(socket, role));
                }
                Ok(None) => return,
                Err(_) => {
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn on_signals(&mut self) {
        let received = self.signals.drain();
        if received.child {
            let now = Instant::now();
            for (pid, status) in signals::reap_all() {
                self.on_reaped(pid, status, now);
            }
        }
        // PID 1 has no one to obey; in test mode a termination request ends the agent as
        // `shutdown` does.
        if received.stop.is_some() && !self.is_guest() {
            self.stop = true;
        }
    }

    /// Takes the complete request lines of every connection that accepts requests.
    fn serve_requests(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if self.stop {
                return;
            }
            self.process_lines(id);
        }
    }

    fn close_finished_connections(&mut self) {
        let finished: Vec<(ConnId, Ending)> = self
            .conns
            .iter()
            .filter_map(|(&id, conn)| conn.ending().map(|ending| (id, ending)))
            .collect();
        for (id, ending) in finished {
            self.close_conn(id, ending);
        }
    }

    /// Kills what still runs, reaps it, undoes every mount and syncs: the last thing the
    /// agent does before it exits or powers the guest off.
    pub fn shut_down(&mut self) {
        for workload in self.workloads.values() {
            if let Phase::Running(running) = &workload.phase {
                running.kill_all();
            }
        }
        let names: Vec<String> = self.workloads.keys().cloned().collect();
        for name in names {
            self.remove_workload(&name);
        }
        self.conns.clear();
        if self.is_guest() {
            rootfs::unmount_all_under_run_dir();
        }
        // SAFETY: sync has no arguments or preconditions.
        unsafe { libc::sync() };
    }
}
