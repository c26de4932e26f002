//! `VMM_JAIL_PHASES=1`: when each step of entering and leaving the jail ended, in ms since
//! the jail began (one clock for both processes: the child inherits the origin), on
//! stderr. What `vmm bench start --hardening` reports as the jail's cost is their sum and
//! what the kernel does around them; this tells the steps apart without strace, whose own
//! cost is larger than most of them.

use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that turns the timer on.
pub const ENV: &str = "VMM_JAIL_PHASES";

static ORIGIN: OnceLock<Option<Instant>> = OnceLock::new();

/// Starts the clock (once per process; a forked child keeps the parent's origin).
pub fn start() {
    ORIGIN.get_or_init(|| std::env::var_os(ENV).map(|_| Instant::now()));
}

/// Reports that `phase` has just ended, when the timer is on.
pub fn mark(phase: &str) {
    if let Some(Some(origin)) = ORIGIN.get() {
        let ms = origin.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "vmm: jail phase {phase}: {ms:.3} ms (pid {})",
            std::process::id()
        );
    }
}
