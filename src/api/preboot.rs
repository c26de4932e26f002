//! The VM being described, request by request, before InstanceStart: each PUT is checked
//! as the same section of a config file is (`config_sections`), and InstanceStart turns the
//! whole into the same [`VmConfig`] `--config-file` builds. A later PUT of the same drive
//! or interface id replaces it, as in Firecracker.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::bodies::{MachineConfigUpdate, PartialDrive};
use crate::vm::config_sections::{
    self as sections, Balloon, BootSource, Drive, Entropy, MachineConfig, NetworkInterface, Vsock,
};
use crate::vm::device_specs::{BalloonSpec, DeviceSpecs, DiskSpec, NetSpec};
use crate::vm::rate_limits;
use crate::vm::VmConfig;

/// `GET /machine-config`'s answer (swagger's MachineConfiguration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineView {
    pub vcpu_count: u16,
    pub mem_size_mib: u64,
    pub smt: bool,
    pub track_dirty_pages: bool,
    pub huge_pages: String,
}

/// `GET /balloon`'s answer (swagger's Balloon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalloonView {
    pub amount_mib: u32,
    pub deflate_on_oom: bool,
    pub stats_polling_interval_s: u16,
}

impl From<&BalloonSpec> for BalloonView {
    fn from(b: &BalloonSpec) -> Self {
        BalloonView {
            amount_mib: b.amount_mib,
            deflate_on_oom: b.deflate_on_oom,
            stats_polling_interval_s: b.stats_interval_s,
        }
    }
}

struct Kernel {
    path: PathBuf,
    cmdline: Option<String>,
    initrd: Option<PathBuf>,
}

struct DriveEntry {
    id: String,
    is_root: bool,
    spec: DiskSpec,
}

/// The configuration so far.
pub struct Preboot {
    kernel: Option<Kernel>,
    machine: MachineView,
    drives: Vec<DriveEntry>,
    nets: Vec<(String, NetSpec)>,
    devices: DeviceSpecs,
    /// The default command line, when boot-source gives none.
    default_cmdline: String,
    /// Settings accepted that have no effect (told once, at InstanceStart).
    pub ignored: Vec<String>,
}

impl Preboot {
    /// An empty configuration with `cpus` vCPUs, `mem_mib` of RAM and `cmdline` until told
    /// otherwise (Firecracker's defaults are 1 and 128, as `vmm`'s).
    pub fn new(cpus: u16, mem_mib: u64, cmdline: &str) -> Preboot {
        Preboot {
            kernel: None,
            machine: MachineView {
                vcpu_count: cpus,
                mem_size_mib: mem_mib,
                smt: false,
                track_dirty_pages: false,
                huge_pages: "None".into(),
            },
            drives: Vec::new(),
            nets: Vec::new(),
            devices: DeviceSpecs::default(),
            default_cmdline: cmdline.to_string(),
            ignored: Vec::new(),
        }
    }

    pub fn machine(&self) -> &MachineView {
        &self.machine
    }

    /// Takes the vCPUs and memory of a VM started from elsewhere, for `GET /machine-config`.
    pub fn describe_machine(&mut self, cpus: u16, mem_mib: u64) {
        self.machine.vcpu_count = cpus;
        self.machine.mem_size_mib = mem_mib;
    }

    pub fn balloon(&self) -> Option<&BalloonSpec> {
        self.devices.balloon.as_ref()
    }

    pub fn put_boot_source(&mut self, b: BootSource) {
        self.kernel = Some(Kernel {
            path: b.kernel_image_path,
            cmdline: b.boot_args,
            initrd: b.initrd_path,
        });
    }

    pub fn put_machine_config(&mut self, m: MachineConfig) -> Result<(), String> {
        let update = MachineConfigUpdate {
            vcpu_count: Some(m.vcpu_count),
            mem_size_mib: Some(m.mem_size_mib),
            smt: m.smt,
            track_dirty_pages: m.track_dirty_pages,
            huge_pages: m.huge_pages,
            cpu_template: m.cpu_template,
        };
        self.patch_machine_config(update)
    }

    pub fn patch_machine_config(&mut self, m: MachineConfigUpdate) -> Result<(), String> {
        if m.vcpu_count == Some(0) {
            return Err(
                "The vCPU number is invalid! The vCPU number can only be 1 or an even \
                        number when SMT is enabled."
                    .into(),
            );
        }
        if m.mem_size_mib == Some(0) {
            return Err("The memory size (MiB) is invalid.".into());
        }
        let mut machine = self.machine.clone();
        machine.vcpu_count = m.vcpu_count.unwrap_or(machine.vcpu_count);
        machine.mem_size_mib = m.mem_size_mib.unwrap_or(machine.mem_size_mib);
        machine.smt = m.smt.unwrap_or(machine.smt);
        machine.track_dirty_pages = m.track_dirty_pages.unwrap_or(machine.track_dirty_pages);
        if let Some(h) = m.huge_pages.clone() {
            machine.huge_pages = h;
        }
        if let Some(b) = &self.devices.balloon {
            check_balloon(b.amount_mib, machine.mem_size_mib)?;
        }
        let as_config = MachineConfig {
            vcpu_count: machine.vcpu_count,
            mem_size_mib: machine.mem_size_mib,
            smt: Some(machine.smt),
            track_dirty_pages: Some(machine.track_dirty_pages),
            huge_pages: Some(machine.huge_pages.clone()),
            cpu_template: m.cpu_template,
        };
        self.note_ignored(sections::ignored_machine_settings(&as_config));
        self.machine = machine;
        Ok(())
    }

    pub fn put_drive(&mut self, d: Drive) -> Result<(), String> {
        let mut ignored = Vec::new();
        let at = format!("drive {:?}", d.drive_id);
        let spec = sections::disk(&d, &at, "drive", &mut ignored)?;
        if d.is_root_device && self.drives.iter().any(|e| e.is_root && e.id != d.drive_id) {
            return Err("A root block device already exists!".into());
        }
        self.note_ignored(ignored);
        let entry = DriveEntry {
            id: d.drive_id,
            is_root: d.is_root_device,
            spec,
        };
        match self.drives.iter_mut().find(|e| e.id == entry.id) {
            Some(existing) => *existing = entry,
            None => self.drives.push(entry),
        }
        Ok(())
    }

    /// A new backing file and/or rate limiter for a drive already put.
    pub fn patch_drive(&mut self, p: PartialDrive) -> Result<(), String> {
        let at = format!("drive {:?}", p.drive_id);
        let limiter =
            rate_limits::from_json(p.rate_limiter.as_ref(), &format!("{at}.rate_limiter"))?;
        let entry = self
            .drives
            .iter_mut()
            .find(|e| e.id == p.drive_id)
            .ok_or_else(|| format!("no drive with id {:?}", p.drive_id))?;
        if let Some(path) = p.path_on_host {
            entry.spec.path = path;
        }
        if p.rate_limiter.is_some() {
            entry.spec.rate_limiter = limiter;
        }
        Ok(())
    }

    pub fn put_network_interface(&mut self, n: NetworkInterface) -> Result<(), String> {
        let spec = sections::net(&n, &format!("network interface {:?}", n.iface_id))?;
        let others = || self.nets.iter().filter(|(id, _)| *id != n.iface_id);
        if others().any(|(_, other)| other.tap == spec.tap) {
            return Err(format!(
                "The host device name {} is already in use.",
                spec.tap
            ));
        }
        if spec.mac.is_some() && others().any(|(_, other)| other.mac == spec.mac) {
            return Err(format!(
                "The MAC address is already in use: {}",
                n.guest_mac.unwrap_or_default()
            ));
        }
        match self.nets.iter_mut().find(|(id, _)| *id == n.iface_id) {
            Some(existing) => existing.1 = spec,
            None => self.nets.push((n.iface_id, spec)),
        }
        Ok(())
    }

    pub fn put_vsock(&mut self, v: Vsock) -> Result<(), String> {
        self.devices.vsock = Some(sections::vsock(&v)?);
        Ok(())
    }

    pub fn put_entropy(&mut self, e: Entropy) -> Result<(), String> {
        self.devices.rng = Some(sections::rng(&e)?);
        Ok(())
    }

    pub fn put_balloon(&mut self, b: Balloon) -> Result<(), String> {
        check_balloon(b.amount_mib, self.machine.mem_size_mib)?;
        self.devices.balloon = Some(sections::balloon(&b));
        Ok(())
    }

    /// The VM to start; refused without a kernel, as Firecracker refuses.
    pub fn vm_config(&self, boot_timer: Option<Instant>) -> Result<VmConfig, String> {
        let kernel = self
            .kernel
            .as_ref()
            .ok_or("Cannot start microvm without kernel configuration.")?;
        let mut devices = self.devices.clone();
        devices.rootfs = self
            .drives
            .iter()
            .find(|e| e.is_root)
            .map(|e| e.spec.clone());
        devices.disks = self
            .drives
            .iter()
            .filter(|e| !e.is_root)
            .map(|e| e.spec.clone())
            .collect();
        devices.nets = self.nets.iter().map(|(_, spec)| spec.clone()).collect();
        Ok(VmConfig {
            kernel: kernel.path.clone(),
            mem_mib: self.machine.mem_size_mib,
            cpus: self.machine.vcpu_count,
            cmdline: kernel
                .cmdline
                .clone()
                .unwrap_or_else(|| self.default_cmdline.clone()),
            initrd: kernel.initrd.clone(),
            devices,
            boot_timer,
        })
    }

    fn note_ignored(&mut self, settings: Vec<String>) {
        for s in settings {
            if !self.ignored.contains(&s) {
                self.ignored.push(s);
            }
        }
    }
}

/// A balloon may not ask for more than the guest has (Firecracker's check, and `vmm`'s
/// `spec_checks`).
pub fn check_balloon(amount_mib: u32, mem_mib: u64) -> Result<(), String> {
    if u64::from(amount_mib) > mem_mib {
        return Err(format!(
            "the balloon's amount_mib {amount_mib} is more than the guest's {mem_mib} MiB of \
             RAM"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "preboot_tests.rs"]
mod tests;
