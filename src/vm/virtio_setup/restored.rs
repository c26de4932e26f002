//! Virtio devices attached again from a snapshot: each made anew from its saved spec and
//! put in a transport restored from its saved state, checked before any of them runs.

use std::path::Path;

use devices::virtio::mmio::MmioTransport;
use devices::Bus;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use super::{attach_with, device_name, AttachedVirtio, PlannedDevice, VirtioSpec};
use crate::vm::error::VmError;
use crate::vm::exit_stats::DeviceNames;
use crate::vm::snapshot::devices::VirtioDeviceState;
use crate::vm::snapshot::SnapshotError;

/// Attaches each planned device as [`attach`] does, but with its transport restored from
/// its saved state (`states`, one per device in window order, each checked to be of the
/// window planned for it). Nothing runs until each is resumed.
pub fn attach_restored(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio_bus: &mut Bus,
    names: &mut DeviceNames,
    planned: &[PlannedDevice],
    states: &[VirtioDeviceState],
    state_path: &Path,
) -> Result<AttachedVirtio, VmError> {
    let inconsistent = |reason: String| SnapshotError::Inconsistent {
        path: state_path.to_path_buf(),
        reason,
    };
    if states.len() != planned.len() {
        return Err(inconsistent(format!(
            "its config has {} virtio devices, its device states {}",
            planned.len(),
            states.len()
        ))
        .into());
    }
    for (device, state) in planned.iter().zip(states) {
        if (device.spec.kind(), device.slot.base, device.slot.irq)
            != (state.kind.as_str(), state.base, state.irq)
        {
            return Err(inconsistent(format!(
                "{} at {:#x} (IRQ {}) is saved as {} (IRQ {})",
                device_name(device.spec.kind(), device.slot.base),
                device.slot.base,
                device.slot.irq,
                device_name(&state.kind, state.base),
                state.irq
            ))
            .into());
        }
    }
    for device in planned {
        if let VirtioSpec::Vsock(v) = &device.spec {
            remove_stale_socket(&v.uds_path).map_err(|source| VmError::DeviceIo {
                device: device_name("vsock", device.slot.base),
                op: "removing the stale socket at its saved path",
                source,
            })?;
        }
    }
    attach_with(vm, mmio_bus, names, planned, |index, model, irq| {
        let device = device_name(planned[index].spec.kind(), planned[index].slot.base);
        MmioTransport::restore(mem.clone(), model, irq, states[index].transport.clone()).map_err(
            |source| {
                SnapshotError::VirtioRestore {
                    path: state_path.to_path_buf(),
                    device,
                    source: Box::new(source),
                }
                .into()
            },
        )
    })
}

/// A restored vsock binds its saved socket path again, and a VMM that was killed (the
/// usual end of a snapshotted VM) leaves its socket file behind. A socket there that no
/// one listens on is that leftover and is removed; one a live VMM listens on (a second
/// restore of the same snapshot beside the first) is left, and the bind refuses it.
fn remove_stale_socket(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        _ => Ok(()),
    }
}
