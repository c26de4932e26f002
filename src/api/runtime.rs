//! What the API does to a running VM: Ctrl-Alt-Del on its keyboard, the balloon's target
//! and statistics, metrics on demand, and (through `control`) pause, resume, snapshots and
//! a drive's new backing file.
//! Configuration requests are refused once the VM runs, as in Firecracker.

use std::sync::PoisonError;

use serde::Serialize;

use super::bodies::{ActionType, SnapshotType, VmState};
use super::controller::{Controller, NOT_SUPPORTED_POST_BOOT};
use super::http::Response;
use super::preboot::{check_balloon, BalloonView};
use super::routes::{bad_request, Action};
use crate::vm::running::VmHandles;

/// `GET /balloon/statistics`'s answer (swagger's BalloonStats); the guest's statistics
/// only once it sent them.
#[derive(Debug, Serialize)]
struct BalloonStatsView {
    target_pages: u32,
    actual_pages: u32,
    target_mib: u32,
    actual_mib: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    swap_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swap_out: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    major_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minor_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    free_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_caches: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hugetlb_allocations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hugetlb_failures: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oom_kill: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alloc_stall: Option<u64>,
}

impl Controller {
    pub(super) fn runtime(&mut self, action: Action) -> Result<Response, Response> {
        match action {
            Action::Instance(ActionType::SendCtrlAltDel) => {
                let vm = self.vm()?;
                let mut i8042 = vm.i8042.lock().unwrap_or_else(PoisonError::into_inner);
                i8042
                    .send_ctrl_alt_del()
                    .map_err(|e| bad_request(format!("i8042 error: {e}.")))?;
            }
            Action::Instance(ActionType::FlushMetrics) => {
                self.metrics.flush().map_err(bad_request)?;
            }
            Action::GetBalloon => {
                let spec = self.balloon_spec()?;
                let mut view = BalloonView::from(&spec);
                if let Some(handle) = self.vm()?.balloon.as_ref() {
                    view.amount_mib = handle.stats().target_mib;
                }
                return Ok(Response::json(&view));
            }
            Action::PatchBalloon(update) => {
                self.balloon_spec()?;
                let vm = self.vm()?;
                check_balloon(update.amount_mib, vm.mem_mib)
                    .map_err(|e| bad_request(format!("Balloon update error: {e}")))?;
                if let Some(handle) = &vm.balloon {
                    handle.set_target_mib(update.amount_mib);
                }
            }
            Action::GetBalloonStatistics => {
                let spec = self.balloon_spec()?;
                if spec.stats_interval_s == 0 {
                    return Err(bad_request(
                        "Balloon update error: Statistics for the balloon device are not enabled",
                    ));
                }
                let vm = self.vm()?;
                let Some(handle) = &vm.balloon else {
                    return Err(no_balloon());
                };
                let s = handle.stats();
                return Ok(Response::json(&BalloonStatsView {
                    target_pages: s.target_pages,
                    actual_pages: s.actual_pages,
                    target_mib: s.target_mib,
                    actual_mib: s.actual_mib,
                    swap_in: s.swap_in,
                    swap_out: s.swap_out,
                    major_faults: s.major_faults,
                    minor_faults: s.minor_faults,
                    free_memory: s.free_memory,
                    total_memory: s.total_memory,
                    available_memory: s.available_memory,
                    disk_caches: s.disk_caches,
                    hugetlb_allocations: s.hugetlb_allocations,
                    hugetlb_failures: s.hugetlb_failures,
                    oom_kill: s.oom_kills,
                    alloc_stall: s.alloc_stalls,
                }));
            }
            Action::PatchBalloonStatistics(update) => {
                let spec = self.balloon_spec()?;
                let (now, asked) = (spec.stats_interval_s, update.stats_polling_interval_s);
                if (now == 0) != (asked == 0) {
                    return Err(bad_request(
                        "Balloon update error: Statistics cannot be turned on or off after boot.",
                    ));
                }
                if now != asked {
                    return Err(bad_request(
                        "Balloon update error: changing the statistics interval of a running \
                         balloon is not supported by this build of vmm.",
                    ));
                }
            }
            Action::PatchDrive(drive) => {
                let fail = |e: &str| bad_request(format!("Drive config error: {e}"));
                // The worker's limiter is fixed once it runs; only the file can change.
                if drive.rate_limiter.is_some() {
                    return Err(fail(
                        "changing the rate limiter of a running drive is not supported by \
                         this build of vmm; only path_on_host may be patched after \
                         InstanceStart.",
                    ));
                }
                if let Some(path) = &drive.path_on_host {
                    self.control
                        .update_disk(&drive.drive_id, path)
                        .map_err(|e| fail(&e))?;
                }
            }
            Action::PatchNetworkInterface(_) => {
                return Err(bad_request(
                    "Network config error: changing a running interface's rate limiters is not \
                     supported by this build of vmm.",
                ))
            }
            Action::PatchVm(state) => {
                let done = match state {
                    VmState::Paused => self.control.pause(),
                    VmState::Resumed => self.control.resume(),
                };
                done.map_err(|e| bad_request(format!("Internal VMM error: {e}.")))?;
            }
            Action::CreateSnapshot(params) => {
                let fail = |e: &str| bad_request(format!("Create snapshot error: {e}"));
                if params.snapshot_type == Some(SnapshotType::Diff) {
                    return Err(fail("Diff snapshots are not supported by this VMM."));
                }
                if !self.control.is_paused() {
                    return Err(fail(
                        "The microVM must be paused (PATCH /vm {\"state\": \"Paused\"}) before \
                         a snapshot is taken.",
                    ));
                }
                self.control
                    .snapshot(&params.snapshot_path, &params.mem_file_path)
                    .map_err(|e| fail(&e))?;
            }
            _ => return Err(bad_request(NOT_SUPPORTED_POST_BOOT)),
        }
        Ok(Response::no_content())
    }

    /// The running VM's handles, or the 400 when it has already stopped.
    fn vm(&self) -> Result<std::sync::Arc<VmHandles>, Response> {
        self.running
            .handles()
            .ok_or_else(|| bad_request("The microVM is not running."))
    }

    fn balloon_spec(&self) -> Result<crate::vm::device_specs::BalloonSpec, Response> {
        self.balloon.clone().ok_or_else(no_balloon)
    }
}

fn no_balloon() -> Response {
    bad_request("Balloon config error: No balloon device found.")
}
