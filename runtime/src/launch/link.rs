//! The container's link to the host (`--net link`): the runtime's end of a veth pair,
//! made with the container's end already in its network namespace, or an existing
//! interface (a microVM's NIC) moved in whole. The container's first process configures
//! its end itself ([`crate::init`]).

use crate::config::{NetLink, LINK_INTERFACE};
use crate::error::{ContainerError, Result};
use crate::{netif, netlink};

/// The host's end of the container's link to the host. Dropping it deletes the veth pair
/// (deleting one end deletes both): the pair would also go with the container's network
/// namespace, but only once the kernel gets round to tearing that down, after the run.
pub(super) struct HostLink {
    name: String,
}

impl HostLink {
    /// Makes the veth pair of `link`: its host end here, with the host's address and up; the
    /// peer, as [`LINK_INTERFACE`], made directly in the network namespace of process `pid`
    /// (the container's first process, not yet released), which configures it itself.
    fn create(link: &NetLink, pid: i32) -> Result<Self> {
        let name = &link.host_interface;
        netlink::create_veth(name, LINK_INTERFACE, pid).map_err(|e| {
            ContainerError::sys(
                format!(
                    "create the veth pair {name} (host) and {LINK_INTERFACE} (container) of \
                     the link to the host (needs CAP_NET_ADMIN and the kernel's veth driver)"
                ),
                e,
            )
        })?;
        let host_link = Self { name: name.clone() };
        let a = &link.addresses;
        netif::set_ipv4(name, a.host, a.prefix_len).map_err(|e| {
            let addr = format!("{}/{}", a.host, a.prefix_len);
            ContainerError::sys(format!("give the host's end {name} the address {addr}"), e)
        })?;
        netif::set_up(name)
            .map_err(|e| ContainerError::sys(format!("bring up the host's end {name}"), e))?;
        Ok(host_link)
    }
}

/// Gives the container (its first process `pid`, not yet released) its end of `link`:
/// a veth pair made, whose host end is returned to be deleted with the container, or the
/// existing interface moved in (nothing to undo then).
pub(super) fn set_up(link: &NetLink, pid: i32) -> Result<Option<HostLink>> {
    if link.existing_interface {
        move_interface(link, pid)?;
        return Ok(None);
    }
    HostLink::create(link, pid).map(Some)
}

/// Moves the existing interface of `link` into the network namespace of process `pid` as
/// [`LINK_INTERFACE`], which configures it itself. Nothing to undo: the namespace hands
/// a physical NIC back to the initial one when it goes.
fn move_interface(link: &NetLink, pid: i32) -> Result<()> {
    let name = &link.host_interface;
    netlink::move_link(name, LINK_INTERFACE, pid).map_err(|e| {
        ContainerError::sys(
            format!("move {name} into the container's network namespace as {LINK_INTERFACE}"),
            e,
        )
    })
}

impl HostLink {
    /// Leaves the link in place (it goes with the container's network namespace).
    pub(super) fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        // Nothing to report to: a failure leaves a link the namespace's end removes anyway.
        let _ = netlink::delete_link(&self.name);
    }
}
