//! Restoring a VM from a snapshot (`vmm --restore STATE --mem-file MEM`): the state file
//! is read and checked and the memory file's size compared with it before anything is
//! created, so a bad pair of files is refused (exit status 2) without a VM. Then the same
//! machine is built as at boot (`super::boot`), but with no kernel, no boot structures
//! and no boot registers: guest RAM is the memory file mapped privately, the vCPUs, the
//! irqchip, PIT, clock and serial port take their saved state, the guest gets a new VM
//! generation ID (and the interrupt that announces it), and the VM runs on from where it
//! was paused.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use devices::{StopReason, StopSignal};
use vm_memory::GuestAddress;

use super::device_specs::DeviceSpecs;
use super::snapshot::{self, vcpu_state, vm_state, SnapshotError, VmSnapshot};
use super::{devices_setup, kvm_setup, memory, run_built, virtio_setup};
use super::{RunOptions, VmError, VmOutcome};

/// What to restore, and how.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// The state file.
    pub state: PathBuf,
    /// The memory file, mapped MAP_PRIVATE: the guest's writes never reach it.
    pub mem_file: PathBuf,
    /// Run the vCPUs at once; otherwise they stay parked until the control resumes them
    /// (`RunOptions::control`, which a restore that does not resume needs).
    pub resume: bool,
    /// When the VMM started: the boot timer's origin, if the VM had one.
    pub started: Instant,
    /// `vmm bench restore`: report the time from `started` to the guest's first exit
    /// after the restore, then stop the VM.
    pub report_first_exit: bool,
    /// Where the vsock device listens instead of the snapshot's path: each VM restored
    /// from one warm snapshot (`vmm run --from-snapshot`) needs a socket of its own.
    pub vsock_uds: Option<PathBuf>,
    /// The TAP of the snapshot's one NIC instead of the snapshot's, for the same reason
    /// (`vmm run --from-snapshot --net link`: each run has a TAP of its own).
    pub tap: Option<String>,
}

/// Restores the VM of `config` and runs it until it stops, with the console, stop signal,
/// control and reports of `options`.
pub fn restore_with(config: &RestoreConfig, options: RunOptions) -> Result<VmOutcome, VmError> {
    if !config.resume && options.control.is_none() {
        return Err(VmError::PausedWithoutControl);
    }
    let built = build(config, &options)?;
    run_built::run_built(built, options)
}

fn build(config: &RestoreConfig, options: &RunOptions) -> Result<run_built::BuiltVm, VmError> {
    let mut snapshot: VmSnapshot = snapshot::file::read(&config.state)?;
    own_backends(&mut snapshot.config.devices, config)?;
    let saved = &snapshot.config;
    if let Some(reason) = saved.inconsistency(snapshot.vcpus.len()) {
        return Err(SnapshotError::Inconsistent {
            path: config.state.clone(),
            reason,
        }
        .into());
    }
    let mem_file = open_memory_file(&config.mem_file, saved.ram_bytes())?;
    let planned = virtio_setup::plan(&saved.devices)?;
    let regions: Vec<_> = saved
        .regions
        .iter()
        .map(|r| (GuestAddress(r.guest_base), r.len as usize, r.file_offset))
        .collect();
    let mem = memory::map_guest_memory_from(&mem_file, &regions)?;
    let kvm = kvm_setup::open_checked_kvm()?;
    let num_cpus = kvm_setup::check_cpu_count(&kvm, u16::from(saved.cpus))?;
    let pvm_host = crate::host::pvm_detected(Some(&kvm));
    let vm = kvm_setup::create_vm(&kvm)?;
    memory::register_with_kvm(&vm, &mem)?;
    kvm_setup::create_interrupt_controllers(&vm)?;

    let stop = match &options.stop {
        Some(stop) => stop.clone(),
        None => Arc::new(StopSignal::new().map_err(VmError::io("creating the stop event"))?),
    };
    let serial = snapshot.devices.serial.clone().into();
    let mut devices = devices_setup::setup_devices(
        &vm,
        saved.boot_timer.then_some(config.started),
        &options.console,
        stop,
        Some(&serial),
    )?;
    // Each device is made anew from its saved spec (disks and taps reopened by path),
    // with its transport's and its own state checked before any runs.
    let virtio = virtio_setup::attach_restored(
        &vm,
        &mem,
        &mut devices.mmio_bus,
        &mut devices.names,
        &planned,
        &snapshot.devices.virtio,
        &config.state,
    )?;

    let save_spec = snapshot::SaveSpec::of(&kvm, &vm)?;
    let vcpus = snapshot
        .vcpus
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let index = i as u8;
            let vcpu = vm
                .create_vcpu(u64::from(index))
                .map_err(VmError::vcpu(index, "creating"))?;
            vcpu_state::restore(&vcpu, index, state, save_spec.xsave2_size)?;
            Ok(vcpu)
        })
        .collect::<Result<Vec<_>, VmError>>()?;
    debug_assert_eq!(vcpus.len(), usize::from(num_cpus));
    vm_state::restore(&vm, &snapshot.vm)?;
    super::generation_id::announce_new_generation(&vm, &mem)?;
    // The devices run before the vCPUs do; a restore that stays paused leaves them
    // stopped until the control resumes the VM.
    if config.resume {
        snapshot::resume_all(&virtio.transports)?;
    }

    Ok(run_built::BuiltVm {
        config: snapshot.config,
        vm: Arc::new(vm),
        mem,
        devices,
        virtio,
        vcpus,
        pvm_host,
        save_spec,
        start_paused: !config.resume,
        first_exit: config
            .report_first_exit
            .then(|| Arc::new(FirstExitProbe::new(config.started))),
    })
}

/// Points the snapshot's vsock socket and its one NIC's TAP at the ones `config` gives,
/// if any: each VM restored from one warm snapshot has backends of its own.
fn own_backends(devices: &mut DeviceSpecs, config: &RestoreConfig) -> Result<(), SnapshotError> {
    if let (Some(uds), Some(vsock)) = (&config.vsock_uds, &mut devices.vsock) {
        vsock.uds_path.clone_from(uds);
    }
    if let Some(tap) = &config.tap {
        match devices.nets.as_mut_slice() {
            [nic] => nic.tap.clone_from(tap),
            nics => {
                return Err(SnapshotError::NotOneNic {
                    path: config.state.clone(),
                    nics: nics.len(),
                    tap: tap.clone(),
                })
            }
        }
    }
    Ok(())
}

/// Opens the memory file and checks that it holds `expected` bytes of guest RAM.
fn open_memory_file(path: &std::path::Path, expected: u64) -> Result<std::fs::File, SnapshotError> {
    use devices::user_file::{open, Allowed};
    let file = open(path, false, Allowed::RegularFile).map_err(SnapshotError::OpenMemory)?;
    let found = file
        .metadata()
        .map_err(|source| SnapshotError::MapMemory {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if found != expected {
        return Err(SnapshotError::MemoryFileSize {
            path: path.to_path_buf(),
            found,
            expected,
        });
    }
    Ok(file)
}

/// `vmm bench restore`'s measurement: the first time a vCPU leaves KVM_RUN with an exit
/// after the restore, the guest has run again. Says how long after `origin` that was on
/// stderr, and stops the VM.
#[derive(Debug)]
pub struct FirstExitProbe {
    origin: Instant,
    seen: AtomicBool,
}

impl FirstExitProbe {
    pub fn new(origin: Instant) -> Self {
        FirstExitProbe {
            origin,
            seen: AtomicBool::new(false),
        }
    }

    /// Called by a vCPU after each exit it handled.
    pub fn observe(&self, stop: &StopSignal) {
        if self.seen.swap(true, Ordering::AcqRel) {
            return;
        }
        let us = self.origin.elapsed().as_micros();
        eprintln!("vmm: restored guest's first exit {us} µs after the VMM started");
        stop.request(StopReason::Requested);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::device_specs::{NetSpec, VsockSpec};

    fn config(tap: Option<&str>, vsock_uds: Option<&str>) -> RestoreConfig {
        RestoreConfig {
            state: "/snap/state".into(),
            mem_file: "/snap/mem".into(),
            resume: true,
            started: Instant::now(),
            report_first_exit: false,
            vsock_uds: vsock_uds.map(PathBuf::from),
            tap: tap.map(str::to_owned),
        }
    }

    fn nic(tap: &str) -> NetSpec {
        NetSpec {
            tap: tap.into(),
            mac: Some([6, 0, 10, 231, 0, 2]),
            rx_rate_limiter: None,
            tx_rate_limiter: None,
        }
    }

    #[test]
    fn a_restore_puts_the_one_nic_on_its_own_tap_and_the_vsock_on_its_own_socket() {
        let mut devices = DeviceSpecs {
            nets: vec![nic("vmm100")],
            vsock: Some(VsockSpec {
                guest_cid: 3,
                uds_path: "/maker/v.sock".into(),
            }),
            ..DeviceSpecs::default()
        };
        own_backends(&mut devices, &config(Some("vmm200"), Some("/run/v.sock"))).unwrap();
        assert_eq!(devices.nets, vec![nic("vmm200")], "only the TAP changes");
        assert_eq!(
            devices.vsock.unwrap().uds_path,
            PathBuf::from("/run/v.sock")
        );
    }

    #[test]
    fn a_tap_for_a_snapshot_without_exactly_one_nic_is_refused_naming_both() {
        for nets in [vec![], vec![nic("a"), nic("b")]] {
            let count = nets.len();
            let mut devices = DeviceSpecs {
                nets,
                ..DeviceSpecs::default()
            };
            let err = own_backends(&mut devices, &config(Some("vmm200"), None)).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("{count} NICs")) && text.contains("vmm200"),
                "{text}"
            );
            assert!(err.is_bad_input(), "{text}");
        }
    }

    #[test]
    fn without_overrides_the_snapshots_backends_stay() {
        let mut devices = DeviceSpecs {
            nets: vec![nic("vmm100")],
            ..DeviceSpecs::default()
        };
        let before = devices.clone();
        own_backends(&mut devices, &config(None, None)).unwrap();
        assert_eq!(devices, before);
    }
}
