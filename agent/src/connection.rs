//! One host connection: its socket, the lines it sends, the bytes waiting to go to it, and
//! for a stream connection the agent's end of the workload's pipe. Everything here is
//! non-blocking I/O and bookkeeping; what a request means is decided by the event loop.
//!
//! A stream connection relays in one direction: stdin from the socket into the pipe (its
//! end delivered by closing the pipe), stdout or stderr from the pipe to the socket (its
//! end delivered by shutting down the socket's sending side once the last byte is out).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use agent_protocol::protocol::{encode, LineBuffer, ProtocolError, Reply, StreamKind};

use crate::relay::{is_transient, ByteQueue, Filled};
use crate::sys;

/// Identifies a connection for as long as the agent runs (never reused).
pub type ConnId = u64;

/// What a connection is, decided by its first line.
#[derive(Debug)]
pub enum Role {
    /// Test mode: the `CONNECT <port>` line has not come yet.
    Handshake,
    /// No request yet: an `attach` makes it a stream, anything else a control connection.
    Undecided,
    Control,
    Stream(Stream),
}

/// The relay of one standard stream of a workload.
#[derive(Debug)]
pub struct Stream {
    pub container: String,
    pub kind: StreamKind,
    /// The agent's end of the workload's pipe, from `start` until the relay is done.
    pipe: Option<OwnedFd>,
    /// Host bytes waiting for the stdin pipe (stdin only).
    to_pipe: ByteQueue,
    /// The pipe's part is over: stdout/stderr at end of file (or given up), stdin closed.
    pipe_done: bool,
}

impl Stream {
    pub fn new(container: String, kind: StreamKind, first_bytes: &[u8]) -> Self {
        let mut to_pipe = ByteQueue::new();
        if kind == StreamKind::Stdin {
            to_pipe.push(first_bytes);
        }
        // Bytes a host sends on its stdout or stderr connection mean nothing: dropped.
        Self {
            container,
            kind,
            pipe: None,
            to_pipe,
            pipe_done: false,
        }
    }

    fn is_stdin(&self) -> bool {
        self.kind == StreamKind::Stdin
    }
}

/// Why a connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its work is done: an output stream relayed everything, a control connection's host
    /// shut down its sending side, or an error reply went out before closing.
    Done,
    /// The socket failed (reset, EPIPE): nothing more can be sent.
    Broken,
}

#[derive(Debug)]
pub struct Connection {
    socket: OwnedFd,
    lines: LineBuffer,
    /// Replies, or a workload's output, waiting for the socket.
    out: ByteQueue,
    /// The host shut down its sending side.
    peer_eof: bool,
    /// Close once `out` is written (after an error reply that ends the connection).
    closing: bool,
    broken: bool,
    pub role: Role,
}

impl Connection {
    pub fn new(socket: OwnedFd, role: Role) -> Self {
        Self {
            socket,
            lines: LineBuffer::new(),
            out: ByteQueue::new(),
            peer_eof: false,
            closing: false,
            broken: false,
            role,
        }
    }

    /// Queues a reply line.
    pub fn send(&mut self, reply: &Reply) {
        self.out.push(&encode(reply));
    }

    /// Queues bytes as they are (the handshake's `OK` line).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.out.push(bytes);
    }

    /// Ends the connection once what is queued has been written.
    pub fn close_after_flush(&mut self) {
        self.closing = true;
    }

    /// Ends the connection at once, dropping what is queued.
    pub fn abort(&mut self) {
        self.broken = true;
    }

    /// True when the next line may be taken as a request: the connection is not a stream,
    /// is not closing, and its replies are not piling up (a host that sends without
    /// reading waits until it reads).
    pub fn takes_requests(&self) -> bool {
        !matches!(self.role, Role::Stream(_))
            && !self.closing
            && !self.broken
            && self.out.has_room()
    }

    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        self.lines.next_line()
    }

    /// Turns the connection into the relay of `kind` of `container`; the bytes that came
    /// after the `attach` line are the stream's first bytes.
    pub fn become_stream(&mut self, container: String, kind: StreamKind) {
        let rest = self.lines.take_rest();
        self.role = Role::Stream(Stream::new(container, kind, &rest));
    }

    /// Hands the relay its end of the workload's pipe (at `start`).
    pub fn connect_pipe(&mut self, pipe: OwnedFd) {
        if let Role::Stream(stream) = &mut self.role {
            stream.pipe = Some(pipe);
        }
        self.settle_stdin();
    }

    /// Stops relaying from or to the pipe: the workload has ended and its output had its
    /// time; stdin is no longer wanted.
    pub fn close_pipe(&mut self) {
        if let Role::Stream(stream) = &mut self.role {
            stream.pipe = None;
            stream.pipe_done = true;
            stream.to_pipe.clear();
        }
    }

    /// The poll events wanted on the socket (0: do not poll it).
    pub fn socket_events(&self) -> i16 {
        let mut events = 0;
        if !self.out.is_empty() {
            events |= libc::POLLOUT;
        }
        if self.wants_socket_input() {
            events |= libc::POLLIN;
        }
        events
    }

    fn wants_socket_input(&self) -> bool {
        if self.peer_eof || self.broken || self.closing {
            return false;
        }
        match &self.role {
            Role::Stream(s) if s.is_stdin() => !s.pipe_done && s.to_pipe.has_room(),
            Role::Stream(_) => true,
            _ => self.out.has_room(),
        }
    }

    /// The pipe and the poll events wanted on it, when there is something to do.
    pub fn pipe_events(&self) -> Option<(RawFd, i16)> {
        let Role::Stream(s) = &self.role else {
            return None;
        };
        let pipe = s.pipe.as_ref()?;
        let events = if s.is_stdin() {
            if s.to_pipe.is_empty() {
                return None;
            }
            libc::POLLOUT
        } else {
            if !self.out.has_room() {
                return None;
            }
            libc::POLLIN
        };
        Some((pipe.as_raw_fd(), events))
    }

    pub fn socket_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Does the socket's I/O after poll reported `revents`; `scratch` is the loop's read
    /// buffer.
    pub fn on_socket(&mut self, revents: i16, scratch: &mut [u8]) {
        if revents & libc::POLLERR != 0 {
            self.broken = true;
            return;
        }
        if revents & (libc::POLLIN | libc::POLLHUP) != 0 && self.wants_socket_input() {
            self.read_socket(scratch);
        }
        self.flush();
        self.feed_pipe();
        self.settle_stdin();
    }

    fn read_socket(&mut self, scratch: &mut [u8]) {
        if let Role::Stream(s) = &mut self.role {
            if s.is_stdin() {
                match s.to_pipe.fill_from(self.socket.as_fd()) {
                    Ok(Filled::Eof) => self.peer_eof = true,
                    Ok(_) => {}
                    Err(_) => self.broken = true,
                }
                return;
            }
        }
        match sys::read(self.socket.as_fd(), scratch) {
            Ok(0) => self.peer_eof = true,
            Ok(n) => {
                if !matches!(self.role, Role::Stream(_)) {
                    self.lines.push(&scratch[..n]);
                }
            }
            Err(e) if is_transient(&e) => {}
            Err(_) => self.broken = true,
        }
    }

    /// Does the pipe's I/O after poll reported `revents` on it.
    pub fn on_pipe(&mut self, revents: i16) {
        let stdin = match &self.role {
            Role::Stream(s) => s.is_stdin(),
            _ => return,
        };
        if stdin {
            self.feed_pipe();
            self.settle_stdin();
            return;
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.read_pipe();
        }
        self.flush();
    }

    /// Moves workload output from the pipe into the socket's queue; end of file (every
    /// writer gone) ends the pipe's part.
    fn read_pipe(&mut self) {
        let Role::Stream(s) = &mut self.role else {
            return;
        };
        let Some(pipe) = &s.pipe else {
            return;
        };
        match self.out.fill_from(pipe.as_fd()) {
            Ok(Filled::Eof) | Err(_) => {
                s.pipe = None;
                s.pipe_done = true;
            }
            Ok(_) => {}
        }
    }

    /// Writes queued bytes until the socket takes no more.
    pub fn flush(&mut self) {
        while !self.broken && !self.out.is_empty() {
            match self.out.drain_to(self.socket.as_fd()) {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) => {
                    self.broken = true;
                    self.out.clear();
                }
            }
        }
    }

    /// Writes what is queued, waiting for the socket up to `timeout` (a `shutdown`
    /// reply must leave before the guest powers off).
    pub fn flush_for(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.flush();
            let left = deadline.saturating_duration_since(Instant::now());
            if self.broken || self.out.is_empty() || left.is_zero() {
                return;
            }
            let mut fd = libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: `fd` is one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut fd, 1, left.as_millis().max(1) as libc::c_int) };
        }
    }

    /// Moves host bytes into the stdin pipe; a workload that closed its stdin ends the
    /// relay (the host's further bytes have nowhere to go).
    fn feed_pipe(&mut self) {
        let Role::Stream(s) = &mut self.role else {
            return;
        };
        let Some(pipe) = &s.pipe else {
            return;
        };
        while s.is_stdin() && !s.to_pipe.is_empty() {
            match s.to_pipe.drain_to(pipe.as_fd()) {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) => {
                    s.pipe = None;
                    s.pipe_done = true;
                    s.to_pipe.clear();
                    return;
                }
            }
        }
    }

    /// Closes the stdin pipe once the host's end of file has reached it, so the workload
    /// reads end of file too.
    fn settle_stdin(&mut self) {
        if let Role::Stream(s) = &mut self.role {
            if s.is_stdin() && self.peer_eof && s.to_pipe.is_empty() && s.pipe.is_some() {
                s.pipe = None;
                s.pipe_done = true;
            }
        }
    }

    /// Whether the connection is over, and how.
    pub fn ending(&self) -> Option<Ending> {
        if self.broken {
            return Some(Ending::Broken);
        }
        let done = match &self.role {
            Role::Stream(s) => self.out.is_empty() && (s.pipe_done || self.closing),
            // The host shut down its sending side: the connection is gone as far as the
            // agent is concerned (replies the socket did not take are dropped).
            _ => self.peer_eof || (self.closing && self.out.is_empty()),
        };
        done.then_some(Ending::Done)
    }

    /// The stream this connection relays, if it is a stream connection.
    pub fn stream(&self) -> Option<(&str, StreamKind)> {
        match &self.role {
            Role::Stream(s) => Some((s.container.as_str(), s.kind)),
            _ => None,
        }
    }

    /// Closes the socket; a connection that ends normally first shuts down its sending
    /// side, so the host reads end of file after the last byte.
    pub fn close(self, ending: Ending) {
        if ending == Ending::Done {
            let _ = sys::shutdown_write(self.socket.as_fd());
        }
    }
}
