//! The request bodies the API takes beyond a config file's sections (those are
//! `crate::vm::config_sections`, shared with `--config-file`): partial updates, actions,
//! the VM state, snapshots, the logger and metrics — as Firecracker's swagger defines them.
//! Unknown fields are refused with their name, as in the config file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::vm::rate_limits::RateLimiterJson;

/// `PATCH /machine-config`: any of machine-config's fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfigUpdate {
    #[serde(default)]
    pub vcpu_count: Option<u16>,
    #[serde(default)]
    pub mem_size_mib: Option<u64>,
    #[serde(default)]
    pub smt: Option<bool>,
    #[serde(default)]
    pub track_dirty_pages: Option<bool>,
    #[serde(default)]
    pub huge_pages: Option<String>,
    #[serde(default)]
    pub cpu_template: Option<String>,
}

impl MachineConfigUpdate {
    pub fn is_empty(&self) -> bool {
        self.vcpu_count.is_none()
            && self.mem_size_mib.is_none()
            && self.smt.is_none()
            && self.track_dirty_pages.is_none()
            && self.huge_pages.is_none()
            && self.cpu_template.is_none()
    }
}

/// `PATCH /drives/{id}` (swagger's PartialDrive).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialDrive {
    pub drive_id: String,
    #[serde(default)]
    pub path_on_host: Option<PathBuf>,
    #[serde(default)]
    pub rate_limiter: Option<RateLimiterJson>,
}

/// `PATCH /network-interfaces/{id}` (swagger's PartialNetworkInterface). Read whole so a
/// malformed body gets serde's answer; the update itself is refused (`runtime`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialNetworkInterface {
    pub iface_id: String,
    #[allow(dead_code)] // parsed for its errors only: changing a limiter is refused
    #[serde(default)]
    pub rx_rate_limiter: Option<RateLimiterJson>,
    #[allow(dead_code)] // as rx_rate_limiter
    #[serde(default)]
    pub tx_rate_limiter: Option<RateLimiterJson>,
}

/// `PATCH /balloon`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonUpdate {
    pub amount_mib: u32,
}

/// `PATCH /balloon/statistics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonStatsUpdate {
    pub stats_polling_interval_s: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ActionType {
    FlushMetrics,
    InstanceStart,
    SendCtrlAltDel,
}

/// `PUT /actions` (swagger's InstanceActionInfo).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceAction {
    pub action_type: ActionType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VmState {
    Paused,
    Resumed,
}

/// `PATCH /vm`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    pub state: VmState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SnapshotType {
    Full,
    Diff,
}

/// `PUT /snapshot/create`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateParams {
    pub snapshot_path: PathBuf,
    pub mem_file_path: PathBuf,
    #[serde(default)]
    pub snapshot_type: Option<SnapshotType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MemBackendType {
    File,
    Uffd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemBackend {
    pub backend_type: MemBackendType,
    pub backend_path: PathBuf,
}

/// Parsed for its errors only: overrides are refused ([`SnapshotLoadParams::checked`]).
#[allow(dead_code)] // read by serde, then only its presence matters
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOverride {
    pub iface_id: String,
    pub host_dev_name: String,
}

/// As [`NetworkOverride`].
#[allow(dead_code)] // read by serde, then only its presence matters
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockOverride {
    pub uds_path: PathBuf,
}

/// `PUT /snapshot/load` (swagger's SnapshotLoadParams).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLoadParams {
    pub snapshot_path: PathBuf,
    #[serde(default)]
    pub mem_file_path: Option<PathBuf>,
    #[serde(default)]
    pub mem_backend: Option<MemBackend>,
    #[serde(default)]
    pub enable_diff_snapshots: Option<bool>,
    #[serde(default)]
    pub track_dirty_pages: Option<bool>,
    #[serde(default)]
    pub resume_vm: Option<bool>,
    #[serde(default)]
    pub network_overrides: Option<Vec<NetworkOverride>>,
    #[serde(default)]
    pub vsock_override: Option<VsockOverride>,
    #[serde(default)]
    pub clock_realtime: Option<bool>,
    #[serde(default)]
    pub huge_pages: Option<String>,
}

/// A snapshot to restore, once `PUT /snapshot/load`'s body is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSnapshot {
    pub state: PathBuf,
    pub mem_file: PathBuf,
    pub resume: bool,
}

impl SnapshotLoadParams {
    /// What to restore, or why this build cannot: exactly one of `mem_file_path` and
    /// `mem_backend` (Firecracker's words when not), a file backend, and none of the
    /// options `vmm` lacks.
    pub fn checked(self) -> Result<LoadSnapshot, String> {
        let mem_file = match (self.mem_file_path, self.mem_backend) {
            (Some(_), Some(_)) => {
                return Err("too many fields: either `mem_backend` or `mem_file_path` \
                            exclusively is required"
                    .into())
            }
            (None, None) => {
                return Err(
                    "missing field: either `mem_backend` or `mem_file_path` is required".into(),
                )
            }
            (Some(path), None) => path,
            (None, Some(backend)) => match backend.backend_type {
                MemBackendType::File => backend.backend_path,
                MemBackendType::Uffd => {
                    return Err("mem_backend: backend_type Uffd is not supported; use File".into())
                }
            },
        };
        let unsupported = [
            (
                "track_dirty_pages",
                self.track_dirty_pages == Some(true) || self.enable_diff_snapshots == Some(true),
            ),
            ("network_overrides", self.network_overrides.is_some()),
            ("vsock_override", self.vsock_override.is_some()),
            ("clock_realtime", self.clock_realtime == Some(true)),
            (
                "huge_pages",
                self.huge_pages
                    .as_deref()
                    .is_some_and(|h| h != "Snapshot" && h != "None"),
            ),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, used)| *used) {
            return Err(format!("{field} is not supported by this VMM"));
        }
        Ok(LoadSnapshot {
            state: self.snapshot_path,
            mem_file,
            resume: self.resume_vm.unwrap_or(false),
        })
    }
}

/// Firecracker's log levels, written in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Error,
    Warning,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Off => "OFF",
            LogLevel::Error => "ERROR",
            LogLevel::Warning => "WARN",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Trace => "TRACE",
        }
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.to_ascii_lowercase().as_str() {
            "off" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warning" | "warn" => LogLevel::Warning,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "unknown level {text:?}, expected one of Error, Warning, Info, Debug, \
                     Trace, Off"
                )))
            }
        })
    }
}

/// `PUT /logger`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logger {
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    #[serde(default)]
    pub level: Option<LogLevel>,
    #[serde(default)]
    pub show_level: Option<bool>,
    #[serde(default)]
    pub show_log_origin: Option<bool>,
    #[serde(default)]
    pub module: Option<String>,
}

/// `PUT /metrics`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub metrics_path: PathBuf,
    #[serde(default)]
    pub emit_id: Option<bool>,
    #[serde(default)]
    pub properties: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<LoadSnapshot, String> {
        serde_json::from_str::<SnapshotLoadParams>(json)
            .map_err(|e| e.to_string())?
            .checked()
    }

    #[test]
    fn snapshot_load_takes_a_mem_file_path_or_a_file_backend() {
        let want = LoadSnapshot {
            state: "s".into(),
            mem_file: "m".into(),
            resume: true,
        };
        assert_eq!(
            load(r#"{"snapshot_path":"s","mem_file_path":"m","resume_vm":true}"#),
            Ok(want.clone())
        );
        assert_eq!(
            load(
                r#"{"snapshot_path":"s","resume_vm":true,"mem_backend":{"backend_type":"File","backend_path":"m"}}"#
            ),
            Ok(want)
        );
    }

    #[test]
    fn snapshot_load_refuses_both_neither_uffd_and_what_vmm_lacks() {
        for (json, needle) in [
            (r#"{"snapshot_path":"s"}"#, "missing field: either"),
            (
                r#"{"snapshot_path":"s","mem_file_path":"m","mem_backend":{"backend_type":"File","backend_path":"m"}}"#,
                "too many fields",
            ),
            (
                r#"{"snapshot_path":"s","mem_backend":{"backend_type":"Uffd","backend_path":"u"}}"#,
                "Uffd",
            ),
            (
                r#"{"snapshot_path":"s","mem_file_path":"m","network_overrides":[]}"#,
                "network_overrides",
            ),
            (
                r#"{"snapshot_path":"s","mem_file_path":"m","extra":1}"#,
                "unknown field `extra`",
            ),
        ] {
            let err = load(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn log_levels_are_read_in_any_case_and_unknown_ones_named() {
        let l: Logger = serde_json::from_str(r#"{"level":"warning"}"#).unwrap();
        assert_eq!(l.level, Some(LogLevel::Warning));
        let l: Logger = serde_json::from_str(r#"{"level":"DEBUG"}"#).unwrap();
        assert_eq!(l.level, Some(LogLevel::Debug));
        let err = serde_json::from_str::<Logger>(r#"{"level":"loud"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown level \"loud\""), "{err}");
    }
}
