//! The probe of `vmm compare`: one static binary, run unchanged as a chrooted process, in a
//! container, in a microVM and in a container inside a microVM, that reports what it can
//! see ([`isolation`]) and how fast it runs ([`bench`]). Running the *same* file everywhere
//! is the point: any difference in the reports comes from the isolation level, not from the
//! program.
//!
//! `vmm compare` links this crate too: it reads the probe's JSON with the types of
//! [`report`], observes the host with [`isolation::observe`] for the reference values, and
//! runs [`net_server::serve`] for the network benchmark. [`args`] is the binary's command
//! line, so the host can rely on the same flags.

pub mod args;
pub mod bench;
pub mod failure;
pub mod isolation;
pub mod net_server;
pub mod report;
mod sys;
