//! Where the host's connections come from: a vsock socket on [`AGENT_PORT`] in a guest, or
//! a Unix socket in test mode. A host reaches the guest through `vmm`'s Firecracker-style
//! vsock socket, where it writes `CONNECT <port>` and reads `OK <port>` first; in test mode
//! the agent plays that part itself ([`answer_connect`]), so the host's code is the same.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use agent_protocol::protocol::AGENT_PORT;

use crate::sys;

/// Connections waiting to be accepted; the host opens a handful at a time.
const BACKLOG: libc::c_int = 64;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("create the {what} socket")]
    Socket {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("remove the stale socket {path:?}")]
    Stale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unix socket path {path:?} is longer than a sockaddr_un holds")]
    PathTooLong { path: PathBuf },
    #[error("bind {what}")]
    Bind {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// The listening socket, non-blocking.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    /// The socket file of test mode, removed when the agent exits.
    unix_path: Option<PathBuf>,
}

impl Listener {
    /// vsock, any CID (the guest's own), port [`AGENT_PORT`].
    pub fn vsock() -> Result<Self, ListenError> {
        let socket_err = |source| ListenError::Socket {
            what: "vsock",
            source,
        };
        let fd = sys::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_NONBLOCK)
            .map_err(socket_err)?;
        // SAFETY: sockaddr_vm is plain data; all-zero is valid before the fields are set.
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_cid = libc::VMADDR_CID_ANY;
        addr.svm_port = AGENT_PORT;
        let bind_err = |source| ListenError::Bind {
            what: format!("vsock port {AGENT_PORT}"),
            source,
        };
        sys::bind(fd.as_fd(), &addr).map_err(bind_err)?;
        sys::listen(fd.as_fd(), BACKLOG).map_err(bind_err)?;
        Ok(Self {
            fd,
            unix_path: None,
        })
    }

    /// A Unix stream socket at `path`, replacing a stale socket file left by an earlier run.
    pub fn unix(path: &Path) -> Result<Self, ListenError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(ListenError::Stale {
                    path: path.to_owned(),
                    source: e,
                })
            }
            _ => {}
        }
        let fd = sys::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK).map_err(
            |source| ListenError::Socket {
                what: "unix",
                source,
            },
        )?;
        // SAFETY: sockaddr_un is plain data; all-zero is valid before the fields are set.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        // One byte stays zero: the path is NUL-terminated.
        if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
            return Err(ListenError::PathTooLong {
                path: path.to_owned(),
            });
        }
        for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        let bind_err = |source| ListenError::Bind {
            what: format!("{path:?}"),
            source,
        };
        sys::bind(fd.as_fd(), &addr).map_err(bind_err)?;
        sys::listen(fd.as_fd(), BACKLOG).map_err(bind_err)?;
        Ok(Self {
            fd,
            unix_path: Some(path.to_owned()),
        })
    }

    /// True in test mode, where each connection starts with the `CONNECT` handshake.
    pub fn emulates_vsock_handshake(&self) -> bool {
        self.unix_path.is_some()
    }

    /// The next pending connection (non-blocking, close-on-exec), `Ok(None)` when none.
    pub fn accept(&self) -> io::Result<Option<OwnedFd>> {
        match sys::accept(self.fd.as_fd()) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if crate::relay::is_transient(&e) => Ok(None),
            // The connection went away before it was accepted: not the listener's fault.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The answer to a connection's handshake line (`CONNECT <port>`, newline stripped), as
/// `vmm`'s vsock device gives it: `OK <port>\n` for the agent's port, `None` (close the
/// connection) for anything else.
pub fn answer_connect(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let port: u32 = text
        .strip_prefix("CONNECT ")?
        .trim_end_matches('\r')
        .parse()
        .ok()?;
    (port == AGENT_PORT).then(|| format!("OK {port}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_the_agent_port_is_answered_ok() {
        assert_eq!(
            answer_connect(b"CONNECT 1024").as_deref(),
            Some("OK 1024\n")
        );
    }

    #[test]
    fn connect_to_another_port_or_garbage_is_refused() {
        assert_eq!(answer_connect(b"CONNECT 1025"), None);
        assert_eq!(answer_connect(b"CONNECT"), None);
        assert_eq!(answer_connect(b"CONNECT x"), None);
        assert_eq!(answer_connect(b"connect 1024"), None);
        assert_eq!(answer_connect(b"{\"v\":1}"), None);
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let path = std::env::temp_dir().join(format!("vmm-agent-stale-{}", std::process::id()));
        std::fs::write(&path, b"left over").unwrap();
        let listener = Listener::unix(&path).unwrap();
        assert!(listener.emulates_vsock_handshake());
        drop(listener);
        assert!(
            !path.exists(),
            "the socket file is removed with the listener"
        );
    }
}
