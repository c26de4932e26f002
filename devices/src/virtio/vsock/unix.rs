//! The host side's Unix sockets: non-blocking connects to `<uds_path>_<port>`, writes that
//! never raise SIGPIPE, and the `CONNECT <port>\n` line a host process opens a stream with.

use std::io::{self, Read};
use std::mem::{size_of, size_of_val};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Longest handshake line we accept: "CONNECT 4294967295\n" is 19 bytes.
const MAX_HANDSHAKE_LEN: usize = 32;

/// The socket a guest connection to host port `port` reaches (Firecracker's convention).
pub fn port_path(uds_path: &Path, port: u32) -> PathBuf {
    let mut p = uds_path.as_os_str().to_owned();
    p.push(format!("_{port}"));
    PathBuf::from(p)
}

/// Connects to a listening Unix socket without ever blocking: a listener whose backlog is
/// full gives EAGAIN instead of stalling the device's worker thread, as a blocking
/// `UnixStream::connect` would.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    // SAFETY: `sockaddr_un` is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    // AF_UNIX is 1; sa_family_t is the u16 the kernel reads.
    #[allow(clippy::cast_possible_truncation)]
    let family = libc::AF_UNIX as libc::sa_family_t;
    addr.sun_family = family;
    let bytes = path.as_os_str().as_bytes();
    // One byte stays zero: sun_path must be NUL terminated.
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // At most size_of::<sockaddr_un>() (110): the path was checked against sun_path above.
    let len = libc::socklen_t::try_from(size_of::<libc::sa_family_t>() + bytes.len() + 1)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    debug_assert!(len as usize <= size_of_val(&addr));
    // SAFETY: `addr` is a valid sockaddr_un that outlives the call and `len` does not
    // exceed its size; the kernel only reads it.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UnixStream::from(fd))
}

/// Writes to a stream with MSG_NOSIGNAL, so a host peer that went away yields EPIPE
/// instead of a SIGPIPE that would kill the VMM.
pub fn send(stream: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the duration of the call and the
    // kernel only reads it; the fd is owned by `stream`.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Where a host stream's `CONNECT <port>\n` line stands.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// The line is not complete yet.
    Pending,
    /// The host asked for this guest port.
    Port(u32),
    /// Malformed line, EOF or error: the stream should be closed.
    Invalid,
}

/// A host stream that has connected to the listener but not yet named a guest port.
#[derive(Debug)]
pub struct Handshake {
    pub stream: UnixStream,
    line: Vec<u8>,
}

impl Handshake {
    pub fn new(stream: UnixStream) -> Self {
        Handshake {
            stream,
            line: Vec::with_capacity(MAX_HANDSHAKE_LEN),
        }
    }

    /// Reads what has arrived of the line. One byte at a time, because bytes after the
    /// newline are stream data for the guest and must stay in the socket.
    pub fn poll(&mut self) -> HandshakeStatus {
        let mut byte = [0u8; 1];
        loop {
            match (&self.stream).read(&mut byte) {
                Ok(0) => return HandshakeStatus::Invalid,
                Ok(_) if byte[0] == b'\n' => {
                    return match parse_connect(&self.line) {
                        Some(port) => HandshakeStatus::Port(port),
                        None => HandshakeStatus::Invalid,
                    };
                }
                Ok(_) if self.line.len() + 1 >= MAX_HANDSHAKE_LEN => {
                    return HandshakeStatus::Invalid
                }
                Ok(_) => self.line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return HandshakeStatus::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return HandshakeStatus::Invalid,
            }
        }
    }
}

/// Parses `CONNECT <port>` (without the newline; a trailing CR from a telnet-like client
/// is tolerated).
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let line = std::str::from_utf8(line).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let port = line.strip_prefix("CONNECT ")?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parse_connect_accepts_decimal_port() {
        assert_eq!(parse_connect(b"CONNECT 52"), Some(52));
        assert_eq!(parse_connect(b"CONNECT 4294967295\r"), Some(u32::MAX));
    }

    #[test]
    fn parse_connect_rejects_malformed_lines() {
        for line in [
            &b"CONNECT"[..],
            b"CONNECT ",
            b"connect 52",
            b"CONNECT +52",
            b"CONNECT 52 53",
            b"CONNECT 4294967296",
            b"\xff",
        ] {
            assert_eq!(parse_connect(line), None, "{line:?}");
        }
    }

    #[test]
    fn handshake_leaves_bytes_after_newline_in_the_socket() {
        let (mut host, dev) = UnixStream::pair().unwrap();
        dev.set_nonblocking(true).unwrap();
        let mut hs = Handshake::new(dev);
        host.write_all(b"CONNECT 7").unwrap();
        assert_eq!(hs.poll(), HandshakeStatus::Pending);
        host.write_all(b"7\nhello").unwrap();
        assert_eq!(hs.poll(), HandshakeStatus::Port(77));
        let mut rest = [0u8; 5];
        (&hs.stream).read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"hello");
    }

    #[test]
    fn handshake_rejects_overlong_line() {
        let (mut host, dev) = UnixStream::pair().unwrap();
        dev.set_nonblocking(true).unwrap();
        let mut hs = Handshake::new(dev);
        host.write_all(&[b'C'; 64]).unwrap();
        assert_eq!(hs.poll(), HandshakeStatus::Invalid);
    }

    #[test]
    fn port_path_appends_underscore_and_port() {
        assert_eq!(
            port_path(Path::new("/tmp/v.sock"), 52),
            PathBuf::from("/tmp/v.sock_52")
        );
    }

    #[test]
    fn connect_nonblocking_to_missing_socket_fails() {
        let err = connect_nonblocking(Path::new("/nonexistent/vsock_test_sock")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
