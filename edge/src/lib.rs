//! What every vmm program does at its edge, in one place: the exit statuses it chooses
//! ([`exit_code`]) and an error printed with its causes on one line ([`error_chain`]).
//!
//! A crate of its own, with no dependencies, because the programs that share it do not
//! share anything else: `vmm` and `vmm-runc` on the host, `vmm-agent` in the guest, and
//! `vmm-probe`, a lean static binary that must not link the container runtime. The
//! runtime crate uses it too, for the status of a child that fails before its exec.

mod chain;
pub mod exit_code;

pub use chain::error_chain;
