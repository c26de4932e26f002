//! End to end: virtio-net on a TAP device the VMM creates (`--net tap=NAME,mac=MAC`).
//! The host side is an AF_PACKET socket bound to the tap interface: it sees the guest's
//! broadcast frame (ethertype 0x88b5, IEEE local experimental) and injects a reply that
//! the guest must receive. Needs root (CAP_NET_ADMIN) and /dev/net/tun.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{skip_without_kvm, spawn_guest};

const ETHERTYPE_TEST: u16 = 0x88b5;
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const TX_PAYLOAD: &[u8] = b"vmm-net-tx-test";
const RX_PAYLOAD: &[u8] = b"vmm-net-rx-test";

fn skip_without_tap(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let reason = if !root {
        Some("not root (creating a tap needs CAP_NET_ADMIN)".to_string())
    } else if !std::path::Path::new("/dev/net/tun").exists() {
        Some("no /dev/net/tun".to_string())
    } else {
        None
    };
    match reason {
        Some(r) => {
            eprintln!("SKIP {test}: {r}");
            true
        }
        None => false,
    }
}

fn mac_string(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An AF_PACKET socket for ethertype 0x88b5 on one interface; closed on drop.
struct PacketSocket {
    fd: i32,
    ifindex: i32,
}

#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl PacketSocket {
    /// Brings `ifname` up and binds a raw packet socket to it.
    fn open(ifname: &str) -> std::io::Result<Self> {
        let cname = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: cname is a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let proto = (ETHERTYPE_TEST).to_be() as i32;
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = PacketSocket { fd, ifindex };
        sock.set_up(ifname)?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETHERTYPE_TEST.to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: addr is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: tv is a valid timeval and its size is passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(sock)
    }

    /// `ip link set IFNAME up` through SIOCGIFFLAGS / SIOCSIFFLAGS on this socket.
    fn set_up(&self, ifname: &str) -> std::io::Result<()> {
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        // SAFETY: req is an ifreq-shaped buffer (name, then the flags member of the union).
        if unsafe { libc::ioctl(self.fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        // SAFETY: as above.
        if unsafe { libc::ioctl(self.fd, libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// One frame sent to the interface from the outside (not our own outgoing ones).
    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 2048];
        // SAFETY: see open(); addr and len are valid out-parameters.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buf is writable for its length; addr/len as above.
        let n = unsafe {
            libc::recvfrom(
                self.fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut addr as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                &mut len,
            )
        };
        if n <= 0 || addr.sll_pkttype == libc::PACKET_OUTGOING {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: see open().
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETHERTYPE_TEST.to_be();
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame is readable for its length; addr is a valid sockaddr_ll.
        let n = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: fd is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Waits for the VMM to create the tap, then answers the guest's first test frame.
/// Returns the guest frame it saw.
fn host_side(tap: &str, deadline: Instant) -> Result<Vec<u8>, String> {
    let sys = format!("/sys/class/net/{tap}");
    while !std::path::Path::new(&sys).exists() {
        if Instant::now() > deadline {
            return Err(format!("the VMM never created tap {tap}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let sock = PacketSocket::open(tap).map_err(|e| format!("packet socket on {tap}: {e}"))?;
    while Instant::now() < deadline {
        let Some(frame) = sock.recv() else { continue };
        if frame.len() < 14 + TX_PAYLOAD.len() || &frame[14..14 + TX_PAYLOAD.len()] != TX_PAYLOAD {
            continue;
        }
        let mut reply = Vec::with_capacity(60);
        reply.extend_from_slice(&frame[6..12]); // to the guest
        reply.extend_from_slice(&HOST_MAC);
        reply.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
        reply.extend_from_slice(RX_PAYLOAD);
        reply.resize(60, 0);
        sock.send(&reply)
            .map_err(|e| format!("inject a frame into {tap}: {e}"))?;
        return Ok(frame);
    }
    Err("no frame from the guest".to_string())
}

#[test]
fn net_frames_flow_both_ways_through_a_tap() {
    let name = "net_frames_flow_both_ways_through_a_tap";
    if skip_without_kvm(name) || skip_without_tap(name) {
        return;
    }
    let tap = format!("vmmt{}", std::process::id() % 1_000_000);
    let net = format!("tap={tap},mac={}", mac_string(&GUEST_MAC));
    let vm = spawn_guest(&["--net", &net], "tests=net");
    let deadline = Instant::now() + Duration::from_secs(4);
    let tap_name = tap.clone();
    let host = std::thread::spawn(move || host_side(&tap_name, deadline));
    let run = vm.finish(common::GUEST_TIMEOUT);
    let host = host.join().unwrap();
    // A tap the VMM created is not persistent: it goes with the VMM. Remove a leftover
    // before asserting, so a failure here does not leak interfaces.
    let tap_outlived = std::path::Path::new(&format!("/sys/class/net/{tap}")).exists();
    if tap_outlived {
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &tap])
            .status();
    }

    let frame = host.unwrap_or_else(|e| panic!("host side: {e}\n{}", run.describe()));
    assert_eq!(
        &frame[..6],
        &[0xff; 6],
        "the guest's frame is not a broadcast"
    );
    assert_eq!(
        &frame[6..12],
        &GUEST_MAC,
        "the guest's frame has source {}",
        mac_string(&frame[6..12])
    );
    assert_eq!(
        run.fact("net_mac"),
        Some(mac_string(&GUEST_MAC).as_str()),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("net_rx_payload"),
        Some(std::str::from_utf8(RX_PAYLOAD).unwrap()),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("net_rx_src"),
        Some(mac_string(&HOST_MAC).as_str()),
        "{}",
        run.describe()
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(!tap_outlived, "the VMM's tap {tap} outlived the VM");
}
