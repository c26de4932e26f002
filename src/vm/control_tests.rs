//! The pause protocol with stand-in vCPU threads (they park as `vcpu::run_vcpu` does,
//! without KVM) and a stand-in snapshot writer.

use std::sync::atomic::AtomicUsize;
use std::thread::JoinHandle;

use super::*;

/// Records what it was asked to write.
#[derive(Default)]
struct FakeWriter {
    writes: AtomicUsize,
    vcpus_seen: Mutex<Vec<u64>>,
    device_resumes: AtomicUsize,
    /// The (drive id, path) of each disk update it took.
    disk_updates: Mutex<Vec<(String, std::path::PathBuf)>>,
}

/// The fake VM's devices: one disk, drive "data".
fn fake_devices() -> crate::vm::device_specs::DeviceSpecs {
    crate::vm::device_specs::DeviceSpecs {
        disks: vec![crate::vm::device_specs::DiskSpec {
            path: "a.img".into(),
            read_only: false,
            id: Some("data".into()),
            rate_limiter: None,
        }],
        ..Default::default()
    }
}

impl SnapshotWriter for FakeWriter {
    fn write(&self, vcpus: Vec<VcpuState>, _: &Path, _: &Path) -> Result<(), SnapshotError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        *self.vcpus_seen.lock().unwrap() = vcpus.iter().map(|v| v.regs.rip).collect();
        Ok(())
    }

    fn resume_devices(&self) -> Result<(), SnapshotError> {
        self.device_resumes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Finds the drive as the VM does; takes the update without opening anything.
    fn update_disk(&self, drive_id: &str, path: &Path) -> Result<(), ControlError> {
        super::super::disk_update::find_drive(&fake_devices(), drive_id).ok_or_else(|| {
            ControlError::UnknownDrive {
                drive_id: drive_id.to_string(),
            }
        })?;
        let update = (drive_id.to_string(), path.to_path_buf());
        self.disk_updates.lock().unwrap().push(update);
        Ok(())
    }
}

struct Vm {
    control: Arc<VmControl>,
    stop: Arc<StopSignal>,
    writer: Arc<FakeWriter>,
    /// Turns of each vCPU's loop outside park: grows while the VM runs.
    turns: Arc<Vec<AtomicUsize>>,
    threads: Vec<JoinHandle<()>>,
}

fn start(vcpus: usize, paused: bool) -> Vm {
    let control = VmControl::new();
    let stop = Arc::new(StopSignal::new().unwrap());
    let writer = Arc::new(FakeWriter::default());
    control.attach(vcpus, stop.clone(), writer.clone(), paused);
    let turns: Arc<Vec<AtomicUsize>> = Arc::new((0..vcpus).map(|_| AtomicUsize::new(0)).collect());
    let threads = (0..vcpus)
        .map(|i| {
            let (control, stop, turns) = (control.clone(), stop.clone(), turns.clone());
            std::thread::spawn(move || {
                while !stop.is_requested() {
                    if control.pause_requested() {
                        control.park(i, &stop, || Ok(VcpuState::for_tests(0x1000 + i as u64)));
                        continue;
                    }
                    turns[i].fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(100));
                }
            })
        })
        .collect();
    Vm {
        control,
        stop,
        writer,
        turns,
        threads,
    }
}

impl Vm {
    fn turns(&self) -> Vec<usize> {
        self.turns
            .iter()
            .map(|t| t.load(Ordering::SeqCst))
            .collect()
    }

    fn stop_and_join(self) {
        self.stop.request(devices::StopReason::Requested);
        self.control.detach();
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

#[test]
fn pause_returns_once_every_vcpu_is_parked_and_resume_lets_them_run() {
    let vm = start(3, false);
    vm.control.pause().unwrap();
    assert!(vm.control.is_paused());
    let before = vm.turns();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(vm.turns(), before, "no vCPU turns while paused");

    vm.control.resume().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(!vm.control.is_paused());
    assert!(vm.turns().iter().zip(&before).all(|(now, then)| now > then));
    vm.stop_and_join();
}

#[test]
fn resume_starts_the_devices_again_before_the_vcpus() {
    let vm = start(1, false);
    vm.control.pause().unwrap();
    assert_eq!(vm.writer.device_resumes.load(Ordering::SeqCst), 0);
    vm.control.resume().unwrap();
    assert_eq!(vm.writer.device_resumes.load(Ordering::SeqCst), 1);
    vm.stop_and_join();
}

#[test]
fn a_snapshot_gets_every_vcpus_state_in_index_order() {
    let vm = start(2, false);
    vm.control.pause().unwrap();
    vm.control.snapshot(Path::new("s"), Path::new("m")).unwrap();
    assert_eq!(vm.writer.writes.load(Ordering::SeqCst), 1);
    assert_eq!(*vm.writer.vcpus_seen.lock().unwrap(), vec![0x1000, 0x1001]);
    assert!(
        vm.control.is_paused(),
        "the VM stays paused after a snapshot"
    );
    vm.stop_and_join();
}

#[test]
fn a_snapshot_of_a_running_vm_is_refused() {
    let vm = start(1, false);
    let e = vm
        .control
        .snapshot(Path::new("s"), Path::new("m"))
        .unwrap_err();
    assert!(matches!(e, ControlError::NotPaused), "{e}");
    assert_eq!(vm.writer.writes.load(Ordering::SeqCst), 0);
    vm.stop_and_join();
}

#[test]
fn a_stop_releases_parked_vcpus() {
    let vm = start(2, false);
    vm.control.pause().unwrap();
    let started = Instant::now();
    vm.stop_and_join();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_vm_attached_paused_never_runs_until_resumed() {
    let vm = start(2, true);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(vm.turns(), vec![0, 0]);
    assert!(vm.control.is_paused());
    vm.control.resume().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(vm.turns().iter().all(|&t| t > 0));
    vm.stop_and_join();
}

#[test]
fn without_a_vm_every_operation_says_so() {
    let control = VmControl::new();
    assert!(matches!(control.pause(), Err(ControlError::NotRunning)));
    assert!(matches!(control.resume(), Err(ControlError::NotRunning)));
    assert!(matches!(
        control.snapshot(Path::new("s"), Path::new("m")),
        Err(ControlError::NotRunning)
    ));
    assert!(!control.is_paused());
    assert!(matches!(
        control.update_disk("data", Path::new("b.img")),
        Err(ControlError::NotRunning)
    ));
}

#[test]
fn a_disk_update_before_a_vm_is_attached_or_after_it_stopped_is_not_running() {
    let control = VmControl::new();
    let e = control.update_disk("data", Path::new("b.img")).unwrap_err();
    assert!(matches!(e, ControlError::NotRunning), "{e}");
    let vm = start(1, false);
    let control = vm.control.clone();
    vm.stop_and_join();
    let e = control.update_disk("data", Path::new("b.img")).unwrap_err();
    assert!(matches!(e, ControlError::NotRunning), "{e}");
}

#[test]
fn a_disk_update_of_an_unknown_drive_is_refused_with_its_id() {
    let vm = start(1, false);
    let e = vm
        .control
        .update_disk("nope", Path::new("b.img"))
        .unwrap_err();
    assert!(
        matches!(&e, ControlError::UnknownDrive { drive_id } if drive_id == "nope"),
        "{e}"
    );
    assert_eq!(e.to_string(), "the VM has no drive with id \"nope\"");
    assert!(vm.writer.disk_updates.lock().unwrap().is_empty());
    vm.stop_and_join();
}

#[test]
fn a_disk_update_reaches_the_vm_running_or_paused() {
    let vm = start(1, false);
    vm.control.update_disk("data", Path::new("b.img")).unwrap();
    vm.control.pause().unwrap();
    vm.control.update_disk("data", Path::new("c.img")).unwrap();
    assert_eq!(
        *vm.writer.disk_updates.lock().unwrap(),
        vec![
            ("data".to_string(), "b.img".into()),
            ("data".to_string(), "c.img".into())
        ]
    );
    vm.stop_and_join();
}

#[test]
fn a_pause_that_no_vcpu_answers_times_out_and_leaves_the_vm_running() {
    let control = VmControl::new();
    let stop = Arc::new(StopSignal::new().unwrap());
    // A vCPU that never looks at the flag (stuck in a device model).
    control.attach(1, stop, Arc::new(FakeWriter::default()), false);
    let e = control.pause().unwrap_err();
    assert!(
        matches!(
            e,
            ControlError::PauseTimeout {
                parked: 0,
                vcpus: 1
            }
        ),
        "{e}"
    );
    assert!(!control.pause_requested(), "the pause is withdrawn");
}

#[test]
fn waiting_for_attach_returns_once_a_vm_attaches_and_times_out_without_one() {
    let control = VmControl::new();
    assert!(!control.wait_attached(Duration::from_millis(20)));
    let attacher = {
        let control = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let stop = Arc::new(StopSignal::new().unwrap());
            control.attach(1, stop, Arc::new(FakeWriter::default()), true);
        })
    };
    let waited = Instant::now();
    assert!(control.wait_attached(Duration::from_secs(10)));
    assert!(waited.elapsed() >= Duration::from_millis(25));
    attacher.join().unwrap();
}
