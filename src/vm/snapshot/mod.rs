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

use super::control::ControlError;
use super::virtio_setup::AttachedTransport;

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
    /// The VM's config (its RAM layout is filled in when the memory file is written). A
    /// disk swapped at run time changes its path here (`disk_update`), so that a snapshot
    /// records the file the guest now uses.
    pub config: Mutex<SavedConfig>,
    /// Its virtio devices, in window order.
    pub virtio: Vec<AttachedTransport>,
}

/// What takes a snapshot of a paused VM once its vCPUs have read their own state, and
/// changes its devices at run time: the VM itself ([`SnapshotSource`]), or a stand-in in
/// the control's tests.
pub trait SnapshotWriter: Send + Sync {
    /// Reads the rest of the VM's state and writes the snapshot, with `vcpus` (read by
    /// their threads), to `state` and `mem`. Every vCPU must be parked.
    fn write(&self, vcpus: Vec<VcpuState>, state: &Path, mem: &Path) -> Result<(), SnapshotError>;
    /// Starts again the devices a snapshot stopped, before the vCPUs run again.
    fn resume_devices(&self) -> Result<(), SnapshotError>;
    /// Opens `path` on the calling thread and makes it the backing file of the disk
    /// whose drive id (its GET_ID serial) is `drive_id` (see `vm::disk_update`).
    fn update_disk(&self, drive_id: &str, path: &Path) -> Result<(), ControlError>;
}

impl SnapshotWriter for SnapshotSource {
    fn write(&self, vcpus: Vec<VcpuState>, state: &Path, mem: &Path) -> Result<(), SnapshotError> {
        let vm = vm_state::save(&self.vm)?;
        // Before guest RAM is written: a saved device is stopped (its worker gone, its
        // queues' indices taken), so it writes no more to guest memory until resumed.
        let virtio = self
            .virtio
            .iter()
            .map(|attached| {
                let transport = lock(&attached.transport).save().map_err(|source| {
                    SnapshotError::VirtioSave {
                        device: attached.name(),
                        source: Box::new(source),
                    }
                })?;
                Ok(devices::VirtioDeviceState {
                    kind: attached.kind.to_string(),
                    base: attached.slot.base,
                    irq: attached.slot.irq,
                    transport,
                })
            })
            .collect::<Result<Vec<_>, SnapshotError>>()?;
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
                ..lock(&self.config).clone()
            },
            vm,
            vcpus,
            devices: devices::DeviceStates { serial, virtio },
        };
        let state_file = file::write(state, &snapshot)?;
        // Both files are complete: only the two renames are left, memory first. (Were
        // the second to fail, the old state file would sit beside the new memory: the
        // error says the snapshot failed.)
        mem_file.commit()?;
        state_file.commit()
    }

    fn resume_devices(&self) -> Result<(), SnapshotError> {
        resume_all(&self.virtio)
    }

    fn update_disk(&self, drive_id: &str, path: &Path) -> Result<(), ControlError> {
        crate::vm::disk_update::update_disk(self, drive_id, path)
    }
}

/// Starts again every stopped device of `virtio` (one not stopped is left as it is).
pub fn resume_all(virtio: &[AttachedTransport]) -> Result<(), SnapshotError> {
    for attached in virtio {
        lock(&attached.transport)
            .resume()
            .map_err(|source| SnapshotError::VirtioResume {
                device: attached.name(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// A transport's state stays whole through a panic elsewhere: each register and queue
/// write is done under the lock as one assignment.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
