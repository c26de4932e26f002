//! One VM of the soak: the built-in test guest with every virtio device the VMM has, run
//! in this process through [`vm::run_with`] (as `vmm compare` and `vmm run` run theirs),
//! its `up` test bringing each device up, using it once and resetting it.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use devices::{StopReason, StopSignal};

use super::error::SoakError;
use super::snapshot::Scope;
use crate::guest_image::GuestFile;
use crate::vm::console_log::ConsoleLog;
use crate::vm::device_specs::{BalloonSpec, DeviceSpecs, DiskSpec, NetSpec, RngSpec, VsockSpec};
use crate::vm::{self, Console, DeviceMetrics, RunOptions, VmConfig, VmOutcome};

/// What the guest says when every device came up and answered.
const UP_PASSED: &str = "vmmtest: ok up";
/// A run takes ~0.1 s here; one that takes this long is stuck and is stopped.
const RUN_DEADLINE: Duration = Duration::from_secs(30);
const DISK_BYTES: u64 = 1 << 20;
const GUEST_CID: u64 = 3;
/// Console lines quoted when a run fails.
const CONSOLE_LINES: usize = 10;

pub struct SoakVm {
    config: VmConfig,
    tap: Option<String>,
    /// Holds the guest image that `config.kernel` names (/proc/self/fd/N).
    _guest: GuestFile,
}

impl SoakVm {
    /// The VM every cycle runs: its disk image and vsock socket in the soak's directory,
    /// its tap (when one can be made here) named by the soak.
    pub fn new(scope: &Scope) -> Result<Self, SoakError> {
        let guest = GuestFile::create().map_err(SoakError::setup("stage the built-in guest"))?;
        let disk = scope.work_dir.join("disk.img");
        std::fs::File::create(&disk)
            .and_then(|f| f.set_len(DISK_BYTES))
            .map_err(SoakError::setup(format!("create {}", disk.display())))?;
        let tap = scope.tap().map(str::to_owned);
        let devices = DeviceSpecs {
            rootfs: None,
            disks: vec![DiskSpec {
                path: disk,
                read_only: false,
                id: Some("soak".into()),
                rate_limiter: None,
            }],
            nets: tap
                .iter()
                .map(|tap| NetSpec {
                    tap: tap.clone(),
                    mac: None,
                    rx_rate_limiter: None,
                    tx_rate_limiter: None,
                })
                .collect(),
            vsock: Some(VsockSpec {
                guest_cid: GUEST_CID,
                uds_path: vsock_path(scope),
            }),
            rng: Some(RngSpec::default()),
            balloon: Some(BalloonSpec {
                amount_mib: 4,
                deflate_on_oom: false,
                stats_interval_s: 0,
            }),
        };
        let config = VmConfig {
            kernel: guest.path(),
            mem_mib: 128,
            cpus: 1,
            cmdline: "console=ttyS0 tests=up".into(),
            initrd: None,
            devices,
            boot_timer: None,
        };
        Ok(Self {
            config,
            tap,
            _guest: guest,
        })
    }

    pub fn tap(&self) -> Option<&str> {
        self.tap.as_deref()
    }

    /// The devices attached, for the report.
    pub fn devices(&self) -> String {
        let net = if self.tap.is_some() { "net, " } else { "" };
        format!("blk, {net}vsock, rng, balloon")
    }

    /// Run `run`: the guest boots, brings every device up and ends; an error unless it
    /// ended with its test passed and no device counted an error.
    pub fn run_once(&self, run: u32) -> Result<(), SoakError> {
        let console = Arc::new(Mutex::new(ConsoleLog::new()));
        let stop =
            Arc::new(StopSignal::new().map_err(SoakError::setup("create a VM's stop event"))?);
        let metrics = DeviceMetrics::default();
        let options = RunOptions {
            console: Console::Log(console.clone()),
            stop: Some(stop.clone()),
            device_metrics: Some(metrics.clone()),
            quiet: true,
            ..Default::default()
        };
        let outcome = with_deadline(&stop, || vm::run_with(&self.config, options))
            .map_err(|source| SoakError::Vm { run, source })?;
        let log = console.lock().unwrap_or_else(|p| p.into_inner());
        let passed = log.tail_lines(CONSOLE_LINES).iter().any(|l| l == UP_PASSED);
        let errors: Vec<String> = metrics.summary_lines(false);
        if matches!(outcome, VmOutcome::DebugExit(0)) && passed && errors.is_empty() {
            return Ok(());
        }
        let outcome = match errors.is_empty() {
            true => format!("{outcome:?}"),
            false => format!("{outcome:?} with device errors ({})", errors.join("; ")),
        };
        Err(SoakError::VmEnded {
            run,
            outcome,
            console: log.tail_lines(CONSOLE_LINES).join(" | "),
        })
    }
}

fn vsock_path(scope: &Scope) -> PathBuf {
    scope.work_dir.join("vsock.sock")
}

/// Runs `body` (a VM), stopping the VM through `stop` if it is not done by
/// [`RUN_DEADLINE`]. The watchdog is a thread of the call's own, joined before it
/// returns, so that it never counts among the threads the soak samples.
fn with_deadline<T>(stop: &StopSignal, body: impl FnOnce() -> T) -> T {
    let (done, finished) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if finished.recv_timeout(RUN_DEADLINE) == Err(mpsc::RecvTimeoutError::Timeout) {
                stop.request(StopReason::Failed(format!(
                    "the soak stopped the VM after {RUN_DEADLINE:?}"
                )));
            }
        });
        let result = body();
        drop(done);
        result
    })
}
