//! `vmm-agent`: PID 1 of the guest's initramfs (work in progress).

fn main() {}
