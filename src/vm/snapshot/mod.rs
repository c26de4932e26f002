//! Snapshots: a paused VM's whole state in a state file, its RAM in a memory file, and a
//! new VM built from the two (`super::restore`).
//!
//! The state file ([`file`]) holds a [`VmSnapshot`]: what the VM was built from
//! ([`config`]), each vCPU's KVM state ([`vcpu_state`], with its MSRs from [`msrs`]), the
//! VM's irqchip, PIT and clock ([`vm_state`]) and the devices' state ([`devices`]). The
//! memory file ([`memory_file`]) is guest RAM, sparse.
//!
//! Taking one: [`super::control::VmControl::snapshot`] has every vCPU thread read its own
//! state while parked, then [`SnapshotSource::write`] reads the rest and writes both files.

mod atomic_file;
pub mod config;
pub mod devices;
pub mod error;
pub mod file;
#[cfg(test)]
mod kvm_tests;
pub mod memory_file;
pub mod msrs;
pub mod vcpu_state;
pub mod vm_state;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};
use vm_memory::GuestMemoryMmap;

pub use config::SavedConfig;
pub use error::SnapshotError;
pub use vcpu_state::{SaveSpec, VcpuState};

/// Everything in a state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmSnapshot {
    pub config: SavedConfig,
    pub vm: vm_state::VmState,
    /// One per vCPU, in index order.
    pub vcpus: Vec<VcpuState>,
    pub devices: devices::DeviceStates,
}

/// What a running VM lends its control so that it can be snapshotted: the parts of the VM
/// outside the vCPU threads.
pub struct SnapshotSource {
    pub vm: Arc<VmFd>,
    pub mem: GuestMemoryMmap,
    pub serial: Arc<Mutex<::devices::Serial>>,
    /// The VM's config (its RAM layout is filled in when the memory file is written).
    pub config: SavedConfig,
    /// The kinds of its virtio devices ("blk", …), which cannot be saved yet.
    pub virtio_kinds: Vec<&'static str>,
}

/// What takes a snapshot of a paused VM once its vCPUs have read their own state: the VM
/// itself ([`SnapshotSource`]), or a stand-in in the control's tests.
pub trait SnapshotWriter: Send + Sync {
    /// Refuses, before anything is read, a VM whose state cannot all be saved.
    fn check_supported(&self) -> Result<(), SnapshotError>;
    /// Reads the rest of the VM's state and writes the snapshot, with `vcpus` (read by
    /// their threads), to `state` and `mem`. Every vCPU must be parked.
    fn write(&self, vcpus: Vec<VcpuState>, state: &Path, mem: &Path) -> Result<(), SnapshotError>;
}

impl SnapshotWriter for SnapshotSource {
    fn check_supported(&self) -> Result<(), SnapshotError> {
        devices::check_virtio_supported(&self.virtio_kinds)
    }

    fn write(&self, vcpus: Vec<VcpuState>, state: &Path, mem: &Path) -> Result<(), SnapshotError> {
        self.check_supported()?;
        let vm = vm_state::save(&self.vm)?;
        let serial = self
            .serial
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot()
            .into();
        let (mem_file, regions) = memory_file::write(&self.mem, mem)?;
        let snapshot = VmSnapshot {
            config: SavedConfig {
                regions,
                ..self.config.clone()
            },
            vm,
            vcpus,
            devices: devices::DeviceStates {
                serial,
                virtio: Vec::new(),
            },
        };
        let state_file = file::write(state, &snapshot)?;
        // Both files are complete: only the two renames are left, memory first. (Were
        // the second to fail, the old state file would sit beside the new memory: the
        // error says the snapshot failed.)
        mem_file.commit()?;
        state_file.commit()
    }
}
