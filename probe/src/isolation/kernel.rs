//! Which kernel the probe runs on. The release can be equal by coincidence (a guest built
//! from the host's sources); the boot id is random per boot, so it is equal to the host's
//! exactly when the kernel is shared.

use std::fs;

use crate::sys;

/// `uname -r`, or "unknown" if uname fails.
pub fn release() -> String {
    sys::uname()
        .map(|u| u.release)
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// /proc/sys/kernel/random/boot_id, trimmed; None when /proc is missing or hides it.
pub fn boot_id() -> Option<String> {
    let text = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_owned())
}
