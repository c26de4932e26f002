//! The host's end of `vmm run --isolation vm|vm+container --net link`: a TAP named
//! `vmm<pid>`, which the VM's virtio-net device creates when the VM is built, given the
//! host's address of a free /30 once the guest agent answers (the TAP exists by then: the
//! VMM makes its devices before the guest runs). The other end is the guest's eth0: the
//! guest agent configures it when it creates the workload (vm), or the guest's runtime
//! moves it into the container's network namespace, where it is configured (vm+container).
//!
//! The TAP is not persistent (the VMM never sets TUNSETPERSIST): the kernel deletes it,
//! its address and its routes with it, when the VMM's descriptor closes, that is when the
//! VM stops or when this process ends in any way, SIGKILL included. Nothing is left for
//! a later run to clean up.

use std::io;

use runtime::netif::{self, LinkAddresses};

use super::error::RunError;
use crate::vm::device_specs::NetSpec;

/// `CAP_NET_ADMIN` from linux/capability.h: creating a TAP and configuring it need it.
const CAP_NET_ADMIN: u32 = 12;

/// The TAP of one run and the addresses of its link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    tap: String,
    addresses: LinkAddresses,
}

impl HostLink {
    /// Picks the TAP's name and a free /30, before anything runs; refuses when this
    /// process could not make the TAP.
    pub fn plan() -> Result<Self, RunError> {
        if !has_effective_cap(CAP_NET_ADMIN) {
            return Err(RunError::BadInput(
                "--net link at the vm level needs CAP_NET_ADMIN, to create its TAP device \
                 (run vmm as root)"
                    .into(),
            ));
        }
        let pid = std::process::id();
        let tap = tap_name(pid);
        if netif_exists(&tap) {
            // Opening it would attach to someone else's (persistent) TAP.
            return Err(RunError::Io {
                op: "name the link's TAP",
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("a network interface {tap} exists already (left by another program?)"),
                ),
            });
        }
        let addresses =
            LinkAddresses::allocate(pid).map_err(RunError::io("allocate the link's addresses"))?;
        Ok(Self { tap, addresses })
    }

    pub fn addresses(&self) -> LinkAddresses {
        self.addresses
    }

    /// The VM's NIC: on the TAP, with a MAC made of the guest's address (locally
    /// administered, so it collides with no vendor's).
    pub fn net_spec(&self) -> NetSpec {
        let [a, b, c, d] = self.addresses.workload.octets();
        NetSpec {
            tap: self.tap.clone(),
            mac: Some([0x06, 0x00, a, b, c, d]),
            rx_rate_limiter: None,
            tx_rate_limiter: None,
        }
    }

    /// The container's link at vm+container: the guest's NIC (eth0, on this TAP), moved
    /// into the container's network namespace by the guest's runtime.
    pub fn guest_nic_as_container_link(&self) -> runtime::config::NetLink {
        runtime::config::NetLink {
            host_interface: runtime::config::LINK_INTERFACE.to_owned(),
            addresses: self.addresses,
            existing_interface: true,
        }
    }

    /// Gives the TAP the host's address and brings it up (`ip addr add HOST/30 dev TAP;
    /// ip link set TAP up`). The VM must have made the TAP already.
    pub fn configure_host_end(&self) -> Result<(), RunError> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("TAP {}: {e}", self.tap));
        let a = self.addresses;
        netif::set_ipv4(&self.tap, a.host, a.prefix_len)
            .and_then(|()| netif::set_up(&self.tap))
            .map_err(|e| RunError::Io {
                op: "configure the host's end of the link",
                source: named(e),
            })
    }
}

/// `vmm<pid>`: at most 10 bytes (a pid is below 2^22), within IFNAMSIZ.
fn tap_name(pid: u32) -> String {
    format!("vmm{pid}")
}

fn netif_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Whether this process's effective set has capability `cap` (`CapEff` in
/// /proc/self/status).
fn has_effective_cap(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    cap_eff(&status).is_some_and(|set| set & (1 << cap) != 0)
}

fn cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_ifnamsiz_for_every_pid() {
        assert_eq!(tap_name(42), "vmm42");
        // pid_max is at most 2^22.
        assert!(tap_name(1 << 22).len() < libc::IFNAMSIZ);
    }

    #[test]
    fn cap_eff_is_read_from_the_status_file() {
        let status = "Name:\tvmm\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n";
        assert_eq!(cap_eff(status), Some(1 << CAP_NET_ADMIN));
        assert_eq!(cap_eff("Name:\tvmm\n"), None);
    }

    #[test]
    fn the_nic_has_a_locally_administered_mac_made_of_the_guest_address() {
        let link = HostLink {
            tap: "vmm7".into(),
            addresses: LinkAddresses::slot(1),
        };
        let spec = link.net_spec();
        assert_eq!(spec.tap, "vmm7");
        assert_eq!(spec.mac, Some([0x06, 0x00, 10, 231, 0, 6]));
    }

    #[test]
    fn configuring_a_tap_that_does_not_exist_names_it() {
        let link = HostLink {
            tap: "vmmnosuch0".into(),
            addresses: LinkAddresses::slot(1),
        };
        let err = link.configure_host_end().unwrap_err();
        let chain = edge::error_chain(&err);
        assert!(chain.contains("TAP vmmnosuch0"), "{chain}");
        assert!(!err.is_bad_input());
    }
}
