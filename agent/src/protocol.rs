//! The protocol between `vmm` (the host) and `vmm-agent` (the guest's PID 1), over vsock.
//! `docs/agent-protocol.md` describes it for readers; this module is its definition.
//!
//! Newline-delimited JSON, one object per line, every object with the protocol version
//! `"v"`. The agent listens on vsock port [`AGENT_PORT`]; the host reaches it through
//! `vmm`'s Firecracker-style vsock socket (`CONNECT <port>`). The first line a client sends
//! on a connection says what the connection is:
//! - a control connection: any request but `attach` (normally `hello`); more requests and
//!   their replies follow, matched by `id` (a `wait` is answered when the workload ends,
//!   and other requests may be answered meanwhile);
//! - a stream connection: `attach` names a container and one of its standard streams; after
//!   the reply line the connection carries that stream's raw bytes (host → agent for
//!   stdin, whose end the host signals by shutting down its sending side; agent → host for
//!   stdout and stderr, which the agent closes after the last byte).
//!
//! Malformed input (not JSON, not an object, a wrong version, an unknown op, a field of the
//! wrong type, a line longer than [`MAX_LINE`]) gets an error reply naming the problem; a
//! line too long to frame also closes the connection.

use std::path::PathBuf;

pub use runtime::config::ConsoleSize;
use runtime::config::{ContainerConfig, ProcessConfig};
pub use runtime::netif::LinkAddresses;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of this protocol; every message carries it as `"v"`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The length of `hello`'s seed: 256 bits, what the kernel's generator keys itself with.
pub const SEED_BYTES: usize = 32;

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 1024;

/// The longest line either side accepts, newline included (a container config is a few
/// KiB; this bounds the memory a misbehaving peer can make the other side spend).
pub const MAX_LINE: usize = 1 << 20;

/// A request from the host. `id` is echoed in the reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    pub id: u64,
    #[serde(flatten)]
    pub op: Op,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Opens a control connection; answered with [`HelloReply`]. `seed`: [`SEED_BYTES`]
    /// random bytes of the host, which the agent mixes into the guest kernel's random
    /// number generator, and reseeds it from, before it answers. VMs restored from one
    /// snapshot share that generator's state, and a kernel reseeds on its own only once
    /// its key is a second old (a minute, after the first two minutes of uptime, in Linux
    /// 6.1): the workloads of VMs restored from a guest snapshotted soon after a rekey
    /// could read the same "random" bytes (keys, nonces) until then. Absent (what hosts before it
    /// send), the generator is left alone.
    Hello {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<Vec<u8>>,
    },
    /// Prepares a workload: its root file system, and its config (the runtime's own,
    /// built on the host). Answered with an empty object.
    Create {
        container: String,
        config: Box<ContainerConfig>,
        rootfs: RootfsSource,
        /// A point-to-point link to the host (`vmm run --net link`): before answering, the
        /// agent gives the guest's eth0 `workload/prefix_len`, brings it up and routes by
        /// default through `host`. Absent (what hosts before it send): eth0 is left alone.
        /// Sent only when set, so a host that does not ask for a link still speaks to an
        /// agent that predates the field.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<LinkAddresses>,
        /// Host files that bind mounts of `config` name, copied in (a VM cannot reach the
        /// host's files): the agent writes each to a file of its own and makes that the
        /// mount's source. Sent only when there are some, as `link`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<FileCopy>,
    },
    /// The first line of a stream connection: the rest of the connection is `stream` of
    /// `container`. Answered with an empty object.
    Attach {
        container: String,
        stream: StreamKind,
    },
    /// Starts a created workload (its streams attached, or /dev/null where they are not).
    /// Answered with [`StartReply`]. A workload with a terminal (its config's `terminal`,
    /// an exec's `terminal`) runs on a pty the agent makes: stdin and stdout relay its
    /// primary end, stderr ends at once; `console_size` is the pty's size before the
    /// workload runs. Sent only when set, as `link`.
    Start {
        container: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        console_size: Option<ConsoleSize>,
    },
    /// Answered with [`WaitReply`] once the workload has ended and its stdout and stderr
    /// have been written out and closed.
    Wait { container: String },
    /// Prepares another process in the running workload `target` (an OCI runtime's
    /// `exec`): it joins that workload's namespaces and cgroup when started. It is named
    /// `container` and then taken like a workload: `attach`, `start`, `wait`, `signal`.
    /// Answered with an empty object.
    Exec {
        container: String,
        target: String,
        process: Box<ProcessConfig>,
        /// The process gets a terminal (see `start`). Sent only when true.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        terminal: bool,
    },
    /// Sets the size of a running workload's terminal (the host's terminal was resized);
    /// the guest kernel tells the workload with SIGWINCH. Answered with an empty object.
    Resize {
        container: String,
        size: ConsoleSize,
    },
    /// Sends a signal to the workload's first process. Answered with an empty object.
    Signal { container: String, signal: i32 },
    /// Answered with an empty object, then the agent kills what still runs, syncs and
    /// powers the guest off.
    Shutdown,
}

impl Op {
    /// Every op's name, as it appears on the wire.
    pub const NAMES: [&'static str; 9] = [
        "hello", "create", "attach", "start", "wait", "exec", "resize", "signal", "shutdown",
    ];

    /// The op's name, as it appears on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Hello { .. } => "hello",
            Op::Create { .. } => "create",
            Op::Attach { .. } => "attach",
            Op::Start { .. } => "start",
            Op::Wait { .. } => "wait",
            Op::Exec { .. } => "exec",
            Op::Resize { .. } => "resize",
            Op::Signal { .. } => "signal",
            Op::Shutdown => "shutdown",
        }
    }
}

/// Where the workload's root file system comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RootfsSource {
    /// A block device holding a file system (in a guest: the read-only ext4 image the host
    /// packed, /dev/vda), mounted read-only under an overlay with a tmpfs upper layer, so
    /// the workload can write and its writes vanish with it.
    Disk {
        device: PathBuf,
        fstype: String,
        /// The image's size, when the host swapped it in for a placeholder just before
        /// (a run from a warm snapshot): the agent waits for the device to show this size
        /// and drops what it cached of the placeholder before it mounts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
    },
    /// A directory used as it is (an agent run on the host for tests).
    Dir { path: PathBuf },
}

/// The content of a host file that the bind mount `mount` (an index into the config's
/// `mounts`) names: a copy taken when the workload is created, as Kata's agent takes one
/// where the guest shares no file system with the host (Podman's /etc/hosts,
/// /etc/hostname, /etc/resolv.conf, /run/.containerenv). Writes to it stay in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCopy {
    pub mount: usize,
    /// The file's permission bits.
    pub mode: u32,
    pub content: Vec<u8>,
}

/// The most bytes of file copies one `create` may carry (a JSON array takes up to four
/// bytes a byte, so the request stays well inside [`MAX_LINE`]).
pub const MAX_COPIED_BYTES: usize = 128 << 10;

/// A workload's standard stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Stdin,
    Stdout,
    Stderr,
}

impl StreamKind {
    pub const ALL: [StreamKind; 3] = [StreamKind::Stdin, StreamKind::Stdout, StreamKind::Stderr];

    pub fn name(self) -> &'static str {
        match self {
            StreamKind::Stdin => "stdin",
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        }
    }
}

/// A reply from the agent: exactly one of `ok` and `error`. `id` is the request's, or
/// null when the request was too malformed to have one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub v: u32,
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ok: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorReply>,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request cannot work as given (a command missing from the rootfs, an invalid
    /// value): the host reports it as bad input (exit status 2).
    BadInput,
    /// The guest could not do it (a mount or a clone failed).
    Failed,
    /// The message was malformed, of another version, or unexpected here.
    Protocol,
}

/// The answer to `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The protocol version the agent speaks.
    pub protocol: u32,
    /// The agent's name and version, e.g. "vmm-agent 0.1.0".
    pub agent: String,
    /// The guest kernel's release (`uname -r`).
    pub kernel: String,
}

/// The answer to `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartReply {
    /// The workload's first process, as the guest sees it.
    pub pid: i32,
}

/// The answer to `wait`: how the workload ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitReply {
    /// Exit status as a shell reports it: the code, or 128 + the signal number.
    pub status: u8,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it (in its cgroup, or the guest ran out of memory).
    pub oom_killed: bool,
}

/// A message that cannot be taken as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("a line of more than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no protocol version (\"v\")")]
    NoVersion,
    #[error("protocol version {found} (this side speaks {PROTOCOL_VERSION})")]
    WrongVersion { found: u64 },
    #[error("no numeric request id (\"id\")")]
    NoId,
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// The JSON line for a message, newline included.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing these types cannot fail: every map key is a string and no value is a
    // non-finite float; an empty object would still be a valid line.
    let mut line = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

/// Parses one line (without its newline) as JSON and checks the version.
fn versioned_object(line: &[u8]) -> Result<serde_json::Map<String, Value>, ProtocolError> {
    if line.len() >= MAX_LINE {
        return Err(ProtocolError::LineTooLong);
    }
    let value: Value =
        serde_json::from_slice(line).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(ProtocolError::NotAnObject);
    };
    match map.get("v").map(Value::as_u64) {
        None | Some(None) => Err(ProtocolError::NoVersion),
        Some(Some(v)) if v == u64::from(PROTOCOL_VERSION) => Ok(map),
        Some(Some(found)) => Err(ProtocolError::WrongVersion { found }),
    }
}

/// The request on one line. On error, also the request's id when it had a usable one, so
/// the error reply can carry it.
pub fn decode_request(line: &[u8]) -> Result<Request, (Option<u64>, ProtocolError)> {
    let map = versioned_object(line).map_err(|e| (None, e))?;
    let Some(id) = map.get("id").and_then(Value::as_u64) else {
        return Err((None, ProtocolError::NoId));
    };
    let op = match map.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(other) => return Err((Some(id), ProtocolError::UnknownOp(other.to_string()))),
        None => return Err((Some(id), ProtocolError::UnknownOp(String::new()))),
    };
    if !Op::NAMES.contains(&op.as_str()) {
        return Err((Some(id), ProtocolError::UnknownOp(op)));
    }
    serde_json::from_value::<Request>(Value::Object(map)).map_err(|e| {
        (
            Some(id),
            ProtocolError::Invalid {
                what: format!("{op} request"),
                reason: e.to_string(),
            },
        )
    })
}

/// The reply on one line.
pub fn decode_reply(line: &[u8]) -> Result<Reply, ProtocolError> {
    let map = versioned_object(line)?;
    let reply: Reply =
        serde_json::from_value(Value::Object(map)).map_err(|e| ProtocolError::Invalid {
            what: "reply".into(),
            reason: e.to_string(),
        })?;
    if reply.ok.is_some() == reply.error.is_some() {
        return Err(ProtocolError::Invalid {
            what: "reply".into(),
            reason: "it must have exactly one of \"ok\" and \"error\"".into(),
        });
    }
    Ok(reply)
}

impl Request {
    pub fn new(id: u64, op: Op) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            op,
        }
    }
}

impl Reply {
    /// A success carrying `body` (an empty object for `()`-like answers).
    pub fn ok<T: Serialize>(id: u64, body: &T) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id: Some(id),
            ok: Some(serde_json::to_value(body).unwrap_or(Value::Null)),
            error: None,
        }
    }

    /// A success with an empty object.
    pub fn empty(id: u64) -> Self {
        Self::ok(id, &serde_json::Map::new())
    }

    pub fn error(id: Option<u64>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            ok: None,
            error: Some(ErrorReply {
                kind,
                message: message.into(),
            }),
        }
    }

    /// The success body as `T`, or the error the agent sent, or a protocol error when the
    /// body is not a `T`.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T, ReplyError> {
        match (self.ok, self.error) {
            (Some(body), _) => serde_json::from_value(body).map_err(|e| {
                ReplyError::Malformed(ProtocolError::Invalid {
                    what: "reply body".into(),
                    reason: e.to_string(),
                })
            }),
            (None, Some(error)) => Err(ReplyError::Agent(error)),
            (None, None) => Err(ReplyError::Malformed(ProtocolError::Invalid {
                what: "reply".into(),
                reason: "neither \"ok\" nor \"error\"".into(),
            })),
        }
    }
}

/// Why a reply does not give what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("{}", .0.message)]
    Agent(ErrorReply),
    #[error("malformed reply from the agent: {0}")]
    Malformed(ProtocolError),
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes, for readers that get
/// bytes in pieces (a non-blocking event loop). Bytes after the last full line stay
/// buffered.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// How far `buf` has been searched for a newline already.
    scanned: usize,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, without its newline; `Ok(None)` when none is complete yet;
    /// [`ProtocolError::LineTooLong`] when [`MAX_LINE`] bytes came without a newline (the
    /// connection cannot be framed any more and should be closed).
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(pos) => {
                let end = self.scanned + pos;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                if line.len() >= MAX_LINE {
                    return Err(ProtocolError::LineTooLong);
                }
                Ok(Some(line))
            }
            None if self.buf.len() >= MAX_LINE => Err(ProtocolError::LineTooLong),
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }

    /// Takes the bytes buffered after the last line (on a stream connection, the first
    /// bytes of the stream that came with the `attach` line).
    pub fn take_rest(&mut self) -> Vec<u8> {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
