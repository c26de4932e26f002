//! MERGE POINT (issue 14): pausing, resuming and snapshots go through
//! `crate::vm::control::VmControl`, which the "vmstate" work adds in parallel. Until it is
//! merged, every operation here answers that this build cannot do it, and this file is the
//! only place that has to change: the controller (`controller.rs`) has already checked the
//! body and the state (load only before any configuration, create only while paused) by
//! the time it calls in.

use std::path::Path;

use super::bodies::LoadSnapshot;
use super::controller::Launch;

/// What the VMM can do to a running VM's execution.
#[derive(Debug, Default)]
pub struct Control {
    // After the merge: `vm: std::sync::Arc<crate::vm::control::VmControl>`, given to
    // `RunOptions::control` for every launch (see `base_options` in `mod.rs`).
}

fn not_yet(what: &str) -> String {
    format!("{what} is not supported by this build of vmm yet")
}

impl Control {
    /// Whether the vCPUs are parked (`VmControl::is_paused`).
    pub fn is_paused(&self) -> bool {
        false
    }

    /// `PATCH /vm {"state": "Paused"}` (`VmControl::pause`).
    pub fn pause(&self) -> Result<(), String> {
        Err(not_yet("Pausing the microVM"))
    }

    /// `PATCH /vm {"state": "Resumed"}` (`VmControl::resume`).
    pub fn resume(&self) -> Result<(), String> {
        Err(not_yet("Resuming the microVM"))
    }

    /// `PUT /snapshot/create`, the VM paused (`VmControl::snapshot`).
    pub fn snapshot(&self, _state: &Path, _mem: &Path) -> Result<(), String> {
        Err(not_yet("Creating a snapshot"))
    }

    /// `PUT /snapshot/load`, before any configuration: what the main thread runs to
    /// restore (`vm::restore_with(&RestoreConfig { state, mem_file, resume, .. }, options)`).
    pub fn restore(&self, _load: &LoadSnapshot) -> Result<Launch, String> {
        Err(not_yet("Loading a snapshot"))
    }
}
