//! The byte queue between a source and a destination descriptor: replies waiting for a
//! slow host, a workload's output waiting for its stream socket, a host's stdin waiting
//! for the workload's pipe. Bounded by [`RELAY_CAPACITY`]: the owner stops reading its
//! source while the queue is full, so a peer that does not read makes the other side wait
//! (the pipe fills, the workload blocks) instead of making the agent's memory grow.

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys;

/// The most bytes a relay holds before it stops reading its source.
pub const RELAY_CAPACITY: usize = 64 << 10;

/// What one read from a source gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// This many bytes were appended.
    Bytes(usize),
    /// The source is at end of file.
    Eof,
    /// Nothing to read right now (EAGAIN), or no room in the queue.
    Nothing,
}

/// Bytes read but not yet written, oldest first.
#[derive(Debug, Default)]
pub struct ByteQueue {
    buf: Vec<u8>,
    /// How many bytes at the front of `buf` are written already.
    start: usize,
}

impl ByteQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True while there is room to read more from the source.
    pub fn has_room(&self) -> bool {
        self.len() < RELAY_CAPACITY
    }

    /// Queues bytes that must go out whatever the capacity (a reply line, the first
    /// stream bytes that came with an `attach` line).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads once from `src` into the free room (at most up to [`RELAY_CAPACITY`]).
    pub fn fill_from(&mut self, src: BorrowedFd<'_>) -> io::Result<Filled> {
        let room = RELAY_CAPACITY.saturating_sub(self.len());
        if room == 0 {
            return Ok(Filled::Nothing);
        }
        self.compact();
        let old_len = self.buf.len();
        self.buf.resize(old_len + room, 0);
        let result = sys::read(src, &mut self.buf[old_len..]);
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(old_len + n);
        match result {
            Ok(0) => Ok(Filled::Eof),
            Ok(n) => Ok(Filled::Bytes(n)),
            Err(e) if is_transient(&e) => Ok(Filled::Nothing),
            Err(e) => Err(e),
        }
    }

    /// Writes once to `dst` what it takes; returns how many bytes left the queue (0 when
    /// the destination is full: EAGAIN).
    pub fn drain_to(&mut self, dst: BorrowedFd<'_>) -> io::Result<usize> {
        if self.is_empty() {
            return Ok(0);
        }
        match sys::write(dst, &self.buf[self.start..]) {
            Ok(n) => {
                self.start += n;
                if self.is_empty() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(n)
            }
            Err(e) if is_transient(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Drops everything queued (the destination is gone).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Moves the unwritten bytes to the front, so the buffer does not creep forward.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// EAGAIN and EINTR: try again when poll says so.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, OwnedFd};

    use super::*;

    fn nonblocking_pipe() -> (OwnedFd, OwnedFd) {
        let (r, w) = sys::pipe().unwrap();
        sys::set_nonblocking(r.as_fd()).unwrap();
        sys::set_nonblocking(w.as_fd()).unwrap();
        (r, w)
    }

    #[test]
    fn bytes_pass_through_in_order() {
        let (src_r, src_w) = nonblocking_pipe();
        let (dst_r, dst_w) = nonblocking_pipe();
        let mut queue = ByteQueue::new();
        queue.push(b"reply\n");
        sys::write(src_w.as_fd(), b"data").unwrap();
        assert_eq!(queue.fill_from(src_r.as_fd()).unwrap(), Filled::Bytes(4));
        assert_eq!(queue.drain_to(dst_w.as_fd()).unwrap(), 10);
        let mut out = [0u8; 32];
        let n = sys::read(dst_r.as_fd(), &mut out).unwrap();
        assert_eq!(&out[..n], b"reply\ndata");
        assert!(queue.is_empty());
    }

    #[test]
    fn empty_source_is_nothing_and_closed_source_is_eof() {
        let (r, w) = nonblocking_pipe();
        let mut queue = ByteQueue::new();
        assert_eq!(queue.fill_from(r.as_fd()).unwrap(), Filled::Nothing);
        drop(w);
        assert_eq!(queue.fill_from(r.as_fd()).unwrap(), Filled::Eof);
    }

    #[test]
    fn a_full_queue_stops_reading_its_source() {
        let (r, w) = nonblocking_pipe();
        let chunk = vec![7u8; 16 << 10];
        let mut queue = ByteQueue::new();
        let mut total = 0;
        loop {
            // When the pipe is full this write fails (EAGAIN); the read below empties it.
            let _ = sys::write(w.as_fd(), &chunk);
            match queue.fill_from(r.as_fd()).unwrap() {
                Filled::Bytes(n) => total += n,
                Filled::Nothing => break,
                Filled::Eof => panic!("the writer is still open"),
            }
        }
        assert_eq!(total, RELAY_CAPACITY);
        assert_eq!(queue.len(), RELAY_CAPACITY);
        assert!(!queue.has_room());
    }

    #[test]
    fn a_full_destination_keeps_the_bytes_queued() {
        let (_dst_r, dst_w) = nonblocking_pipe();
        let mut queue = ByteQueue::new();
        queue.push(&vec![1u8; 1 << 20]);
        let mut written = 0;
        loop {
            match queue.drain_to(dst_w.as_fd()).unwrap() {
                0 => break,
                n => written += n,
            }
        }
        assert!(written > 0 && written < 1 << 20, "{written}");
        assert_eq!(queue.len(), (1 << 20) - written);
    }

    #[test]
    fn a_vanished_reader_is_an_error_not_a_signal() {
        // SAFETY: setting SIGPIPE to ignored, as the agent does, has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let (r, w) = nonblocking_pipe();
        drop(r);
        let mut queue = ByteQueue::new();
        queue.push(b"x");
        let err = queue.drain_to(w.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
        assert_eq!(queue.len(), 1);
    }
}
