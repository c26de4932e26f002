//! Terminals for `--console-socket` (`process.terminal`, Podman's `-t`). At the container
//! level the runtime makes the pty inside the container and sends its primary end to the
//! socket. At the microVM levels the workload's pty is in the guest (the agent makes it);
//! the caller gets the primary end of a pty made here, whose secondary end is `vmm run`'s
//! stdio, and `vmm run` relays between the two.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::error::RuncError;

/// Connects to the console socket the caller listens on.
pub fn connect(path: &Path) -> Result<OwnedFd, RuncError> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|e| RuncError::io(format!("connect to the console socket {path:?}"), e))
}

/// Makes a pty, sends its primary end to the console socket `socket`, and returns the
/// secondary end in raw mode: the guest's pty does the line discipline (echo, ^C, CR/LF),
/// so this one must pass bytes on as they are.
pub fn host_pty_for(socket: &OwnedFd) -> Result<OwnedFd, RuncError> {
    let fail = |what: &str| {
        let e = io::Error::last_os_error();
        RuncError::io(format!("{what} for the terminal"), e)
    };
    let (mut primary, mut secondary) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the locals; the null name, termios and
    // winsize pointers ask for none of those.
    let r = unsafe {
        libc::openpty(
            &mut primary,
            &mut secondary,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(fail("make a pty"));
    }
    // SAFETY: openpty made both; nothing else owns them.
    let (primary, secondary) = unsafe {
        (
            OwnedFd::from_raw_fd(primary),
            OwnedFd::from_raw_fd(secondary),
        )
    };
    for fd in [&primary, &secondary] {
        // SAFETY: fcntl on a descriptor we own: neither end leaks into other programs.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: termios is plain data, filled by tcgetattr before use.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid terminal descriptor and a writable termios.
    if unsafe { libc::tcgetattr(secondary.as_raw_fd(), &mut termios) } != 0 {
        return Err(fail("read the settings of a pty"));
    }
    // SAFETY: cfmakeraw only edits the termios it is given.
    unsafe { libc::cfmakeraw(&mut termios) };
    // SAFETY: a valid terminal descriptor and an initialized termios.
    if unsafe { libc::tcsetattr(secondary.as_raw_fd(), libc::TCSANOW, &termios) } != 0 {
        return Err(fail("make a pty raw"));
    }
    runtime::sys::linux::send_fd(socket.as_raw_fd(), primary.as_raw_fd(), b"/dev/ptmx")
        .map_err(|e| RuncError::io("send the terminal to the console socket", e))?;
    Ok(secondary)
}

/// For `vmm run`'s `pre_exec`, with the secondary end on its stdin: makes it the
/// controlling terminal of a new session, so the caller's resizes (TIOCSWINSZ on the
/// primary end) reach `vmm run` as SIGWINCH, and the caller's closing it as SIGHUP, as
/// they would reach a workload on the host. A process that leads its process group
/// cannot start a session: it keeps its own, and only the resizes after the first are
/// lost (the first size is read at the start).
pub fn take_as_controlling_terminal() -> io::Result<()> {
    // SAFETY: setsid and ioctl are async-signal-safe, with integer arguments only.
    unsafe {
        if libc::setsid() >= 0 {
            libc::ioctl(0, libc::TIOCSCTTY, 0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn the_host_pty_passes_bytes_as_they_are_both_ways() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let secondary = host_pty_for(&OwnedFd::from(ours)).unwrap();
        let primary = runtime::sys::linux::recv_fd(theirs.as_raw_fd(), 0).unwrap();
        let (mut primary, mut secondary) =
            (std::fs::File::from(primary), std::fs::File::from(secondary));
        // Output: no CR added before LF (the guest's pty did that already).
        secondary.write_all(b"out\n").unwrap();
        let mut buf = [0u8; 16];
        let n = primary.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"out\n");
        // Input: no echo back, no CR turned into LF, ^C passed on as a byte (the guest's
        // pty makes it a SIGINT), and no line buffering.
        primary.write_all(b"in\r\x03").unwrap();
        let n = secondary.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"in\r\x03");
        // Nothing came back: the echo would have been on its way by now.
        std::thread::sleep(std::time::Duration::from_millis(100));
        // SAFETY: fcntl on a descriptor the file owns.
        unsafe { libc::fcntl(primary.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let echoed = primary.read(&mut buf);
        assert!(echoed.is_err(), "the pty echoed input back: {echoed:?}");
    }
}
