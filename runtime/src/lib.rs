//! The container runtime of `vmm`: namespaces, pivot_root, cgroups v1/v2, OCI bundles. One
//! copy of the code, linked by the `vmm` binary on the host and by `vmm-agent` inside every
//! guest, so a container made in a VM is made exactly as one on the host. Nothing here
//! depends on the VM code.
//!
//! Flow: options ([`options`]) or bundle ([`spec`]) → [`config::ContainerConfig`] →
//! [`launch::run`] (cgroup, clone, [`init::setup_and_exec`] in the child, wait) → exit
//! status. [`launch::spawn`] is the same without the wait, for callers with an event loop.
//! On the host, [`run_state::run`] wraps [`launch::run`] holding the container's ID in a
//! locked directory ([`state_dir`], vmm-runc's lock too), so no two runs share a cgroup.

pub mod caps;
pub mod cgroup;
pub mod config;
pub mod defaults;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod hostname;
pub mod init;
pub mod launch;
pub mod mount_opts;
pub mod netif;
pub mod netlink;
pub mod options;
pub mod paths;
pub mod rootfs;
pub mod run_state;
pub mod seccomp;
pub mod spec;
pub mod state_dir;
pub mod sys;

#[cfg(test)]
mod init_tests;
#[cfg(test)]
mod spec_fuzz;
#[cfg(test)]
mod spec_tests;
