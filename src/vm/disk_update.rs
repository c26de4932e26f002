//! Replacing a running VM's disk image (`VmControl::update_disk`, the API's
//! `PATCH /drives/{id}` after boot): the drive is found by its id, its new file opened on
//! the calling thread (the API thread, whose seccomp filter allows opening and sizing
//! files; the device's worker needs nothing new), checked as a disk at boot is, and handed
//! to the device, which switches between two requests and tells the guest. The VM's
//! config then names the new file, so a snapshot records it and a restore reopens it.

use std::path::Path;

use devices::virtio::DiskImage;

use super::control::ControlError;
use super::device_specs::{DeviceSpecs, DiskSpec};
use super::snapshot::{lock, SnapshotSource};

/// The disk whose drive id is `drive_id`: its index among the disks in window order (the
/// root disk first, as `virtio_setup::plan` lays them out) and its spec.
pub fn find_drive<'a>(devices: &'a DeviceSpecs, drive_id: &str) -> Option<(usize, &'a DiskSpec)> {
    devices
        .rootfs
        .iter()
        .chain(&devices.disks)
        .enumerate()
        .find(|(_, disk)| disk.id.as_deref() == Some(drive_id))
}

fn find_drive_mut<'a>(devices: &'a mut DeviceSpecs, drive_id: &str) -> Option<&'a mut DiskSpec> {
    devices
        .rootfs
        .iter_mut()
        .chain(&mut devices.disks)
        .find(|disk| disk.id.as_deref() == Some(drive_id))
}

/// Makes `path` the backing file of drive `drive_id` of the VM `source` lends.
pub fn update_disk(
    source: &SnapshotSource,
    drive_id: &str,
    path: &Path,
) -> Result<(), ControlError> {
    // Held throughout: two updates of one drive land in the order they were asked, and a
    // snapshot's config names the file its device state was taken with.
    let mut config = lock(&source.config);
    let unknown = || ControlError::UnknownDrive {
        drive_id: drive_id.to_string(),
    };
    let (index, spec) = find_drive(&config.devices, drive_id).ok_or_else(unknown)?;
    // Opened as the drive was configured: the guest negotiated its read-only flag once.
    let image = DiskImage::open(path, spec.read_only).map_err(|source| ControlError::DiskOpen {
        drive_id: drive_id.to_string(),
        source,
    })?;
    let attached = source
        .virtio
        .get(index)
        .filter(|attached| attached.kind == "blk")
        .ok_or_else(unknown)?;
    lock(&attached.transport)
        .swap_disk(image)
        .map_err(|source| ControlError::DiskSwap {
            drive_id: drive_id.to_string(),
            source,
        })?;
    if let Some(spec) = find_drive_mut(&mut config.devices, drive_id) {
        spec.path = path.to_path_buf();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn disk(path: &str, id: Option<&str>) -> DiskSpec {
        DiskSpec {
            path: PathBuf::from(path),
            read_only: false,
            id: id.map(str::to_string),
            rate_limiter: None,
        }
    }

    #[test]
    fn drives_are_found_by_id_in_window_order_root_disk_first() {
        let devices = DeviceSpecs {
            rootfs: Some(disk("root.img", Some("rootfs"))),
            disks: vec![disk("a.img", None), disk("b.img", Some("data"))],
            ..DeviceSpecs::default()
        };
        assert_eq!(find_drive(&devices, "rootfs").map(|(i, _)| i), Some(0));
        let (index, spec) = find_drive(&devices, "data").unwrap();
        assert_eq!((index, spec.path.as_path()), (2, Path::new("b.img")));
        assert!(find_drive(&devices, "nope").is_none());
    }
}
