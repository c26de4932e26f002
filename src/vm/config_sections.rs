//! Firecracker's JSON sections — boot-source, drives, machine-config, network-interfaces,
//! vsock, entropy, balloon — and what each becomes in `vmm`'s terms. A config file
//! (`config_file`) holds them all at once; the API socket (`crate::api`) takes the same
//! bodies one request at a time, so both refuse the same values with the same words.
//! Unknown fields are refused with their name (serde's `deny_unknown_fields`).

use std::path::PathBuf;

use serde::Deserialize;

use super::device_specs::{BalloonSpec, DiskSpec, NetSpec, RngSpec, VsockSpec};
use super::rate_limits::{self, RateLimiterJson};
use super::spec_checks;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    pub kernel_image_path: PathBuf,
    #[serde(default)]
    pub boot_args: Option<String>,
    #[serde(default)]
    pub initrd_path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    pub drive_id: String,
    #[serde(default)]
    pub path_on_host: Option<PathBuf>,
    pub is_root_device: bool,
    #[serde(default)]
    pub is_read_only: Option<bool>,
    #[serde(default)]
    pub partuuid: Option<String>,
    #[serde(default)]
    pub cache_type: Option<String>,
    #[serde(default)]
    pub io_engine: Option<String>,
    #[serde(default)]
    pub rate_limiter: Option<RateLimiterJson>,
    #[serde(default)]
    pub socket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    pub vcpu_count: u16,
    pub mem_size_mib: u64,
    #[serde(default)]
    pub smt: Option<bool>,
    #[serde(default)]
    pub track_dirty_pages: Option<bool>,
    #[serde(default)]
    pub huge_pages: Option<String>,
    #[serde(default)]
    pub cpu_template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    pub iface_id: String,
    pub host_dev_name: String,
    #[serde(default)]
    pub guest_mac: Option<String>,
    #[serde(default)]
    pub rx_rate_limiter: Option<RateLimiterJson>,
    #[serde(default)]
    pub tx_rate_limiter: Option<RateLimiterJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vsock {
    pub guest_cid: u64,
    pub uds_path: PathBuf,
    /// Firecracker's name for the device; vmm has one vsock device and needs none.
    #[serde(default, rename = "vsock_id")]
    pub _vsock_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entropy {
    #[serde(default)]
    pub rate_limiter: Option<RateLimiterJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balloon {
    pub amount_mib: u32,
    pub deflate_on_oom: bool,
    #[serde(default)]
    pub stats_polling_interval_s: u16,
}

/// The settings of `machine` that are accepted and have no effect, by name.
pub fn ignored_machine_settings(machine: &MachineConfig) -> Vec<String> {
    let mut ignored = Vec::new();
    let mut note = |what: &str, present: bool| {
        if present {
            ignored.push(format!("machine-config.{what}"));
        }
    };
    note("cpu_template", machine.cpu_template.is_some());
    note("track_dirty_pages", machine.track_dirty_pages == Some(true));
    note("smt", machine.smt == Some(true));
    if let Some(h) = &machine.huge_pages {
        note("huge_pages", h != "None");
    }
    ignored
}

/// The disk `drive` describes; `at` names it in errors (`drives[0] ("rootfs")`), `id_at`
/// names it where its id is refused (`drives[0]`: not the id itself, which may be long),
/// and settings it has that have no effect are pushed on `ignored`.
pub fn disk(
    drive: &Drive,
    at: &str,
    id_at: &str,
    ignored: &mut Vec<String>,
) -> Result<DiskSpec, String> {
    let field = |name: &str| format!("{at}.{name}");
    if drive.partuuid.is_some() {
        ignored.push(field("partuuid"));
    }
    if drive.io_engine.as_deref().is_some_and(|e| e != "Sync") {
        ignored.push(field("io_engine"));
    }
    if let Some(cache) = &drive.cache_type {
        if cache != "Unsafe" && cache != "Writeback" {
            return Err(format!(
                "{}: unknown cache type {cache:?}",
                field("cache_type")
            ));
        }
    }
    if drive.socket.is_some() {
        return Err(format!(
            "{}: vhost-user drives are not supported",
            field("socket")
        ));
    }
    let path = drive
        .path_on_host
        .clone()
        .ok_or_else(|| format!("{} is required", field("path_on_host")))?;
    Ok(DiskSpec {
        path,
        read_only: drive.is_read_only.unwrap_or(false),
        id: Some(drive_id(&drive.drive_id, id_at)?),
        rate_limiter: rate_limits::from_json(drive.rate_limiter.as_ref(), &field("rate_limiter"))?,
    })
}

/// A drive id as the disk's serial: the drive id becomes the disk's virtio-blk serial, so
/// it follows the same rule as `--disk id=`; Firecracker derives its serial from the file
/// instead and takes any id, but a cut id could name another disk.
pub fn drive_id(id: &str, at: &str) -> Result<String, String> {
    spec_checks::disk_id(id).map_err(|e| format!("{at}.drive_id: {e}"))
}

/// The NIC `nic` describes; `at` names it in errors.
pub fn net(nic: &NetworkInterface, at: &str) -> Result<NetSpec, String> {
    let field = |name: &str| format!("{at}.{name}");
    let tap = spec_checks::tap_name(&nic.host_dev_name)
        .map_err(|e| format!("{}: {e}", field("host_dev_name")))?;
    let mac = match &nic.guest_mac {
        Some(m) => Some(spec_checks::mac(m).map_err(|e| format!("{}: {e}", field("guest_mac")))?),
        None => None,
    };
    Ok(NetSpec {
        tap,
        mac,
        rx_rate_limiter: rate_limits::from_json(
            nic.rx_rate_limiter.as_ref(),
            &field("rx_rate_limiter"),
        )?,
        tx_rate_limiter: rate_limits::from_json(
            nic.tx_rate_limiter.as_ref(),
            &field("tx_rate_limiter"),
        )?,
    })
}

pub fn vsock(v: &Vsock) -> Result<VsockSpec, String> {
    let guest_cid =
        spec_checks::guest_cid(v.guest_cid).map_err(|e| format!("vsock.guest_cid: {e}"))?;
    Ok(VsockSpec {
        guest_cid,
        uds_path: v.uds_path.clone(),
    })
}

pub fn rng(entropy: &Entropy) -> Result<RngSpec, String> {
    Ok(RngSpec {
        rate_limiter: rate_limits::from_json(
            entropy.rate_limiter.as_ref(),
            "entropy.rate_limiter",
        )?,
    })
}

pub fn balloon(b: &Balloon) -> BalloonSpec {
    BalloonSpec {
        amount_mib: b.amount_mib,
        deflate_on_oom: b.deflate_on_oom,
        stats_interval_s: b.stats_polling_interval_s,
    }
}
