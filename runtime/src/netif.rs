//! Network interfaces of the current network namespace, configured with the classic
//! ioctls (no netlink needed): bring one up, give it an IPv4 address, add a default route.
//! And the addresses of a point-to-point link between the host and one workload (`vmm run
//! --net link`): a /30 out of 10.231.0.0/16, host end `.1`, workload end `.2`.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The addresses of one host ↔ workload link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkAddresses {
    /// The host's end; the workload's default gateway.
    pub host: Ipv4Addr,
    /// The workload's end (its eth0).
    pub workload: Ipv4Addr,
    pub prefix_len: u8,
}

/// The /16 the links are carved from: private, and unlikely to be a real network's.
const LINK_NET: [u8; 2] = [10, 231];
/// /30 slots in the /16.
const SLOTS: u32 = 1 << 14;

impl LinkAddresses {
    /// Slot `n` of the link network (taken modulo the number of slots).
    pub fn slot(n: u32) -> Self {
        let base = (n % SLOTS) * 4;
        let [a, b] = LINK_NET;
        let at = |i: u32| Ipv4Addr::new(a, b, ((base + i) >> 8) as u8, ((base + i) & 0xff) as u8);
        Self {
            host: at(1),
            workload: at(2),
            prefix_len: 30,
        }
    }

    /// A free link: starting from a slot picked by `seed` (e.g. the PID), the first whose
    /// host address no interface of this namespace has.
    pub fn allocate(seed: u32) -> io::Result<Self> {
        let in_use = addresses_in_use()?;
        (0..SLOTS)
            .map(|i| Self::slot(seed.wrapping_add(i)))
            .find(|link| !in_use.contains(&link.host))
            .ok_or_else(|| io::Error::other("every link address of 10.231.0.0/16 is in use"))
    }
}

/// IPv4 addresses of this namespace's interfaces.
fn addresses_in_use() -> io::Result<Vec<Ipv4Addr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs made, not yet freed.
        let entry = unsafe { &*at };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of the family it names.
            let family = unsafe { (*entry.ifa_addr).sa_family };
            if i32::from(family) == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                found.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        at = entry.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    // SAFETY: ifreq is plain data; all-zero is valid (empty name, empty union).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn ioctl(fd: &OwnedFd, request: libc::Ioctl, req: &mut libc::ifreq, what: &str) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq naming an interface; the kernel reads it and, for
    // the SIOCG* requests, writes the answer into it.
    if unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut libc::ifreq) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// `ip link set NAME up`.
pub fn set_up(name: &str) -> io::Result<()> {
    let fd = control_socket()?;
    let mut req = ifreq_for(name)?;
    ioctl(&fd, libc::SIOCGIFFLAGS, &mut req, "SIOCGIFFLAGS")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(&fd, libc::SIOCSIFFLAGS, &mut req, "SIOCSIFFLAGS")
}

fn sockaddr_of(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads the family
    // first and the rest as a sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// `ip addr add ADDR/PREFIX dev NAME`.
pub fn set_ipv4(name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    if prefix_len > 32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "prefix longer than 32",
        ));
    }
    let fd = control_socket()?;
    let mut req = ifreq_for(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_of(addr);
    ioctl(&fd, libc::SIOCSIFADDR, &mut req, "SIOCSIFADDR")?;
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    req.ifr_ifru.ifru_netmask = sockaddr_of(Ipv4Addr::from(mask));
    ioctl(&fd, libc::SIOCSIFNETMASK, &mut req, "SIOCSIFNETMASK")
}

/// `ip route add default via GATEWAY`.
pub fn add_default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let fd = control_socket()?;
    // SAFETY: rtentry is plain data; all-zero is a valid start (no device, no metric).
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr_of(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr_of(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr_of(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: `route` is a valid rtentry the kernel only reads.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::SIOCADDRT,
            &route as *const libc::rtentry,
        )
    } != 0
    {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("SIOCADDRT: {e}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_slash_30s_of_the_link_network() {
        let first = LinkAddresses::slot(0);
        assert_eq!(first.host, Ipv4Addr::new(10, 231, 0, 1));
        assert_eq!(first.workload, Ipv4Addr::new(10, 231, 0, 2));
        assert_eq!(first.prefix_len, 30);
        let later = LinkAddresses::slot(64);
        assert_eq!(later.host, Ipv4Addr::new(10, 231, 1, 1));
        assert_eq!(LinkAddresses::slot(SLOTS), first, "slots wrap around");
    }

    #[test]
    fn a_link_is_allocated_off_the_addresses_in_use() {
        let link = LinkAddresses::allocate(std::process::id()).unwrap();
        assert!(!addresses_in_use().unwrap().contains(&link.host));
    }

    #[test]
    fn loopback_has_an_address_in_use() {
        assert!(addresses_in_use().unwrap().contains(&Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn bad_interface_names_are_refused_before_any_ioctl() {
        assert!(set_up("").is_err());
        assert!(set_up("a-name-longer-than-ifnamsiz").is_err());
        assert!(set_ipv4("lo", Ipv4Addr::LOCALHOST, 33).is_err());
    }
}
