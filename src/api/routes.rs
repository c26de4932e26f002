//! Routing: a request's method, path and body become an [`Action`], or the 400 that
//! Firecracker's API server gives for it (its messages, word for word, so that clients
//! written against Firecracker read the same faults). Whether the action is allowed now
//! is the controller's to say.

use serde::de::DeserializeOwned;

use super::bodies::{
    ActionType, BalloonStatsUpdate, BalloonUpdate, InstanceAction, Logger, MachineConfigUpdate,
    Metrics, PartialDrive, PartialNetworkInterface, SnapshotCreateParams, SnapshotLoadParams, Vm,
    VmState,
};
use super::http::{Request, Response};
use crate::vm::config_sections::{
    Balloon, BootSource, Drive, Entropy, MachineConfig, NetworkInterface, Vsock,
};

#[derive(Debug)]
pub enum Action {
    GetInstanceInfo,
    GetVersion,
    GetMachineConfig,
    PutMachineConfig(MachineConfig),
    PatchMachineConfig(MachineConfigUpdate),
    PutBootSource(BootSource),
    PutDrive(Drive),
    PatchDrive(PartialDrive),
    PutNetworkInterface(NetworkInterface),
    /// Refused in every state (`runtime`, `controller`): the body is checked only.
    PatchNetworkInterface(#[allow(dead_code)] PartialNetworkInterface),
    PutVsock(Vsock),
    PutEntropy(Entropy),
    PutBalloon(Balloon),
    PatchBalloon(BalloonUpdate),
    PatchBalloonStatistics(BalloonStatsUpdate),
    GetBalloon,
    GetBalloonStatistics,
    Instance(ActionType),
    PatchVm(VmState),
    CreateSnapshot(SnapshotCreateParams),
    LoadSnapshot(SnapshotLoadParams),
    PutLogger(Logger),
    PutMetrics(Metrics),
}

/// A refused request: always 400 with a fault message, as Firecracker answers.
pub fn bad_request(message: impl Into<String>) -> Response {
    Response::fault(400, message)
}

/// The action `request` asks for.
pub fn route(request: &Request) -> Result<Action, Response> {
    let mut tokens = request.path.trim_start_matches('/').split_terminator('/');
    let resource = tokens.next().unwrap_or("");
    let sub = tokens.next();
    let body = request.body.as_deref();
    let method = request.method.as_str();
    let action = match (method, resource, body) {
        ("GET", _, Some(_)) => return Err(bad_request("GET request cannot have a body.")),
        ("GET", "", None) => Action::GetInstanceInfo,
        ("GET", "version", None) => Action::GetVersion,
        ("GET", "machine-config", None) => Action::GetMachineConfig,
        ("GET", "balloon", None) => match sub {
            None => Action::GetBalloon,
            Some("statistics") => Action::GetBalloonStatistics,
            Some(other) => {
                return Err(bad_request(format!(
                    "Unrecognized GET request path `{other}`."
                )))
            }
        },
        ("PUT", _, None) => return Err(bad_request("Empty PUT request.")),
        ("PUT", "machine-config", Some(b)) => Action::PutMachineConfig(json(b)?),
        ("PUT", "boot-source", Some(b)) => Action::PutBootSource(json(b)?),
        ("PUT", "drives", Some(b)) => {
            let id = checked_id(sub)?;
            let drive: Drive = json(b)?;
            if drive.drive_id != id {
                return Err(bad_request(
                    "The id from the path does not match the id from the body!",
                ));
            }
            Action::PutDrive(drive)
        }
        ("PUT", "network-interfaces", Some(b)) => {
            let id = checked_id(sub)?;
            let nic: NetworkInterface = json(b)?;
            if nic.iface_id != id {
                return Err(bad_request(format!(
                    "The id from the path [{id}] does not match the id from the body [{}]!",
                    nic.iface_id
                )));
            }
            Action::PutNetworkInterface(nic)
        }
        ("PUT", "vsock", Some(b)) => Action::PutVsock(json(b)?),
        ("PUT", "entropy", Some(b)) => Action::PutEntropy(json(b)?),
        ("PUT", "balloon", Some(b)) => Action::PutBalloon(json(b)?),
        ("PUT", "actions", Some(b)) => Action::Instance(json::<InstanceAction>(b)?.action_type),
        ("PUT", "logger", Some(b)) => Action::PutLogger(json(b)?),
        ("PUT", "metrics", Some(b)) => Action::PutMetrics(json(b)?),
        ("PUT", "snapshot", Some(b)) => match sub {
            Some("create") => Action::CreateSnapshot(json(b)?),
            Some("load") => Action::LoadSnapshot(json(b)?),
            Some(other) => return Err(invalid_path_method("PUT", &format!("/snapshot/{other}"))),
            None => return Err(bad_request("Missing snapshot operation type.")),
        },
        ("PATCH", _, None) => return Err(bad_request("Empty PATCH request.")),
        ("PATCH", "machine-config", Some(b)) => {
            let update: MachineConfigUpdate = json(b)?;
            if update.is_empty() {
                return Err(bad_request("Empty PATCH request."));
            }
            Action::PatchMachineConfig(update)
        }
        ("PATCH", "drives", Some(b)) => {
            let id = checked_id(sub)?;
            let drive: PartialDrive = json(b)?;
            if drive.drive_id != id {
                return Err(bad_request(
                    "The id from the path does not match the id from the body!",
                ));
            }
            Action::PatchDrive(drive)
        }
        ("PATCH", "network-interfaces", Some(b)) => {
            let id = checked_id(sub)?;
            let nic: PartialNetworkInterface = json(b)?;
            if nic.iface_id != id {
                return Err(bad_request(format!(
                    "The id from the path [{id}] does not match the id from the body [{}]!",
                    nic.iface_id
                )));
            }
            Action::PatchNetworkInterface(nic)
        }
        ("PATCH", "balloon", Some(b)) => match sub {
            Some("statistics") => Action::PatchBalloonStatistics(json(b)?),
            _ => Action::PatchBalloon(json(b)?),
        },
        ("PATCH", "vm", Some(b)) => Action::PatchVm(json::<Vm>(b)?.state),
        (method, resource, _) => return Err(invalid_path_method(method, resource)),
    };
    Ok(action)
}

/// Firecracker's answer to a path it has no handler for under that method (it names the
/// first path segment).
fn invalid_path_method(method: &str, path: &str) -> Response {
    bad_request(format!(
        "Invalid request method and/or path: {method} {path}."
    ))
}

/// A body as `T`, or the 400 naming what serde refused (an unknown field by its name).
fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        bad_request(format!(
            "An error occurred when deserializing the json body of a request: {e}."
        ))
    })
}

/// A resource id from the path: present, and alphanumeric or `_` (Firecracker's rule).
fn checked_id(id: Option<&str>) -> Result<&str, Response> {
    match id {
        None | Some("") => Err(bad_request("The ID cannot be empty.")),
        Some(id) if id.chars().all(|c| c == '_' || c.is_alphanumeric()) => Ok(id),
        Some(_) => Err(bad_request(
            "API Resource IDs can only contain alphanumeric characters and underscores.",
        )),
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
