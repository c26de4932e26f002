//! `vmm run --from-snapshot`: the run's microVM is restored from a warm snapshot (see
//! [`warm_snapshot`]) instead of booted: on the VM's thread, where it runs on as soon as
//! it is built, while the run finds the workload's image ([`begin`], then
//! [`Pending::finish`]). The snapshot's guest was paused with its agent waiting and a
//! placeholder disk as `rootfs`; the placeholder's backing file is swapped for the image,
//! and the agent, told the image's size, waits for the guest to see it before it mounts
//! it. The first run for a kernel, initramfs, VM size and NIC (or none) boots the guest
//! once to make the snapshot. A run with `--net link` restores a snapshot whose VM has a
//! NIC, and puts that NIC on its own TAP; the agent configures the guest's end when it
//! creates the workload, as after a boot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::args::VmSize;
use super::background_vm::BackgroundVm;
use super::error::{console_suffix, RunError};
use super::images::GuestImages;
use super::timings::Timings;
use super::warm_snapshot::{self, Entry, Inputs, KeyLock};
use super::{agent_client, run_vm_config, GUEST_CMDLINE, ROOTFS_DRIVE};
use crate::vm::device_specs::NetSpec;
use crate::vm::{RestoreConfig, VmControl};

/// How long a restore may take to read its state and map its memory.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// The socket of the VM that makes a snapshot, in the cache directory: not the run's, so
/// that the restored VM binds the run's afresh.
const MAKER_SOCKET: &str = "maker.sock";

/// A restore under way: the VM is being built on its thread, and runs on once it is,
/// while the caller finds the workload's image; [`Pending::finish`] swaps it in.
pub(super) struct Pending {
    dir: PathBuf,
    key: String,
    entry: Entry,
    stub: PathBuf,
    made_now: bool,
    lock: KeyLock,
    restored: Restored,
    uds: PathBuf,
    boot_timeout: u64,
    inputs: OwnedInputs,
}

/// [`Inputs`] kept for a second making of the snapshot.
struct OwnedInputs {
    vmm: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    mem_mib: u64,
    cpus: u16,
    /// The NIC of a run with a link: the snapshot's VM has one (on the first run's TAP);
    /// later runs put it on theirs.
    nic: Option<NetSpec>,
}

impl OwnedInputs {
    fn tap(&self) -> Option<&str> {
        self.nic.as_ref().map(|nic| nic.tap.as_str())
    }

    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            vmm: &self.vmm,
            kernel: &self.kernel,
            initrd: &self.initrd,
            mem_mib: self.mem_mib,
            cpus: self.cpus,
            cmdline: GUEST_CMDLINE,
            nic: self.nic.is_some(),
        }
    }
}

/// Starts restoring the warm snapshot for `images`, `size` and `nic` (made first if there
/// is none), with its vsock device at `uds` and its NIC, if any, on `nic`'s TAP.
pub(super) fn begin(
    images: &GuestImages,
    size: VmSize,
    nic: Option<NetSpec>,
    uds: &Path,
    boot_timeout: u64,
    timings: &Timings,
) -> Result<Pending, RunError> {
    let dir = warm_snapshot::cache_dir();
    let cache_err = |action| move |source| RunError::WarmSnapshot { action, source };
    warm_snapshot::create_dir(&dir).map_err(cache_err("create the snapshot cache"))?;
    warm_snapshot::sweep(&dir);
    let inputs = OwnedInputs {
        vmm: std::env::current_exe().map_err(cache_err("find the vmm binary"))?,
        kernel: images.kernel.clone(),
        initrd: images.initrd.clone(),
        mem_mib: size.mem_mib,
        cpus: size.cpus,
        nic,
    };
    let key = warm_snapshot::key(&inputs.inputs()).map_err(cache_err("key the guest images"))?;
    let lock = KeyLock::acquire(&dir, &key).map_err(cache_err("lock the snapshot"))?;
    let stub = warm_snapshot::stub(&dir).map_err(cache_err("make the placeholder disk"))?;
    let mut entry = warm_snapshot::entry(&dir, &key);
    let made_now = !entry.exists();
    if made_now {
        entry = make(&dir, &key, &inputs, &stub, boot_timeout)?;
        timings.mark("snapshot made");
    }
    let restored = restore(&entry, uds, inputs.tap())?;
    Ok(Pending {
        dir,
        key,
        entry,
        stub,
        made_now,
        lock,
        restored,
        uds: uds.to_owned(),
        boot_timeout,
        inputs,
    })
}

impl Pending {
    /// Once the restored VM is built: swaps `image` in for the placeholder disk. The guest
    /// sees it with the configuration-change interrupt; the agent waits for its size
    /// before it mounts it.
    pub(super) fn finish(self, image: &Path, timings: &Timings) -> Result<BackgroundVm, RunError> {
        let Pending {
            dir,
            key,
            mut entry,
            stub,
            made_now,
            lock,
            restored,
            uds,
            boot_timeout,
            inputs,
        } = self;
        let restored = match restored.attached() {
            Ok(restored) => restored,
            // A snapshot this vmm made but cannot restore (a host that changed under it):
            // made again once, from a fresh boot.
            Err(e) if !made_now => {
                eprintln!(
                    "vmm: the warm snapshot {:?} did not restore ({}); making it again",
                    entry.dir,
                    edge::error_chain(&e)
                );
                warm_snapshot::discard(&dir, &key);
                entry = make(&dir, &key, &inputs, &stub, boot_timeout)?;
                timings.mark("snapshot made");
                restore(&entry, &uds, inputs.tap())?.attached()?
            }
            Err(e) => return Err(e),
        };
        warm_snapshot::touch(&entry);
        // The restore has read the state and mapped the memory: the files may go now.
        drop(lock);
        warm_snapshot::evict(&dir, &key);
        timings.mark("vm restored");
        restored.control.update_disk(ROOTFS_DRIVE, image)?;
        timings.mark("disk swapped");
        Ok(restored.vm)
    }
}

struct Restored {
    vm: BackgroundVm,
    control: Arc<VmControl>,
}

/// Starts restoring `entry`, with its vsock device at `uds` and its NIC on `tap`: the guest
/// runs on as soon as it is built, catching up with its restore (the vsock reset, its
/// clock) while the run finds the workload's image.
fn restore(entry: &Entry, uds: &Path, tap: Option<&str>) -> Result<Restored, RunError> {
    let control = VmControl::new();
    let vm = BackgroundVm::restore(
        RestoreConfig {
            state: entry.state.clone(),
            mem_file: entry.mem.clone(),
            resume: true,
            started: Instant::now(),
            report_first_exit: false,
            vsock_uds: Some(uds.to_owned()),
            tap: tap.map(str::to_owned),
        },
        control.clone(),
    )?;
    Ok(Restored { vm, control })
}

impl Restored {
    /// Returns once the VM is built (its state read, its memory mapped).
    fn attached(mut self) -> Result<Self, RunError> {
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        while !self.control.wait_attached(Duration::from_millis(20)) {
            if self.vm.has_ended() {
                return Err(self.vm.ended_error());
            }
            if Instant::now() >= deadline {
                return Err(RunError::WarmSnapshotStuck {
                    secs: ATTACH_TIMEOUT.as_secs(),
                });
            }
        }
        Ok(self)
    }
}

/// Boots the guest with the placeholder disk, waits for its agent to answer, and
/// snapshots it paused; publishes the snapshot as `key`'s (whose lock the caller holds).
fn make(
    dir: &Path,
    key: &str,
    owned: &OwnedInputs,
    stub: &Path,
    boot_timeout: u64,
) -> Result<Entry, RunError> {
    let inputs = owned.inputs();
    eprintln!(
        "vmm: making the warm snapshot for this kernel, initramfs and VM size (once: it \
         boots the guest)"
    );
    let cache_err = |action| move |source| RunError::WarmSnapshot { action, source };
    let temp = warm_snapshot::temp_entry(dir, key).map_err(cache_err("make a directory"))?;
    let uds = temp.dir.join(MAKER_SOCKET);
    let control = VmControl::new();
    let size = VmSize {
        mem_mib: inputs.mem_mib,
        cpus: inputs.cpus,
    };
    let mut config = run_vm_config(
        inputs.kernel.to_owned(),
        inputs.initrd.to_owned(),
        size,
        stub.to_owned(),
        &uds,
    );
    // The run's own TAP: it is gone when this VM stops, before the restore makes it anew.
    config.devices.nets = owned.nic.iter().cloned().collect();
    let mut vm = BackgroundVm::start(config, Some(control.clone()))?;
    let result = snapshot_when_agent_answers(&mut vm, &control, &uds, &temp, boot_timeout);
    vm.stop();
    let _ = std::fs::remove_file(&uds);
    match result {
        Ok(()) => warm_snapshot::publish(dir, key, &temp).map_err(cache_err("publish")),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temp.dir);
            Err(e)
        }
    }
}

fn snapshot_when_agent_answers(
    vm: &mut BackgroundVm,
    control: &VmControl,
    uds: &Path,
    temp: &Entry,
    boot_timeout: u64,
) -> Result<(), RunError> {
    let deadline = Instant::now() + Duration::from_secs(boot_timeout);
    let mut pause = Duration::from_millis(1);
    loop {
        if vm.has_ended() {
            return Err(vm.ended_error());
        }
        // The connection closes at once: restored connections are reset anyway, and the
        // agent's answer proves it is up and listening.
        if agent_client::Control::connect(uds, None)?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(RunError::BootTimeout {
                secs: boot_timeout,
                console: console_suffix(&vm.console_tail()),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    control.pause()?;
    control.snapshot(&temp.state, &temp.mem)?;
    Ok(())
}
