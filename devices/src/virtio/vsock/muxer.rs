//! Routes packets between the guest and host Unix streams: the listener host processes
//! connect to, their `CONNECT` handshakes, the streams keyed by (local port, peer port),
//! and the order in which streams get the guest's rx buffers.
//!
//! The muxer has an epoll of its own over the listener and every host stream; the worker
//! polls that epoll's fd next to the queue eventfds, as Firecracker's muxer does. What a
//! snapshot takes from it and gives it is in `snapshot`.

mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::Connection;
use super::packet::{Header, PacketError, HOST_CID, OP_REQUEST, OP_RST, TYPE_STREAM};
use super::unix::{self, Handshake, HandshakeStatus};

/// Streams open at once; more are refused (RST to the guest, close to the host).
pub const MAX_CONNECTIONS: usize = 1024;
/// Host streams that connected but have not finished their `CONNECT` line.
const MAX_HANDSHAKES: usize = 64;
/// RSTs for packets that match no stream wait here for rx buffers. When full, the worker
/// stops taking tx packets, which are the guest's only way to make more.
const MAX_PENDING_RST: usize = 256;
/// Host-initiated streams get local ports from here up, as in Firecracker.
pub const FIRST_HOST_PORT: u32 = 1 << 30;
/// Port numbers stop below VMADDR_PORT_ANY (u32::MAX).
pub const LAST_HOST_PORT: u32 = u32::MAX - 1;
const LISTENER_TOKEN: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    /// The host side's port.
    pub local_port: u32,
    /// The guest side's port.
    pub peer_port: u32,
}

#[derive(Debug)]
struct Slot {
    conn: Connection,
    /// What the stream is registered for in epoll; empty means not registered.
    registered: EventSet,
    /// The stream's key is in `ready`.
    queued: bool,
}

#[derive(Debug)]
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: Arc<UnixListener>,
    epoll: Epoll,
    conns: HashMap<ConnKey, Slot>,
    by_fd: HashMap<RawFd, ConnKey>,
    handshakes: HashMap<RawFd, Handshake>,
    /// Streams with a packet for the guest, served round-robin.
    ready: VecDeque<ConnKey>,
    rsts: VecDeque<Header>,
    next_port: u32,
    /// The listener is out of epoll because accept failed for lack of fds.
    listener_paused: bool,
}

impl Muxer {
    /// `listener` must be non-blocking.
    pub fn new(guest_cid: u64, uds_path: PathBuf, listener: Arc<UnixListener>) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, LISTENER_TOKEN),
        )?;
        Ok(Muxer {
            guest_cid,
            uds_path,
            listener,
            epoll,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            handshakes: HashMap::new(),
            ready: VecDeque::new(),
            rsts: VecDeque::new(),
            next_port: FIRST_HOST_PORT,
            listener_paused: false,
        })
    }

    /// The fd that is readable when a host socket needs attention.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Handles whatever the host sockets reported, without blocking.
    pub fn process_events(&mut self) {
        let mut events = [EpollEvent::default(); 64];
        loop {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            for ev in &events[..n] {
                self.dispatch(ev.data(), ev.event_set());
            }
            if n < events.len() {
                return;
            }
        }
    }

    fn dispatch(&mut self, token: u64, events: EventSet) {
        if token == LISTENER_TOKEN {
            self.accept_all();
            return;
        }
        // Every other token is the fd of a stream we registered; anything else is not ours.
        let Ok(fd) = RawFd::try_from(token) else {
            return;
        };
        if self.handshakes.contains_key(&fd) {
            self.poll_handshake(fd);
        } else if let Some(&key) = self.by_fd.get(&fd) {
            let hup = events.contains(EventSet::HANG_UP);
            if let Some(slot) = self.conns.get_mut(&key) {
                slot.conn.on_host_event(
                    hup || events.contains(EventSet::IN),
                    hup || events.contains(EventSet::OUT),
                    events.contains(EventSet::ERROR),
                );
            }
            self.sync(key);
        }
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // Out of fds (EMFILE/ENFILE): the connection stays in the backlog and
                    // level-triggered epoll would report it forever. Stop watching until
                    // a stream closes.
                    let fd = self.listener.as_raw_fd();
                    let _ = self
                        .epoll
                        .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                    self.listener_paused = true;
                    return;
                }
            };
            let full =
                self.handshakes.len() >= MAX_HANDSHAKES || self.conns.len() >= MAX_CONNECTIONS;
            // Dropping the stream is the refusal: the host sees EOF.
            if full || stream.set_nonblocking(true).is_err() {
                continue;
            }
            let fd = stream.as_raw_fd();
            let ev = EpollEvent::new(EventSet::IN, fd as u64);
            if self.epoll.ctl(ControlOperation::Add, fd, ev).is_ok() {
                self.handshakes.insert(fd, Handshake::new(stream));
            }
        }
    }

    fn poll_handshake(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let port = match hs.poll() {
            HandshakeStatus::Pending => return,
            HandshakeStatus::Invalid => None,
            HandshakeStatus::Port(p) => Some(p),
        };
        let Some(hs) = self.handshakes.remove(&fd) else {
            return;
        };
        let _ = self
            .epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default());
        let Some(peer_port) = port.filter(|_| self.conns.len() < MAX_CONNECTIONS) else {
            self.resume_listener();
            return;
        };
        let local_port = self.alloc_port(peer_port);
        let conn = Connection::host_initiated(hs.stream, local_port, peer_port, self.guest_cid);
        self.insert(
            ConnKey {
                local_port,
                peer_port,
            },
            conn,
        );
    }

    /// Watches the listener again after a stream closed and freed an fd.
    fn resume_listener(&mut self) {
        if !self.listener_paused {
            return;
        }
        let ev = EpollEvent::new(EventSet::IN, LISTENER_TOKEN);
        let fd = self.listener.as_raw_fd();
        if self.epoll.ctl(ControlOperation::Add, fd, ev).is_ok() {
            self.listener_paused = false;
        }
    }

    /// The next free ephemeral host port for a stream to guest port `peer_port`.
    fn alloc_port(&mut self, peer_port: u32) -> u32 {
        loop {
            let port = self.next_port;
            self.next_port = if port >= LAST_HOST_PORT {
                FIRST_HOST_PORT
            } else {
                port + 1
            };
            let key = ConnKey {
                local_port: port,
                peer_port,
            };
            // Terminates: there are far fewer streams (MAX_CONNECTIONS) than ports.
            if !self.conns.contains_key(&key) {
                return port;
            }
        }
    }

    fn insert(&mut self, key: ConnKey, conn: Connection) {
        self.by_fd.insert(conn.stream().as_raw_fd(), key);
        let slot = Slot {
            conn,
            registered: EventSet::empty(),
            queued: false,
        };
        self.conns.insert(key, slot);
        self.sync(key);
    }

    /// Brings a stream's epoll registration and rx queueing in line with its state, and
    /// drops it once it is done.
    fn sync(&mut self, key: ConnKey) {
        let Some(slot) = self.conns.get_mut(&key) else {
            return;
        };
        let fd = slot.conn.stream().as_raw_fd();
        if slot.conn.is_done() {
            if !slot.registered.is_empty() {
                let _ = self
                    .epoll
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
            self.by_fd.remove(&fd);
            self.conns.remove(&key);
            self.resume_listener();
            return;
        }
        let mut want = EventSet::empty();
        want.set(EventSet::IN, slot.conn.wants_read());
        want.set(EventSet::OUT, slot.conn.wants_write());
        if want != slot.registered {
            // An empty interest set is not registered at all: epoll reports hang-ups even
            // with no events requested, and a stream we are not reading would spin.
            let op = if slot.registered.is_empty() {
                ControlOperation::Add
            } else if want.is_empty() {
                ControlOperation::Delete
            } else {
                ControlOperation::Modify
            };
            match self.epoll.ctl(op, fd, EpollEvent::new(want, fd as u64)) {
                Ok(()) => slot.registered = want,
                Err(_) => {
                    let _ = self
                        .epoll
                        .ctl(ControlOperation::Delete, fd, EpollEvent::default());
                    slot.registered = EventSet::empty();
                    slot.conn.kill();
                }
            }
        }
        if slot.conn.has_rx() && !slot.queued {
            slot.queued = true;
            self.ready.push_back(key);
        }
    }

    /// A well-formed packet from the guest's tx queue.
    pub fn handle_guest_packet(&mut self, hdr: &Header, payload: &[u8]) {
        // A packet claiming another source cannot be answered: it is dropped.
        if hdr.src_cid != self.guest_cid {
            return;
        }
        if hdr.dst_cid != HOST_CID || hdr.type_ != TYPE_STREAM {
            self.rst(hdr);
            return;
        }
        let key = ConnKey {
            local_port: hdr.dst_port,
            peer_port: hdr.src_port,
        };
        if let Some(slot) = self.conns.get_mut(&key) {
            slot.conn.on_guest_packet(hdr, payload);
            self.sync(key);
            return;
        }
        match hdr.op {
            OP_REQUEST => self.connect_guest(hdr),
            OP_RST => {}
            _ => self.rst(hdr),
        }
    }

    /// A tx chain that did not hold a valid packet: the stream it names (if any) is reset.
    pub fn handle_bad_packet(&mut self, err: &PacketError) {
        let Some(hdr) = err.header() else {
            return;
        };
        if hdr.src_cid != self.guest_cid {
            return;
        }
        let key = ConnKey {
            local_port: hdr.dst_port,
            peer_port: hdr.src_port,
        };
        match self.conns.get_mut(&key) {
            Some(slot) => {
                slot.conn.kill();
                self.sync(key);
            }
            None => self.rst(hdr),
        }
    }

    /// The guest connects to host port P: Firecracker's `<uds_path>_P` listener.
    fn connect_guest(&mut self, req: &Header) {
        if self.conns.len() >= MAX_CONNECTIONS {
            self.rst(req);
            return;
        }
        match unix::connect_nonblocking(&unix::port_path(&self.uds_path, req.dst_port)) {
            Ok(stream) => {
                let conn = Connection::guest_initiated(stream, req, self.guest_cid);
                let key = ConnKey {
                    local_port: req.dst_port,
                    peer_port: req.src_port,
                };
                self.insert(key, conn);
            }
            Err(_) => self.rst(req),
        }
    }

    fn rst(&mut self, pkt: &Header) {
        if pkt.op == OP_RST || self.rsts.len() >= MAX_PENDING_RST {
            return;
        }
        let mut rst = pkt.rst_reply();
        // Addressed to the guest whatever CID the bad packet named.
        rst.src_cid = HOST_CID;
        rst.dst_cid = self.guest_cid;
        self.rsts.push_back(rst);
    }

    /// The guest's packets must wait: answers to them could not be queued.
    pub fn tx_blocked(&self) -> bool {
        self.rsts.len() >= MAX_PENDING_RST
    }

    pub fn has_rx(&self) -> bool {
        !self.rsts.is_empty() || !self.ready.is_empty()
    }

    /// The next packet for the guest, its payload read into `buf` (at most `buf.len()`).
    pub fn next_rx(&mut self, buf: &mut [u8]) -> Option<(Header, usize)> {
        if let Some(rst) = self.rsts.pop_front() {
            return Some((rst, 0));
        }
        while let Some(key) = self.ready.pop_front() {
            let Some(slot) = self.conns.get_mut(&key) else {
                continue;
            };
            slot.queued = false;
            let pkt = slot.conn.next_rx(buf);
            // Requeues the stream at the back if it has more: round-robin between streams.
            self.sync(key);
            if pkt.is_some() {
                return pkt;
            }
        }
        None
    }

    /// The earliest connect or shutdown deadline of any stream.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.conns.values().filter_map(|s| s.conn.deadline()).min()
    }

    /// Resets the streams whose guest missed a deadline.
    pub fn expire(&mut self, now: Instant) {
        let late: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            if let Some(slot) = self.conns.get_mut(&key) {
                slot.conn.expire(now);
            }
            self.sync(key);
        }
    }
}
