//! The host–agent protocol of `vmm` (see [`protocol`]), shared by the `vmm` binary and by
//! `vmm-agent`, so both sides are built from one definition.

pub mod protocol;
