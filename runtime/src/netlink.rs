//! Just enough rtnetlink (the kernel's `NETLINK_ROUTE` protocol) for `--net link`: create a
//! veth pair whose peer goes straight into another process's network namespace, and delete
//! a link by name. One request per socket, blocking, each answered by the kernel's ACK.
//!
//! Not a crate: `rtnetlink` (over `netlink-packet-route`) is built on tokio and futures, an
//! async runtime for two synchronous requests that a single-threaded process makes between
//! `clone` and releasing its child. What those requests need is a header, an `ifinfomsg` and
//! a few nested attributes, built by [`LinkRequest`] below.
//!
//! The wire format (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h), all
//! in native byte order:
//!
//! ```text
//! nlmsghdr   len u32 | type u16 | flags u16 | seq u32 | port id u32          (16 bytes)
//! ifinfomsg  family u8 | pad u8 | type u16 | index i32 | flags u32 | change u32  (16)
//! rtattr     len u16 | type u16 | payload, padded to 4 bytes      (len excludes the pad)
//! ```
//!
//! A nested attribute's payload is more attributes. The veth peer is one: `VETH_INFO_PEER`
//! carries an `ifinfomsg` of its own followed by the peer's attributes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// Message types and flags (linux/rtnetlink.h, linux/netlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// In an ACK: the request was not copied back (we ask for that with `NETLINK_CAP_ACK`).
const NLM_F_CAPPED: u16 = 0x100;
/// In an ACK: extended-ACK attributes follow the error.
const NLM_F_ACK_TLVS: u16 = 0x200;

// Link attributes (linux/if_link.h, linux/veth.h).
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// Extended-ACK attribute: the kernel's text for the error (linux/netlink.h).
const NLMSGERR_ATTR_MSG: u16 = 1;

const NLMSGHDR_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
/// Where `ifi_index` lies in an `ifinfomsg` (after family, padding and type).
const IFINDEX_OFFSET: usize = 4;
const RTA_HDRLEN: usize = 4;
/// The one sequence number: each socket carries a single request.
const SEQ: u32 = 1;

/// Rounds up to the 4-byte alignment of netlink messages and attributes.
fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A link request being built: header, `ifinfomsg`, then attributes.
struct LinkRequest {
    buf: Vec<u8>,
}

impl LinkRequest {
    /// A request of type `kind` (`RTM_NEWLINK`, ...) with `flags` besides REQUEST|ACK, for
    /// any link (an empty `ifinfomsg`: the attributes say which).
    fn new(kind: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&SEQ.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id 0: the kernel
        let mut request = Self { buf };
        request.ifinfomsg();
        request
    }

    /// An all-zero `ifinfomsg`: any family, no index, no flags to change.
    fn ifinfomsg(&mut self) {
        self.buf.extend_from_slice(&[0; IFINFOMSG_LEN]);
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = RTA_HDRLEN + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align(self.buf.len()), 0);
    }

    /// A NUL-terminated string attribute.
    fn attr_str(&mut self, kind: u16, value: &str) {
        let mut payload = value.as_bytes().to_vec();
        payload.push(0);
        self.attr(kind, &payload);
    }

    /// A nested attribute whose payload `fill` writes; its length covers everything written.
    fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Self)) {
        let start = self.buf.len();
        self.attr(kind, &[]);
        fill(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// `ip link add HOST type veth peer name PEER netns PID`: a veth pair whose end `host` stays
/// in this network namespace and whose end `peer` is made directly in the network namespace
/// of process `pid`. Both ends start down. Fails with EEXIST if `host` exists here.
pub fn create_veth(host: &str, peer: &str, pid: i32) -> io::Result<()> {
    check_name(host)?;
    check_name(peer)?;
    exchange(&veth_request(host, peer, pid))?.into_result()
}

/// The `RTM_NEWLINK` request of [`create_veth`].
fn veth_request(host: &str, peer: &str, pid: i32) -> Vec<u8> {
    let mut request = LinkRequest::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    request.attr_str(IFLA_IFNAME, host);
    request.nested(IFLA_LINKINFO, |r| {
        r.attr_str(IFLA_INFO_KIND, "veth");
        r.nested(IFLA_INFO_DATA, |r| {
            r.nested(VETH_INFO_PEER, |r| {
                r.ifinfomsg();
                r.attr_str(IFLA_IFNAME, peer);
                r.attr(IFLA_NET_NS_PID, &(pid as u32).to_ne_bytes());
            });
        });
    });
    request.finish()
}

/// `ip link set NAME netns PID name NEW_NAME`: moves the existing interface `name` (a
/// microVM's NIC) into the network namespace of process `pid`, renamed `new_name` there.
/// It arrives down and without addresses. Fails with ENODEV if `name` is not here.
pub fn move_link(name: &str, new_name: &str, pid: i32) -> io::Result<()> {
    check_name(name)?;
    check_name(new_name)?;
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: `c_name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    exchange(&move_request(index, new_name, pid))?.into_result()
}

/// The `RTM_NEWLINK` request of [`move_link`]: the link by its index (its name is the
/// new one, which may be taken here), the target namespace by a process in it.
fn move_request(index: u32, new_name: &str, pid: i32) -> Vec<u8> {
    let mut request = LinkRequest::new(RTM_NEWLINK, 0);
    let at = NLMSGHDR_LEN + IFINDEX_OFFSET;
    request.buf[at..at + 4].copy_from_slice(&index.to_ne_bytes());
    request.attr_str(IFLA_IFNAME, new_name);
    request.attr(IFLA_NET_NS_PID, &(pid as u32).to_ne_bytes());
    request.finish()
}

/// `ip link del NAME` in this network namespace; a link that is not there is no error.
/// Deleting either end of a veth pair deletes both.
pub fn delete_link(name: &str) -> io::Result<()> {
    check_name(name)?;
    let mut request = LinkRequest::new(RTM_DELLINK, 0);
    request.attr_str(IFLA_IFNAME, name);
    let ack = exchange(&request.finish())?;
    if ack.errno == libc::ENODEV {
        return Ok(());
    }
    ack.into_result()
}

/// An interface name as the kernel accepts it: 1 to 15 bytes, no `/`, `:`, blank or NUL.
fn check_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    Ok(())
}

/// The kernel's answer to a request: errno 0 (done) or the error, with the kernel's text
/// for it when it gave one (extended ACK).
#[derive(Debug, PartialEq, Eq)]
struct Ack {
    errno: i32,
    message: Option<String>,
}

impl Ack {
    fn into_result(self) -> io::Result<()> {
        if self.errno == 0 {
            return Ok(());
        }
        let os = io::Error::from_raw_os_error(self.errno);
        Err(match self.message {
            Some(text) => io::Error::new(os.kind(), format!("{os}: {text}")),
            None => os,
        })
    }
}

/// Sends `request` on a new `NETLINK_ROUTE` socket and reads the kernel's ACK.
fn exchange(request: &[u8]) -> io::Result<Ack> {
    // SAFETY: socket takes integers only.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // Ask for the kernel's error text, and for an ACK without a copy of the request. An
    // older kernel refuses the options, and answers with a plain ACK: nothing is lost.
    for option in [libc::NETLINK_EXT_ACK, libc::NETLINK_CAP_ACK] {
        let on: libc::c_int = 1;
        // SAFETY: the kernel reads one int from `on`, which outlives the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                option,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    // SAFETY: sockaddr_nl is plain data; all-zero is port id 0 (the kernel), no groups.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `request` and `kernel` are live for the call, which only reads them.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if let Some(ack) = find_ack(&buf[..n as usize])? {
            return Ok(ack);
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The ACK for our request among the messages of one datagram, if it is there.
fn find_ack(datagram: &[u8]) -> io::Result<Option<Ack>> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink reply");
    let mut at = 0;
    while at + NLMSGHDR_LEN <= datagram.len() {
        let len = u32_at(datagram, at).ok_or_else(malformed)? as usize;
        if len < NLMSGHDR_LEN || at + len > datagram.len() {
            return Err(malformed());
        }
        let msg = &datagram[at..at + len];
        let kind = u16_at(msg, 4).ok_or_else(malformed)?;
        let flags = u16_at(msg, 6).ok_or_else(malformed)?;
        let seq = u32_at(msg, 8).ok_or_else(malformed)?;
        if kind == NLMSG_ERROR && seq == SEQ {
            return parse_error(msg, flags).map(Some).ok_or_else(malformed);
        }
        at += align(len);
    }
    Ok(None)
}

/// An `NLMSG_ERROR` message: `nlmsghdr`, then `nlmsgerr` (a negative errno, or 0 for an
/// ACK, then the request's header, and the request itself unless capped), then with
/// `NLM_F_ACK_TLVS` the extended-ACK attributes.
fn parse_error(msg: &[u8], flags: u16) -> Option<Ack> {
    let error = u32_at(msg, NLMSGHDR_LEN)? as i32;
    let echoed_at = NLMSGHDR_LEN + 4;
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        NLMSGHDR_LEN
    } else {
        u32_at(msg, echoed_at)? as usize
    };
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let mut at = align(echoed_at + echoed_len);
        while at + RTA_HDRLEN <= msg.len() {
            let len = u16_at(msg, at)? as usize;
            let kind = u16_at(msg, at + 2)?;
            if len < RTA_HDRLEN || at + len > msg.len() {
                break;
            }
            if kind == NLMSGERR_ATTR_MSG {
                let text = &msg[at + RTA_HDRLEN..at + len];
                let text = text.split(|&b| b == 0).next().unwrap_or_default();
                message = Some(String::from_utf8_lossy(text).into_owned());
            }
            at += align(len);
        }
    }
    Some(Ack {
        errno: -error,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attributes at `at..end` of `buf`, as (type, payload).
    fn attrs(buf: &[u8], mut at: usize, end: usize) -> Vec<(u16, &[u8])> {
        let mut found = Vec::new();
        while at < end {
            let len = u16_at(buf, at).unwrap() as usize;
            found.push((u16_at(buf, at + 2).unwrap(), &buf[at + 4..at + len]));
            at += align(len);
        }
        found
    }

    #[test]
    fn veth_request_nests_the_peer_with_its_name_and_namespace() {
        let buf = veth_request("vmm42", "eth0", 42);

        assert_eq!(u32_at(&buf, 0).unwrap() as usize, buf.len());
        assert_eq!(buf.len() % 4, 0);
        assert_eq!(u16_at(&buf, 4), Some(RTM_NEWLINK));
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        assert_eq!(u16_at(&buf, 6), Some(flags));
        let top = attrs(&buf, NLMSGHDR_LEN + IFINFOMSG_LEN, buf.len());
        assert_eq!(top[0], (IFLA_IFNAME, &b"vmm42\0"[..]));
        let (kind, linkinfo) = top[1];
        assert_eq!(kind, IFLA_LINKINFO);
        let info = attrs(linkinfo, 0, linkinfo.len());
        assert_eq!(info[0], (IFLA_INFO_KIND, &b"veth\0"[..]));
        let data = attrs(info[1].1, 0, info[1].1.len());
        let (kind, peer) = data[0];
        assert_eq!(kind, VETH_INFO_PEER);
        assert_eq!(&peer[..IFINFOMSG_LEN], &[0; IFINFOMSG_LEN]);
        let peer_attrs = attrs(peer, IFINFOMSG_LEN, peer.len());
        assert_eq!(peer_attrs[0], (IFLA_IFNAME, &b"eth0\0"[..]));
        assert_eq!(peer_attrs[1], (IFLA_NET_NS_PID, &42u32.to_ne_bytes()[..]));
    }

    #[test]
    fn move_request_names_the_link_by_index_and_gives_its_new_name_and_namespace() {
        let buf = move_request(7, "eth0", 42);

        assert_eq!(u32_at(&buf, 0).unwrap() as usize, buf.len());
        assert_eq!(u16_at(&buf, 4), Some(RTM_NEWLINK));
        assert_eq!(
            u16_at(&buf, 6),
            Some(NLM_F_REQUEST | NLM_F_ACK),
            "no CREATE: it exists"
        );
        assert_eq!(u32_at(&buf, NLMSGHDR_LEN + IFINDEX_OFFSET), Some(7));
        let top = attrs(&buf, NLMSGHDR_LEN + IFINFOMSG_LEN, buf.len());
        assert_eq!(top[0], (IFLA_IFNAME, &b"eth0\0"[..]));
        assert_eq!(top[1], (IFLA_NET_NS_PID, &42u32.to_ne_bytes()[..]));
    }

    #[test]
    fn moving_an_interface_that_is_not_here_is_enodev() {
        let err = move_link("vmmnosuch0", "eth0", std::process::id() as i32).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
    }

    /// An NLMSG_ERROR reply as the kernel sends it with CAP_ACK and EXT_ACK.
    fn error_reply(errno: i32, text: Option<&str>) -> Vec<u8> {
        let mut tlvs = Vec::new();
        if let Some(text) = text {
            let mut payload = text.as_bytes().to_vec();
            payload.push(0);
            tlvs.extend_from_slice(&((RTA_HDRLEN + payload.len()) as u16).to_ne_bytes());
            tlvs.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
            tlvs.extend_from_slice(&payload);
            tlvs.resize(align(tlvs.len()), 0);
        }
        let flags = NLM_F_CAPPED | if text.is_some() { NLM_F_ACK_TLVS } else { 0 };
        let len = NLMSGHDR_LEN + 4 + NLMSGHDR_LEN + tlvs.len();
        let mut msg = Vec::new();
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&SEQ.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&(-errno).to_ne_bytes());
        msg.extend_from_slice(&[0; NLMSGHDR_LEN]);
        msg.extend_from_slice(&tlvs);
        msg
    }

    #[test]
    fn ack_without_error_is_success() {
        let ack = find_ack(&error_reply(0, None)).unwrap().unwrap();
        assert!(ack.into_result().is_ok());
    }

    #[test]
    fn refusal_keeps_the_errno_and_the_kernels_text() {
        let ack = find_ack(&error_reply(libc::EOPNOTSUPP, Some("Unknown device type")))
            .unwrap()
            .unwrap();
        assert_eq!(ack.errno, libc::EOPNOTSUPP);
        let err = ack.into_result().unwrap_err();
        assert!(err.to_string().contains("Unknown device type"), "{err}");
    }

    #[test]
    fn truncated_reply_is_malformed() {
        let reply = error_reply(0, None);
        let mut cut = reply[..NLMSGHDR_LEN].to_vec();
        cut[..4].copy_from_slice(&(reply.len() as u32).to_ne_bytes());
        assert!(find_ack(&cut).is_err());
    }

    #[test]
    fn interface_names_are_checked_before_any_request() {
        assert!(check_name("vmm4194304").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("sixteen-bytes-xx").is_err());
        assert!(check_name("a/b").is_err());
        assert!(delete_link("no such").is_err());
    }
}
