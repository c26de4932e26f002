//! The guest's end of `vmm run --net link`: the VM's virtio-net NIC, whose host side is a
//! TAP the host has given the other address of a /30. On a `create` that carries a link,
//! eth0 gets the workload's address and comes up, and the host's end becomes the default
//! gateway. The `vm` level shares the guest's network namespace, so that is what the
//! workload sees.
//!
//! The system calls sit behind [`NetOps`], so the order of the steps and the wait for
//! eth0 are checked by unit tests with a fake; the real calls are `runtime::netif`'s.

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use agent_protocol::protocol::LinkAddresses;

/// The guest's NIC: the only virtio-net device of a `vmm run` VM.
pub const GUEST_NIC: &str = "eth0";

/// How long eth0 may take to appear. The kernel probes virtio-mmio devices before it runs
/// init, so it is normally there at once; this bounds a kernel that defers the probe.
pub const NIC_APPEAR_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the wait for eth0 looks again.
const NIC_POLL: Duration = Duration::from_millis(10);

/// The network calls that set a link up, in the current network namespace.
pub trait NetOps {
    /// Whether the interface exists.
    fn exists(&self, name: &str) -> bool;
    fn set_ipv4(&mut self, name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()>;
    fn set_up(&mut self, name: &str) -> io::Result<()>;
    fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()>;
}

/// The kernel's own interfaces.
pub struct Kernel;

impl NetOps for Kernel {
    fn exists(&self, name: &str) -> bool {
        let Ok(name) = std::ffi::CString::new(name) else {
            return false;
        };
        // SAFETY: `name` is a NUL-terminated string that outlives the call, which only
        // reads it.
        unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
    }

    fn set_ipv4(&mut self, name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        runtime::netif::set_ipv4(name, addr, prefix_len)
    }

    fn set_up(&mut self, name: &str) -> io::Result<()> {
        runtime::netif::set_up(name)
    }

    fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        runtime::netif::add_default_route(gateway)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "the link {workload}/{prefix_len} via {host} is not a point-to-point link: it needs \
         two different addresses in one subnet of /8 to /30"
    )]
    Invalid {
        host: Ipv4Addr,
        workload: Ipv4Addr,
        prefix_len: u8,
    },
    #[error(
        "a link needs the agent to be PID 1 of a guest (in test mode it would reconfigure \
         the host's {GUEST_NIC})"
    )]
    NotInGuest,
    #[error("{GUEST_NIC} has the link {current} already; a workload cannot ask for another")]
    Configured { current: String },
    #[error(
        "the guest has no {GUEST_NIC} after {} s (does its kernel have virtio-net, \
         CONFIG_VIRTIO_NET?)",
        .waited.as_secs()
    )]
    NoNic { waited: Duration },
    #[error("set up the link on {GUEST_NIC}: {step}")]
    Step {
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

impl LinkError {
    /// True when the request, not the guest, is at fault.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Invalid { .. } | Self::NotInGuest | Self::Configured { .. }
        )
    }
}

/// `workload/prefix_len via host`, as error messages name a link.
pub fn describe(link: &LinkAddresses) -> String {
    format!("{}/{} via {}", link.workload, link.prefix_len, link.host)
}

/// Refuses addresses that cannot make a link: two different addresses in one subnet of
/// prefix /8 to /30.
pub fn check(link: &LinkAddresses) -> Result<(), LinkError> {
    let invalid = || LinkError::Invalid {
        host: link.host,
        workload: link.workload,
        prefix_len: link.prefix_len,
    };
    if !(8..=30).contains(&link.prefix_len) || link.host == link.workload {
        return Err(invalid());
    }
    let mask = u32::MAX << (32 - u32::from(link.prefix_len));
    if u32::from(link.host) & mask != u32::from(link.workload) & mask {
        return Err(invalid());
    }
    Ok(())
}

/// Waits (at most `appear_timeout`) for eth0, then gives it the workload's address, brings
/// it up and adds the default route through the host's end.
pub fn configure(
    ops: &mut impl NetOps,
    link: &LinkAddresses,
    appear_timeout: Duration,
) -> Result<(), LinkError> {
    check(link)?;
    let deadline = Instant::now() + appear_timeout;
    while !ops.exists(GUEST_NIC) {
        if Instant::now() >= deadline {
            return Err(LinkError::NoNic {
                waited: appear_timeout,
            });
        }
        std::thread::sleep(NIC_POLL);
    }
    let step = |step| move |source| LinkError::Step { step, source };
    ops.set_ipv4(GUEST_NIC, link.workload, link.prefix_len)
        .map_err(step("give it its address"))?;
    ops.set_up(GUEST_NIC).map_err(step("bring it up"))?;
    ops.add_default_route(link.host)
        .map_err(step("add the default route"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the calls; eth0 appears after `absent_polls` looks; `fail` makes that step
    /// fail.
    #[derive(Default)]
    struct FakeNet {
        absent_polls: std::cell::Cell<u32>,
        calls: Vec<String>,
        fail: Option<&'static str>,
    }

    impl FakeNet {
        fn result(&mut self, call: String, name: &'static str) -> io::Result<()> {
            self.calls.push(call);
            if self.fail == Some(name) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
    }

    impl NetOps for FakeNet {
        fn exists(&self, name: &str) -> bool {
            assert_eq!(name, GUEST_NIC);
            let left = self.absent_polls.get();
            self.absent_polls.set(left.saturating_sub(1));
            left == 0
        }
        fn set_ipv4(&mut self, name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
            self.result(format!("addr {name} {addr}/{prefix_len}"), "addr")
        }
        fn set_up(&mut self, name: &str) -> io::Result<()> {
            self.result(format!("up {name}"), "up")
        }
        fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
            self.result(format!("route default via {gateway}"), "route")
        }
    }

    fn link() -> LinkAddresses {
        LinkAddresses::slot(5)
    }

    #[test]
    fn eth0_gets_its_address_then_comes_up_then_routes_through_the_host() {
        let mut net = FakeNet::default();
        configure(&mut net, &link(), Duration::from_secs(1)).unwrap();
        assert_eq!(
            net.calls,
            [
                "addr eth0 10.231.0.22/30",
                "up eth0",
                "route default via 10.231.0.21"
            ]
        );
    }

    #[test]
    fn a_late_eth0_is_waited_for() {
        let mut net = FakeNet {
            absent_polls: 3.into(),
            ..Default::default()
        };
        configure(&mut net, &link(), Duration::from_secs(5)).unwrap();
        assert_eq!(net.calls.len(), 3);
    }

    #[test]
    fn a_missing_eth0_fails_after_the_timeout_without_any_call() {
        let mut net = FakeNet {
            absent_polls: u32::MAX.into(),
            ..Default::default()
        };
        let err = configure(&mut net, &link(), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, LinkError::NoNic { .. }), "{err}");
        assert!(!err.is_bad_input());
        assert!(net.calls.is_empty());
    }

    #[test]
    fn a_failed_step_is_named_and_stops_the_rest() {
        let mut net = FakeNet {
            fail: Some("up"),
            ..Default::default()
        };
        let err = configure(&mut net, &link(), Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.to_string(), "set up the link on eth0: bring it up");
        assert_eq!(net.calls, ["addr eth0 10.231.0.22/30", "up eth0"]);
    }

    #[test]
    fn addresses_that_make_no_link_are_bad_input() {
        let good = link();
        let same = LinkAddresses {
            host: good.workload,
            ..good
        };
        let apart = LinkAddresses {
            host: Ipv4Addr::new(10, 231, 9, 1),
            ..good
        };
        let too_wide = LinkAddresses {
            prefix_len: 4,
            ..good
        };
        let too_narrow = LinkAddresses {
            prefix_len: 31,
            ..good
        };
        assert!(check(&good).is_ok());
        for bad in [same, apart, too_wide, too_narrow] {
            let err = check(&bad).unwrap_err();
            assert!(err.is_bad_input(), "{bad:?}");
            let mut net = FakeNet::default();
            assert!(configure(&mut net, &bad, Duration::from_secs(1)).is_err());
            assert!(net.calls.is_empty(), "{bad:?}");
        }
    }
}
