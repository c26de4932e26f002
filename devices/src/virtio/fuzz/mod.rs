//! Fuzz harnesses for the virtio devices, run by `cargo test` (proptest through
//! `fuzzkit`, which says why proptest; docs/fuzzing.md says how to run them long).
//!
//! - `queues`: a hostile driver's rings for every queue of every device (blk; net tx and
//!   rx; vsock tx and rx; balloon inflate, deflate and stats; rng), the device driven
//!   through the test driver (`crate::testing`).
//! - `mmio`: random register traffic against the virtio-mmio transport of each device.
//!
//! `ring` generates the rings, `allowed` says which guest bytes a device may write.

mod allowed;
mod mmio;
mod queues;
mod ring;
