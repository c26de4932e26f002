//! The exit statuses `vmm` itself chooses (a workload's or a guest's own status is passed
//! through as it is; 128 + N means stopped by signal N).

/// The VM, the runtime or the host failed.
pub const EXIT_FAILED: u8 = 1;
/// The input cannot work: one line on stderr names the problem.
pub const EXIT_BAD_INPUT: u8 = 2;
