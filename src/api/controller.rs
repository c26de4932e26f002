//! The API's state machine: before InstanceStart (or `snapshot/load`) requests build the
//! VM's configuration ([`Preboot`]); InstanceStart hands the VM to the main thread to run
//! and answers once it runs or failed to start; from then on requests act on the running
//! VM (`runtime`). A request in the wrong state gets Firecracker's 400 and its words.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::bodies::{ActionType, LogLevel};
use super::control::Control;
use super::http::{Request, Response};
use super::logger::{log_at, Logger, INSTANCE_ID};
use super::metrics::Metrics;
use super::preboot::{BalloonView, Preboot};
use super::routes::{self, bad_request, Action};
use super::server::Service;
use crate::vm::device_specs::BalloonSpec;
use crate::vm::running::RunningVm;
use crate::vm::{self, RunOptions, VmError, VmOutcome};

/// A VM for the main thread to run: boot (`vm::run_with`) or, after the merge, restore.
pub type Launch = Box<dyn FnOnce(RunOptions) -> Result<VmOutcome, VmError> + Send>;

pub const NOT_SUPPORTED_PRE_BOOT: &str =
    "The requested operation is not supported before starting the microVM.";
pub const NOT_SUPPORTED_POST_BOOT: &str =
    "The requested operation is not supported after starting the microVM.";

/// What the API thread keeps.
pub struct Controller {
    pub(super) preboot: Preboot,
    pub(super) running: Arc<RunningVm>,
    launcher: Sender<Launch>,
    pub(super) logger: Arc<Logger>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) control: Control,
    boot_timer: Option<Instant>,
    /// A boot-specific resource was configured: `snapshot/load` is refused from then on.
    configured: bool,
    /// The VM was started (InstanceStart, a snapshot, or the command line): pre-boot
    /// requests are refused from then on.
    started: bool,
    /// The balloon the VM was started with, for `GET /balloon` and its bounds.
    pub(super) balloon: Option<BalloonSpec>,
}

impl Controller {
    pub fn new(
        preboot: Preboot,
        running: Arc<RunningVm>,
        launcher: Sender<Launch>,
        logger: Arc<Logger>,
        metrics: Arc<Metrics>,
        control: Control,
        boot_timer: Option<Instant>,
    ) -> Controller {
        Controller {
            preboot,
            running,
            launcher,
            logger,
            metrics,
            control,
            boot_timer,
            configured: false,
            started: false,
            balloon: None,
        }
    }

    /// The VM of `config` was started without the API (from the command line or a config
    /// file): the API serves as after InstanceStart, and describes that VM.
    pub fn started_elsewhere(&mut self, config: &vm::VmConfig) {
        self.started = true;
        self.configured = true;
        self.balloon = config.devices.balloon.clone();
        self.preboot.describe_machine(config.cpus, config.mem_mib);
    }

    fn dispatch(&mut self, action: Action) -> Result<Response, Response> {
        match action {
            Action::GetInstanceInfo => Ok(Response::json(&json!({
                "app_name": "vmm",
                "id": INSTANCE_ID,
                "state": self.state_name(),
                "vmm_version": env!("CARGO_PKG_VERSION"),
            }))),
            Action::GetVersion => Ok(Response::json(&json!({
                "firecracker_version": env!("CARGO_PKG_VERSION"),
            }))),
            Action::GetMachineConfig => Ok(Response::json(self.preboot.machine())),
            action if self.started => self.runtime(action),
            action => self.preboot(action),
        }
    }

    fn state_name(&self) -> &'static str {
        match (self.started, self.control.is_paused()) {
            (false, _) => "Not started",
            (true, true) => "Paused",
            (true, false) => "Running",
        }
    }

    fn preboot(&mut self, action: Action) -> Result<Response, Response> {
        let p = &mut self.preboot;
        let prefixed = |prefix: &str| {
            let prefix = prefix.to_string();
            move |e: String| bad_request(format!("{prefix}: {e}"))
        };
        let boot_specific = !matches!(
            action,
            Action::PutLogger(_)
                | Action::PutMetrics(_)
                | Action::GetBalloon
                | Action::LoadSnapshot(_)
                | Action::Instance(_)
        );
        let result = match action {
            Action::PutMachineConfig(m) => p
                .put_machine_config(m)
                .map_err(prefixed("Machine config error")),
            Action::PatchMachineConfig(m) => p
                .patch_machine_config(m)
                .map_err(prefixed("Machine config error")),
            Action::PutBootSource(b) => {
                p.put_boot_source(b);
                Ok(())
            }
            Action::PutDrive(d) => p.put_drive(d).map_err(prefixed("Drive config error")),
            // Firecracker refuses PATCH /drives before boot; vmm takes it, so a client can
            // point a placeholder drive at its real file either side of InstanceStart.
            Action::PatchDrive(d) => p.patch_drive(d).map_err(prefixed("Drive config error")),
            Action::PutNetworkInterface(n) => p
                .put_network_interface(n)
                .map_err(prefixed("Network config error")),
            Action::PutVsock(v) => p.put_vsock(v).map_err(prefixed("Vsock config error")),
            Action::PutEntropy(e) => p.put_entropy(e).map_err(prefixed("Entropy config error")),
            Action::PutBalloon(b) => p.put_balloon(b).map_err(prefixed("Balloon config error")),
            Action::GetBalloon => {
                return match p.balloon() {
                    Some(b) => Ok(Response::json(&BalloonView::from(b))),
                    None => Err(bad_request(
                        "Balloon config error: No balloon device found.",
                    )),
                }
            }
            Action::PutLogger(l) => self.logger.configure(l).map_err(bad_request),
            Action::PutMetrics(m) => self.metrics.configure(m).map_err(bad_request),
            Action::Instance(ActionType::InstanceStart) => return self.start(),
            Action::LoadSnapshot(params) => return self.load_snapshot(params),
            Action::PatchNetworkInterface(_)
            | Action::PatchBalloon(_)
            | Action::PatchBalloonStatistics(_)
            | Action::GetBalloonStatistics
            | Action::Instance(ActionType::SendCtrlAltDel | ActionType::FlushMetrics)
            | Action::PatchVm(_)
            | Action::CreateSnapshot(_) => return Err(bad_request(NOT_SUPPORTED_PRE_BOOT)),
            Action::GetInstanceInfo | Action::GetVersion | Action::GetMachineConfig => {
                unreachable_answered()
            }
        };
        result?;
        if boot_specific {
            self.configured = true;
        }
        Ok(Response::no_content())
    }

    fn start(&mut self) -> Result<Response, Response> {
        let config = self
            .preboot
            .vm_config(self.boot_timer)
            .map_err(|e| bad_request(format!("Start microvm error: {e}")))?;
        for setting in &self.preboot.ignored {
            log_at!(
                self.logger,
                LogLevel::Warning,
                "{setting} is not supported and is ignored"
            );
        }
        let balloon = config.devices.balloon.clone();
        self.launch(Box::new(move |options| vm::run_with(&config, options)))
            .map_err(|e| bad_request(format!("Start microvm error: {e}")))?;
        self.balloon = balloon;
        Ok(Response::no_content())
    }

    fn load_snapshot(
        &mut self,
        params: super::bodies::SnapshotLoadParams,
    ) -> Result<Response, Response> {
        let fail = |e: String| bad_request(format!("Load snapshot error: {e}"));
        if self.configured {
            return Err(fail(
                "Loading a microVM snapshot not allowed after configuring boot-specific \
                 resources."
                    .into(),
            ));
        }
        let load = params.checked().map_err(fail)?;
        let launch = self.control.restore(&load).map_err(fail)?;
        self.launch(launch).map_err(fail)?;
        Ok(Response::no_content())
    }

    /// Hands `launch` to the main thread and waits until the VM runs or failed to start.
    fn launch(&mut self, launch: Launch) -> Result<(), String> {
        self.launcher
            .send(launch)
            .map_err(|_| "the VMM's main thread is gone".to_string())?;
        self.running.wait_for_start()?;
        self.started = true;
        Ok(())
    }
}

/// The actions answered in every state are taken before the state is looked at.
fn unreachable_answered() -> Result<(), Response> {
    Err(Response::fault(500, "internal error: request routed twice"))
}

impl Service for Controller {
    fn handle(&mut self, request: Request) -> Response {
        log_at!(
            self.logger,
            LogLevel::Info,
            "The API server received a {} request on {:?}.",
            request.method,
            request.path
        );
        let response = match routes::route(&request) {
            Ok(action) => self.dispatch(action).unwrap_or_else(|r| r),
            Err(response) => response,
        };
        self.metrics.count_request(!response.is_success());
        match &response.body {
            Some(body) if !response.is_success() => log_at!(
                self.logger,
                LogLevel::Error,
                "Received Error. Status code: {}. Message: {body}",
                response.status
            ),
            _ => log_at!(
                self.logger,
                LogLevel::Info,
                "The request was executed successfully. Status code: {}.",
                response.status
            ),
        }
        response
    }

    fn next_tick(&self) -> Option<Instant> {
        self.metrics.next_flush()
    }

    fn tick(&mut self) {
        if let Err(e) = self.metrics.flush() {
            log_at!(self.logger, LogLevel::Error, "{e}");
        }
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
