//! Virtio devices: planned (a window and an IRQ each, announced on the kernel command
//! line) before anything touches KVM, then created and attached: the transport goes on the
//! MMIO bus, each queue's notify register becomes a KVM ioeventfd and the device's
//! interrupt a KVM irqfd, so neither a notify nor an interrupt needs a userspace exit.

use devices::Bus;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use super::device_slots::{DeviceSlot, DeviceSlots};
use super::device_specs::{BalloonSpec, DeviceSpecs, DiskSpec, NetSpec, VsockSpec};
use super::error::VmError;

#[derive(Debug, Clone)]
pub enum VirtioSpec {
    Disk(DiskSpec),
    Net(NetSpec),
    Vsock(VsockSpec),
    Rng,
    Balloon(BalloonSpec),
}

#[derive(Debug, Clone)]
pub struct PlannedDevice {
    pub spec: VirtioSpec,
    pub slot: DeviceSlot,
}

/// Gives every device its slot, the root disk first so that it is /dev/vda.
pub fn plan(specs: &DeviceSpecs) -> Result<Vec<PlannedDevice>, VmError> {
    let mut slots = DeviceSlots::new();
    let ordered = specs
        .rootfs
        .iter()
        .chain(&specs.disks)
        .cloned()
        .map(VirtioSpec::Disk)
        .chain(specs.nets.iter().cloned().map(VirtioSpec::Net))
        .chain(specs.vsock.iter().cloned().map(VirtioSpec::Vsock))
        .chain(specs.rng.then_some(VirtioSpec::Rng))
        .chain(specs.balloon.iter().cloned().map(VirtioSpec::Balloon));
    ordered
        .map(|spec| {
            Ok(PlannedDevice {
                spec,
                slot: slots.allocate()?,
            })
        })
        .collect()
}

/// The command line the guest gets: the user's, `root=/dev/vda rw` for a root disk unless
/// the user chose a root, and one `virtio_mmio.device=` token per device.
pub fn guest_cmdline(user: &str, has_rootfs: bool, planned: &[PlannedDevice]) -> String {
    let mut cmdline = user.trim().to_string();
    let user_chose_root = user.split_whitespace().any(|t| t.starts_with("root="));
    if has_rootfs && !user_chose_root {
        push_token(&mut cmdline, "root=/dev/vda rw");
    }
    for device in planned {
        push_token(
            &mut cmdline,
            &cmdline_arg(device.slot.base, device.slot.len, device.slot.irq),
        );
    }
    cmdline
}

fn push_token(cmdline: &mut String, token: &str) {
    if !cmdline.is_empty() {
        cmdline.push(' ');
    }
    cmdline.push_str(token);
}

/// Creates each planned device and attaches it to the VM.
pub fn attach(
    _vm: &VmFd,
    _mem: &GuestMemoryMmap,
    _mmio_bus: &mut Bus,
    planned: &[PlannedDevice],
) -> Result<Vec<()>, VmError> {
    // TEMPORARY while the device models land in devices/src/virtio/.
    match planned.first() {
        Some(d) => Err(VmError::Device {
            what: format!("{:?}", d.spec),
            reason: "virtio devices are being wired in".into(),
        }),
        None => Ok(Vec::new()),
    }
}

fn cmdline_arg(base: u64, len: u64, irq: u32) -> String {
    format!("virtio_mmio.device={}K@{base:#x}:{irq}", len / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn disk(path: &str) -> DiskSpec {
        DiskSpec {
            path: PathBuf::from(path),
            read_only: false,
            id: None,
        }
    }

    #[test]
    fn root_disk_comes_first_and_gets_the_first_window() {
        let specs = DeviceSpecs {
            rootfs: Some(disk("root.img")),
            disks: vec![disk("data.img")],
            rng: true,
            ..Default::default()
        };
        let planned = plan(&specs).unwrap();
        assert_eq!(planned.len(), 3);
        match &planned[0].spec {
            VirtioSpec::Disk(d) => assert_eq!(d.path, PathBuf::from("root.img")),
            other => panic!("first device is {other:?}"),
        }
        assert!(matches!(planned[2].spec, VirtioSpec::Rng));
    }

    #[test]
    fn cmdline_gets_root_and_one_token_per_device() {
        let specs = DeviceSpecs {
            rootfs: Some(disk("root.img")),
            ..Default::default()
        };
        let planned = plan(&specs).unwrap();
        let cmdline = guest_cmdline("console=ttyS0", true, &planned);
        assert!(
            cmdline
                .starts_with("console=ttyS0 root=/dev/vda rw virtio_mmio.device=4K@0xd0000000:5"),
            "{cmdline}"
        );
    }

    #[test]
    fn users_root_is_kept() {
        let specs = DeviceSpecs {
            rootfs: Some(disk("root.img")),
            ..Default::default()
        };
        let planned = plan(&specs).unwrap();
        let cmdline = guest_cmdline("root=/dev/vda1 ro", true, &planned);
        assert!(!cmdline.contains("/dev/vda rw"), "{cmdline}");
    }
}
