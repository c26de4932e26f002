//! One stream between a guest port and a host Unix stream: Firecracker's connection state
//! machine, the guest data waiting for a slow host reader, and the packets the stream owes
//! the guest. Knows nothing of epoll or queues: the muxer asks what it wants and feeds it.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::credit::Credit;
use super::packet::{
    Header, HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW,
    OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};
use super::unix;

/// Receive buffer we advertise per stream: the most guest data we ever hold for a host
/// reader that is not keeping up.
pub const CONN_BUF_SIZE: u32 = 256 * 1024;
/// How long a guest may take to answer a host-initiated REQUEST.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a guest may take to RST after we sent SHUTDOWN.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Host-initiated: a REQUEST is owed or sent; waiting for the guest's RESPONSE.
    Connecting {
        deadline: Instant,
    },
    Established,
    /// The host stream reached EOF; we told the guest SHUTDOWN and wait for its RST.
    Closing {
        deadline: Instant,
    },
    /// Over: only an owed RST remains to be sent before the muxer drops it.
    Dead,
}

/// Control packets owed to the guest; each is sent once, so this bounds what a stream
/// can queue no matter what the guest does.
#[derive(Debug, Default)]
struct Owed {
    request: bool,
    response: bool,
    credit_update: bool,
    credit_request: bool,
    rst: bool,
}

#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    local_port: u32,
    peer_port: u32,
    guest_cid: u64,
    state: State,
    credit: Credit,
    /// Guest data the host stream has not taken yet (bounded by `CONN_BUF_SIZE` through
    /// the credit check, plus the short "OK" line).
    to_host: VecDeque<u8>,
    /// Bytes at the front of `to_host` that are ours (the "OK" line), not guest payload,
    /// and so not counted as forwarded credit.
    control_bytes: usize,
    owed: Owed,
    /// epoll said the host stream has data and we have not drained it yet; while set we
    /// don't ask epoll again (level-triggered polling would spin).
    host_readable: bool,
    peer_shutdown: u32,
    write_shut: bool,
    /// We already asked the guest for credit since it last gave some.
    credit_requested: bool,
}

impl Connection {
    /// A host process connected and asked for guest port `peer_port`.
    pub fn host_initiated(
        stream: UnixStream,
        local_port: u32,
        peer_port: u32,
        guest_cid: u64,
    ) -> Self {
        let mut c = Self::new(stream, local_port, peer_port, guest_cid);
        c.state = State::Connecting {
            deadline: Instant::now() + CONNECT_TIMEOUT,
        };
        c.owed.request = true;
        c
    }

    /// The guest's REQUEST `req` reached a host listener through `stream`.
    pub fn guest_initiated(stream: UnixStream, req: &Header, guest_cid: u64) -> Self {
        let mut c = Self::new(stream, req.dst_port, req.src_port, guest_cid);
        c.credit.update_peer(req.buf_alloc, req.fwd_cnt);
        c.owed.response = true;
        c
    }

    fn new(stream: UnixStream, local_port: u32, peer_port: u32, guest_cid: u64) -> Self {
        Connection {
            stream,
            local_port,
            peer_port,
            guest_cid,
            state: State::Established,
            credit: Credit::new(CONN_BUF_SIZE),
            to_host: VecDeque::new(),
            control_bytes: 0,
            owed: Owed::default(),
            host_readable: false,
            peer_shutdown: 0,
            write_shut: false,
            credit_requested: false,
        }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Nothing more to do: the muxer drops it, closing the host stream.
    pub fn is_done(&self) -> bool {
        self.state == State::Dead && !self.owed.rst
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Connecting { deadline } | State::Closing { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Resets the stream if its guest missed a deadline.
    pub fn expire(&mut self, now: Instant) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.kill();
        }
    }

    /// Ends the stream with a RST to the guest; the host stream gets closed.
    pub fn kill(&mut self) {
        self.state = State::Dead;
        self.owed = Owed {
            rst: true,
            ..Owed::default()
        };
        self.to_host.clear();
    }

    /// Whether to poll the host stream for reading.
    pub fn wants_read(&self) -> bool {
        !self.host_readable && self.can_send_data()
    }

    /// Whether to poll the host stream for writing.
    pub fn wants_write(&self) -> bool {
        self.state != State::Dead && !self.to_host.is_empty()
    }

    /// Whether `next_rx` has a packet for the guest.
    pub fn has_rx(&self) -> bool {
        let o = &self.owed;
        o.rst
            || o.request
            || o.response
            || o.credit_update
            || o.credit_request
            || (self.host_readable && self.can_send_data())
    }

    fn can_send_data(&self) -> bool {
        self.state == State::Established
            && self.peer_shutdown & SHUTDOWN_RCV == 0
            && self.credit.peer_free() > 0
    }

    /// epoll reported the host stream; a hang-up counts as readable (the read gets EOF)
    /// and writable (the write gets EPIPE), so the state machine learns of it either way.
    pub fn on_host_event(&mut self, readable: bool, writable: bool, error: bool) {
        if error {
            self.kill();
            return;
        }
        if writable {
            self.flush();
        }
        if readable && self.state != State::Dead {
            self.host_readable = true;
        }
        self.refresh();
    }

    /// A packet from the guest for this stream.
    pub fn on_guest_packet(&mut self, hdr: &Header, payload: &[u8]) {
        self.credit.update_peer(hdr.buf_alloc, hdr.fwd_cnt);
        if self.credit.peer_free() > 0 {
            self.credit_requested = false;
        }
        match (self.state, hdr.op) {
            (State::Dead, _) => {}
            (_, OP_RST) => {
                self.state = State::Dead;
                self.owed = Owed::default();
            }
            (State::Connecting { .. }, OP_RESPONSE) => {
                self.state = State::Established;
                let ok = format!("OK {}\n", self.local_port);
                self.control_bytes += ok.len();
                self.to_host.extend(ok.bytes());
                self.flush();
            }
            (State::Established, OP_RW) => self.on_guest_data(payload),
            (State::Established, OP_SHUTDOWN) => {
                self.peer_shutdown |= hdr.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                self.after_flush();
            }
            (State::Established | State::Closing { .. }, OP_CREDIT_REQUEST) => {
                self.owed.credit_update = true;
            }
            (State::Established | State::Closing { .. }, OP_CREDIT_UPDATE) => {}
            // Firecracker's rule: once we are closing, only the guest's RST matters, but a
            // SHUTDOWN crossing ours means it is closing too.
            (State::Closing { .. }, OP_SHUTDOWN) => self.kill(),
            (State::Closing { .. }, _) => {}
            // A REQUEST on an open stream, data before RESPONSE, unknown ops.
            _ => self.kill(),
        }
        self.refresh();
    }

    fn on_guest_data(&mut self, payload: &[u8]) {
        if self.peer_shutdown & SHUTDOWN_SEND != 0
            || !u32::try_from(payload.len()).is_ok_and(|n| self.credit.received(n).is_ok())
        {
            self.kill();
            return;
        }
        let mut rest = payload;
        // Straight to the host when nothing is queued: no copy in the common case.
        if self.to_host.is_empty() {
            match unix::send(&self.stream, payload) {
                Ok(n) => {
                    self.credit.forwarded(credit_count(n));
                    rest = &payload[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.kill();
                    return;
                }
            }
        }
        self.to_host.extend(rest);
        self.after_flush();
    }

    /// Writes queued guest data to the host stream until it would block.
    fn flush(&mut self) {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            match unix::send(&self.stream, front) {
                Ok(n) => {
                    let ours = n.min(self.control_bytes);
                    self.control_bytes -= ours;
                    self.credit.forwarded(credit_count(n - ours));
                    self.to_host.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.kill();
                    return;
                }
            }
        }
        self.after_flush();
    }

    /// Carries out a guest SHUTDOWN once everything it sent before has reached the host.
    fn after_flush(&mut self) {
        if self.state != State::Established || !self.to_host.is_empty() {
            return;
        }
        if self.peer_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND {
            // Linux completes close() when the peer answers its SHUTDOWN with a RST.
            self.kill();
        } else if self.peer_shutdown & SHUTDOWN_SEND != 0 && !self.write_shut {
            let _ = self.stream.shutdown(Shutdown::Write);
            self.write_shut = true;
        }
    }

    /// Decides which credit packets are owed after the counters moved.
    fn refresh(&mut self) {
        if !matches!(self.state, State::Established | State::Closing { .. }) {
            return;
        }
        if self.credit.needs_update() {
            self.owed.credit_update = true;
        }
        let starved = self.state == State::Established
            && self.host_readable
            && self.peer_shutdown & SHUTDOWN_RCV == 0
            && self.credit.peer_free() == 0;
        if starved && !self.credit_requested {
            self.owed.credit_request = true;
            self.credit_requested = true;
        }
    }

    /// The next packet for the guest, with any payload read into `buf` (sized to the rx
    /// buffer; never more than the guest's credit is read).
    pub fn next_rx(&mut self, buf: &mut [u8]) -> Option<(Header, usize)> {
        if self.owed.rst {
            self.owed.rst = false;
            return Some((self.header(OP_RST, 0, 0), 0));
        }
        if self.state == State::Dead {
            return None;
        }
        if std::mem::take(&mut self.owed.request) {
            return Some((self.header(OP_REQUEST, 0, 0), 0));
        }
        if std::mem::take(&mut self.owed.response) {
            return Some((self.header(OP_RESPONSE, 0, 0), 0));
        }
        if let Some(pkt) = self.read_host(buf) {
            return Some(pkt);
        }
        if std::mem::take(&mut self.owed.credit_update) {
            return Some((self.header(OP_CREDIT_UPDATE, 0, 0), 0));
        }
        if std::mem::take(&mut self.owed.credit_request) {
            return Some((self.header(OP_CREDIT_REQUEST, 0, 0), 0));
        }
        None
    }

    fn read_host(&mut self, buf: &mut [u8]) -> Option<(Header, usize)> {
        if !(self.host_readable && self.can_send_data()) {
            return None;
        }
        let want = buf.len().min(self.credit.peer_free() as usize);
        if want == 0 {
            return None;
        }
        match (&self.stream).read(&mut buf[..want]) {
            Ok(0) => {
                self.host_readable = false;
                self.state = State::Closing {
                    deadline: Instant::now() + SHUTDOWN_TIMEOUT,
                };
                let flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
                Some((self.header(OP_SHUTDOWN, flags, 0), 0))
            }
            Ok(n) => {
                // A short read drained the socket; epoll tells us when more arrives.
                if n < want {
                    self.host_readable = false;
                }
                // n <= want <= peer_free(), a u32.
                #[allow(clippy::cast_possible_truncation)]
                let len = n as u32;
                self.credit.sent(len);
                // This packet carries our fwd_cnt, so a pending update is covered.
                self.owed.credit_update = false;
                self.refresh();
                Some((self.header(OP_RW, 0, len), n))
            }
            // Level-triggered epoll reports the stream again if data is still there.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                self.host_readable = false;
                None
            }
            Err(_) => {
                self.kill();
                self.owed.rst = false;
                Some((self.header(OP_RST, 0, 0), 0))
            }
        }
    }

    fn header(&mut self, op: u16, flags: u32, len: u32) -> Header {
        let (buf_alloc, fwd_cnt) = self.credit.stamp();
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }
}

/// Bytes of guest data that reached the host, as the credit counters count them. The count is
/// at most what `to_host` or one packet holds (within CONN_BUF_SIZE); and the counters are
/// free-running u32s that wrap (virtio 1.2 §5.10.6.3), so even a larger count would be
/// counted modulo 2^32, as the spec has it.
#[allow(clippy::cast_possible_truncation)]
fn credit_count(n: usize) -> u32 {
    n as u32
}
