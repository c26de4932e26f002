//! The host's end of the agent protocol (`agent_protocol::protocol`): connections to the
//! guest agent through `vmm`'s Firecracker-style vsock socket (`CONNECT <port>`, then
//! `OK <port>`), and requests answered on a control connection.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use agent_protocol::protocol::{
    decode_reply, encode, HelloReply, LineBuffer, Op, ProtocolError, Reply, ReplyError, Request,
    StreamKind, AGENT_PORT, MAX_LINE, PROTOCOL_VERSION, SEED_BYTES,
};
use serde::de::DeserializeOwned;

use super::error::RunError;
use super::timings::Timings;

/// How long one handshake with the vsock socket may take: the VMM answers at once, and the
/// guest within its 2 s connect timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the agent may take to answer a request other than `wait` (creating a workload
/// mounts its rootfs; starting it clones and execs): seconds at most, even under nested
/// emulation. An agent that takes longer is stuck, and the run ends rather than hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens a stream to the agent's port through the VM's vsock socket at `uds`.
/// `Ok(None)`: nothing listens there yet (the guest is still booting, or refused).
pub fn open_stream(uds: &Path) -> io::Result<Option<UnixStream>> {
    let mut stream = match UnixStream::connect(uds) {
        Ok(s) => s,
        // The VMM has not bound its socket yet.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.write_all(format!("CONNECT {AGENT_PORT}\n").as_bytes())?;
    let line = match read_line_unbuffered(&mut stream, 32) {
        Ok(LineRead::Line(line)) => line,
        // The guest reset the connection: no listener (yet).
        Ok(LineRead::Eof) => return Ok(None),
        Ok(LineRead::TooLong) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the vsock socket's answer to CONNECT is not an `OK <port>` line",
            ))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionReset
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    if !line.starts_with(b"OK ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the vsock socket answered CONNECT with {:?}",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    stream.set_read_timeout(None)?;
    Ok(Some(stream))
}

/// A control connection: requests out, replies in, matched by id.
pub struct Control {
    stream: UnixStream,
    lines: LineBuffer,
    next_id: u64,
    /// Replies that arrived while another was awaited.
    early: Vec<Reply>,
}

impl Control {
    /// Opens a control connection and says hello; `Ok(None)` while the agent does not
    /// listen yet. `timings` hears when the guest accepted the connection ("agent
    /// connected"), before the hello's round trip.
    pub fn connect(
        uds: &Path,
        timings: Option<&Timings>,
    ) -> Result<Option<(Self, HelloReply)>, RunError> {
        let Some(stream) = open_stream(uds).map_err(RunError::io("connect to the agent"))? else {
            return Ok(None);
        };
        if let Some(timings) = timings {
            timings.mark("agent connected");
        }
        let mut control = Self {
            stream,
            lines: LineBuffer::new(),
            next_id: 1,
            early: Vec::new(),
        };
        // A connection the guest accepted but that closes before the hello is answered
        // (an agent starting up, or one that is not ours) counts as "not listening yet".
        // Fresh host entropy for the guest's random number generator on every connection:
        // a VM restored from a snapshot must not go on with the generator it was saved with.
        let mut seed = vec![0; SEED_BYTES];
        devices::virtio::rng::getrandom(&mut seed)
            .map_err(RunError::io("read the host's random bytes for the guest"))?;
        let id = match control.send(Op::Hello { seed: Some(seed) }) {
            Ok(id) => id,
            Err(_) => return Ok(None),
        };
        match control.reply_within(id, HANDSHAKE_TIMEOUT) {
            Ok(reply) => {
                let hello: HelloReply = reply.into_result().map_err(RunError::Agent)?;
                if hello.protocol != PROTOCOL_VERSION {
                    return Err(RunError::AgentVersion {
                        agent: hello.agent,
                        protocol: hello.protocol,
                    });
                }
                Ok(Some((control, hello)))
            }
            Err(RunError::AgentGone { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends a request; its reply comes through [`Control::reply_to`] or [`Control::poll_reply`].
    pub fn send(&mut self, op: Op) -> Result<u64, RunError> {
        let id = self.next_id;
        self.next_id += 1;
        let what = op.name();
        self.stream
            .write_all(&encode(&Request::new(id, op)))
            .map_err(|source| RunError::AgentGone {
                during: what,
                source: Some(source),
            })?;
        Ok(id)
    }

    /// Sends a request and waits (at most [`REQUEST_TIMEOUT`]) for its answer, as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, op: Op) -> Result<T, RunError> {
        let id = self.send(op)?;
        self.reply_within(id, REQUEST_TIMEOUT)?
            .into_result()
            .map_err(RunError::Agent)
    }

    /// [`Control::reply_to`], failing with [`RunError::AgentTimeout`] after `limit`.
    fn reply_within(&mut self, id: u64, limit: Duration) -> Result<Reply, RunError> {
        self.stream
            .set_read_timeout(Some(limit))
            .map_err(RunError::io("set a timeout on the agent connection"))?;
        let reply = self.reply_to(id).map_err(|e| match e {
            RunError::AgentGone {
                source: Some(io), ..
            } if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
            {
                RunError::AgentTimeout {
                    secs: limit.as_secs(),
                }
            }
            other => other,
        });
        self.stream
            .set_read_timeout(None)
            .map_err(RunError::io("set a timeout on the agent connection"))?;
        reply
    }

    /// Blocks until the reply to `id` arrives; other replies are kept for later.
    pub fn reply_to(&mut self, id: u64) -> Result<Reply, RunError> {
        if let Some(pos) = self.early.iter().position(|r| r.id == Some(id)) {
            return Ok(self.early.remove(pos));
        }
        loop {
            let reply = self.read_reply()?;
            if reply.id == Some(id) {
                return Ok(reply);
            }
            self.keep_early(reply)?;
        }
    }

    /// Reads whatever replies are available now (call when the socket polled readable)
    /// and returns the one to `id` if it came.
    pub fn poll_reply(&mut self, id: u64) -> Result<Option<Reply>, RunError> {
        self.stream
            .set_nonblocking(true)
            .map_err(RunError::io("poll the agent connection"))?;
        let result = self.read_available();
        self.stream
            .set_nonblocking(false)
            .map_err(RunError::io("poll the agent connection"))?;
        result?;
        Ok(self
            .early
            .iter()
            .position(|r| r.id == Some(id))
            .map(|pos| self.early.remove(pos)))
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.stream)
    }

    /// Takes every reply already readable (the stream is non-blocking here).
    fn read_available(&mut self) -> Result<(), RunError> {
        loop {
            while let Some(line) = self.lines.next_line().map_err(malformed)? {
                let reply = decode_reply(&line).map_err(malformed)?;
                self.keep_early(reply)?;
            }
            match self.read_once() {
                Ok(0) => return Err(gone("the run", None)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(gone("the run", Some(e))),
            }
        }
    }

    /// Blocks for the next reply.
    fn read_reply(&mut self) -> Result<Reply, RunError> {
        loop {
            if let Some(line) = self.lines.next_line().map_err(malformed)? {
                return decode_reply(&line).map_err(malformed);
            }
            match self.read_once() {
                Ok(0) => return Err(gone("a request", None)),
                Ok(_) => {}
                Err(e) => return Err(gone("a request", Some(e))),
            }
        }
    }

    /// One read from the connection into the line buffer; 0 at its end.
    fn read_once(&mut self) -> io::Result<usize> {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(n) => {
                    self.lines.push(&buf[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Keeps a reply for a request still in flight. A reply to nothing we asked (or an
    /// error reply without an id: the agent could not read a request of ours) is a
    /// protocol failure, reported rather than waited on forever.
    fn keep_early(&mut self, reply: Reply) -> Result<(), RunError> {
        match reply.id {
            Some(id) if id < self.next_id => {
                self.early.push(reply);
                Ok(())
            }
            _ => Err(RunError::Agent(
                match reply.into_result::<serde_json::Value>() {
                    Err(e) => e,
                    Ok(_) => ReplyError::Malformed(ProtocolError::Invalid {
                        what: "reply".into(),
                        reason: "its id matches no request".into(),
                    }),
                },
            )),
        }
    }
}

/// What [`read_line_unbuffered`] found.
enum LineRead {
    /// A line, without its newline.
    Line(Vec<u8>),
    Eof,
    /// `max` bytes came without a newline.
    TooLong,
}

/// Reads one line byte by byte, so that nothing after its newline is consumed (what
/// follows a handshake line belongs to someone else).
fn read_line_unbuffered(stream: &mut UnixStream, max: usize) -> io::Result<LineRead> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Ok(LineRead::Eof),
            Ok(_) if byte[0] == b'\n' => return Ok(LineRead::Line(line)),
            Ok(_) if line.len() < max => line.push(byte[0]),
            Ok(_) => return Ok(LineRead::TooLong),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn gone(during: &'static str, source: Option<io::Error>) -> RunError {
    RunError::AgentGone { during, source }
}

fn malformed(e: ProtocolError) -> RunError {
    RunError::Agent(ReplyError::Malformed(e))
}

/// Opens the stream connection for `stream` of `container` and checks the agent took it.
pub fn attach(uds: &Path, container: &str, stream: StreamKind) -> Result<UnixStream, RunError> {
    let what = "attach a standard stream";
    let mut conn = open_stream(uds)
        .map_err(RunError::io(what))?
        .ok_or(RunError::AgentGone {
            during: "attach",
            source: None,
        })?;
    let op = Op::Attach {
        container: container.to_owned(),
        stream,
    };
    conn.write_all(&encode(&Request::new(1, op)))
        .map_err(RunError::io(what))?;
    // After the reply line the connection is the raw stream: nothing past it is read here.
    conn.set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(RunError::io(what))?;
    let line = match read_line_unbuffered(&mut conn, MAX_LINE).map_err(RunError::io(what))? {
        LineRead::Line(line) => line,
        LineRead::Eof => {
            return Err(RunError::AgentGone {
                during: "attach",
                source: None,
            })
        }
        LineRead::TooLong => return Err(malformed(ProtocolError::LineTooLong)),
    };
    conn.set_read_timeout(None).map_err(RunError::io(what))?;
    let _: serde_json::Value = decode_reply(&line)
        .map_err(malformed)?
        .into_result()
        .map_err(RunError::Agent)?;
    Ok(conn)
}
