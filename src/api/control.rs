//! Pausing, resuming, snapshots and run-time disk swaps for the API, through the VM's [`VmControl`]: one
//! control per VMM process, shared by the API thread (which calls it) and every launch
//! (`RunOptions::control`, see `base_options` in `mod.rs`). The controller
//! (`controller.rs`) has already checked the body and the state (load only before any
//! configuration, create only while paused) by the time it calls in.

use std::sync::Arc;
use std::time::Instant;

use super::bodies::LoadSnapshot;
use super::controller::Launch;
use crate::vm::{self, RestoreConfig, VmControl};

/// What the VMM can do to a running VM's execution.
#[derive(Debug)]
pub struct Control {
    vm: Arc<VmControl>,
}

impl Control {
    pub fn new(vm: Arc<VmControl>) -> Control {
        Control { vm }
    }

    /// Whether the vCPUs are parked.
    pub fn is_paused(&self) -> bool {
        self.vm.is_paused()
    }

    /// `PATCH /vm {"state": "Paused"}`.
    pub fn pause(&self) -> Result<(), String> {
        self.vm.pause().map_err(|e| edge::error_chain(&e))
    }

    /// `PATCH /vm {"state": "Resumed"}`.
    pub fn resume(&self) -> Result<(), String> {
        self.vm.resume().map_err(|e| edge::error_chain(&e))
    }

    /// `PUT /snapshot/create`, the VM paused.
    pub fn snapshot(&self, state: &std::path::Path, mem: &std::path::Path) -> Result<(), String> {
        self.vm
            .snapshot(state, mem)
            .map_err(|e| edge::error_chain(&e))
    }

    /// `PATCH /drives/{id}` with `path_on_host`, after boot: the drive's new backing file.
    pub fn update_disk(&self, drive_id: &str, path: &std::path::Path) -> Result<(), String> {
        self.vm
            .update_disk(drive_id, path)
            .map_err(|e| edge::error_chain(&e))
    }

    /// `PUT /snapshot/load`, before any configuration: what the main thread runs to
    /// restore. The files are checked there, before any VM exists; a refusal goes back
    /// to the client as the launch's failure.
    pub fn restore(&self, load: &LoadSnapshot) -> Result<Launch, String> {
        let config = RestoreConfig {
            state: load.state.clone(),
            mem_file: load.mem_file.clone(),
            resume: load.resume,
            started: Instant::now(),
            report_first_exit: false,
            vsock_uds: None,
            tap: None,
        };
        Ok(Box::new(move |options| vm::restore_with(&config, options)))
    }
}
