//! A workload's terminal in the guest: the runtime makes the pty in the workload's own
//! devpts and sends its primary end back on a socket pair (as runc sends it to a console
//! socket); the agent relays that primary end on the workload's stdin and stdout streams,
//! and keeps a copy to resize it. The host side is a terminal too (`vmm-runc` hands its
//! caller a pty of its own), so what the user sees is this pty's line discipline: echo,
//! ^C, CR/LF.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use agent_protocol::protocol::StreamKind;
use runtime::launch::Stdio;

use crate::connection::ConnId;
use crate::sys;

/// The agent's end of the socket pair the pty's primary end comes back on.
pub struct PendingTerminal {
    socket: OwnedFd,
}

/// A workload's stdio for a terminal: none of the three (the pty's secondary end takes
/// their place in the workload), and the socket its primary end is sent on.
pub fn terminal_stdio() -> io::Result<(Stdio, PendingTerminal)> {
    let mut fds = [0; 2];
    // SAFETY: a writable array of two ints, as socketpair expects.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair made both; nothing else owns them.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let stdio = Stdio {
        console_socket: Some(theirs),
        ..Stdio::default()
    };
    Ok((stdio, PendingTerminal { socket: ours }))
}

impl PendingTerminal {
    /// Once the workload was spawned (it sent the primary end before it exec'd): the
    /// primary end for resizing, and the relay ends of the attached streams: stdin and
    /// stdout on the primary end, stderr on a pipe that is at end of file already (the
    /// pty carries both outputs).
    pub fn connect(
        self,
        attached: &[(StreamKind, ConnId)],
    ) -> io::Result<(OwnedFd, Vec<(ConnId, OwnedFd)>)> {
        // Never blocks the agent: the descriptor is there, or the spawn would have failed.
        let primary = runtime::sys::linux::recv_fd(self.socket.as_raw_fd(), libc::MSG_DONTWAIT)?;
        sys::set_nonblocking(primary.as_fd())?;
        let mut ours = Vec::new();
        for &(kind, conn) in attached {
            let end = match kind {
                StreamKind::Stdin | StreamKind::Stdout => primary.try_clone()?,
                StreamKind::Stderr => {
                    let (read_end, write_end) = sys::pipe()?;
                    drop(write_end);
                    read_end
                }
            };
            ours.push((conn, end));
        }
        Ok((primary, ours))
    }
}
