//! Firecracker's JSON configuration file (`--config-file`), so that an existing Firecracker
//! config boots unchanged. Unknown fields are refused with their name (serde's
//! `deny_unknown_fields`); Firecracker features `vmm` does not have (MMDS, logger, metrics,
//! custom CPU templates) are accepted and reported as ignored. Each section is read by
//! `config_sections`, which the API socket shares; rate limiters by `rate_limits`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config_sections::{
    self as sections, Balloon, BootSource, Drive, Entropy, MachineConfig, NetworkInterface, Vsock,
};
use super::device_specs::DeviceSpecs;
use super::error::VmError;
use super::input;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FirecrackerConfig {
    #[serde(rename = "boot-source")]
    boot_source: BootSource,
    #[serde(default)]
    drives: Vec<Drive>,
    #[serde(rename = "machine-config", default)]
    machine_config: Option<MachineConfig>,
    #[serde(rename = "network-interfaces", default)]
    network_interfaces: Vec<NetworkInterface>,
    #[serde(default)]
    vsock: Option<Vsock>,
    #[serde(default)]
    entropy: Option<Entropy>,
    #[serde(default)]
    balloon: Option<Balloon>,
    // Accepted for compatibility; vmm has no equivalent.
    #[serde(default)]
    logger: Option<serde_json::Value>,
    #[serde(default)]
    metrics: Option<serde_json::Value>,
    #[serde(rename = "mmds-config", default)]
    mmds_config: Option<serde_json::Value>,
    #[serde(rename = "cpu-config", default)]
    cpu_config: Option<serde_json::Value>,
}

/// What a config file describes, in `vmm`'s terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    pub kernel: PathBuf,
    pub cmdline: Option<String>,
    pub initrd: Option<PathBuf>,
    pub mem_mib: Option<u64>,
    pub cpus: Option<u16>,
    pub devices: DeviceSpecs,
    /// Settings accepted for compatibility that have no effect, to tell the user.
    pub ignored: Vec<String>,
}

/// The largest config file read, in MiB. Firecracker's examples are a few KiB; the cap
/// keeps a huge file named by mistake from being read into memory whole (`/dev/zero`, a
/// FIFO and the like are refused before, as not regular files).
const MAX_CONFIG_MIB: u64 = 1;

pub fn load(path: &Path) -> Result<FileConfig, VmError> {
    let text = input::read_small_text_file("config file", path, MAX_CONFIG_MIB)?;
    parse(&text).map_err(|reason| VmError::ConfigFile {
        path: path.to_path_buf(),
        reason,
    })
}

pub fn parse(text: &str) -> Result<FileConfig, String> {
    let fc: FirecrackerConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut ignored = Vec::new();
    let mut note = |what: &str, present: bool| {
        if present {
            ignored.push(what.to_string());
        }
    };
    note("logger", fc.logger.is_some());
    note("metrics", fc.metrics.is_some());
    note("mmds-config", fc.mmds_config.is_some());
    note("cpu-config", fc.cpu_config.is_some());
    if let Some(m) = &fc.machine_config {
        ignored.extend(sections::ignored_machine_settings(m));
    }

    let mut devices = DeviceSpecs::default();
    let mut roots = 0;
    for (i, drive) in fc.drives.iter().enumerate() {
        let at = format!("drives[{i}] ({:?})", drive.drive_id);
        let spec = sections::disk(drive, &at, &format!("drives[{i}]"), &mut ignored)?;
        if drive.is_root_device {
            roots += 1;
            devices.rootfs = Some(spec);
        } else {
            devices.disks.push(spec);
        }
    }
    if roots > 1 {
        return Err("drives: more than one drive has is_root_device = true".into());
    }
    for (i, nic) in fc.network_interfaces.iter().enumerate() {
        let at = format!("network-interfaces[{i}] ({:?})", nic.iface_id);
        devices.nets.push(sections::net(nic, &at)?);
    }
    if let Some(v) = &fc.vsock {
        devices.vsock = Some(sections::vsock(v)?);
    }
    if let Some(entropy) = &fc.entropy {
        devices.rng = Some(sections::rng(entropy)?);
    }
    devices.balloon = fc.balloon.as_ref().map(sections::balloon);
    Ok(FileConfig {
        kernel: fc.boot_source.kernel_image_path,
        cmdline: fc.boot_source.boot_args,
        initrd: fc.boot_source.initrd_path,
        mem_mib: fc.machine_config.as_ref().map(|m| m.mem_size_mib),
        cpus: fc.machine_config.as_ref().map(|m| m.vcpu_count),
        devices,
        ignored,
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::device_specs::RngSpec;

    const FIRECRACKER_EXAMPLE: &str = r#"{
      "boot-source": {
        "kernel_image_path": "vmlinux.bin",
        "boot_args": "console=ttyS0 reboot=k panic=1 pci=off",
        "initrd_path": null
      },
      "drives": [
        {
          "drive_id": "rootfs",
          "path_on_host": "bionic.rootfs.ext4",
          "is_root_device": true,
          "partuuid": null,
          "is_read_only": false,
          "cache_type": "Unsafe",
          "io_engine": "Sync",
          "rate_limiter": null
        }
      ],
      "machine-config": {
        "vcpu_count": 2,
        "mem_size_mib": 1024,
        "smt": false,
        "track_dirty_pages": false,
        "huge_pages": "None"
      },
      "network-interfaces": [
        {"iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02", "host_dev_name": "tap0"}
      ],
      "vsock": {"guest_cid": 3, "uds_path": "./v.sock"},
      "entropy": {},
      "balloon": {"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1},
      "logger": null,
      "metrics": null
    }"#;

    #[test]
    fn firecracker_example_config_is_accepted() {
        let c = parse(FIRECRACKER_EXAMPLE).unwrap();
        assert_eq!(c.kernel, PathBuf::from("vmlinux.bin"));
        assert_eq!(c.cpus, Some(2));
        assert_eq!(c.mem_mib, Some(1024));
        assert_eq!(
            c.devices.rootfs.as_ref().unwrap().path,
            PathBuf::from("bionic.rootfs.ext4")
        );
        assert_eq!(c.devices.nets[0].tap, "tap0");
        assert_eq!(c.devices.nets[0].mac, Some([6, 0, 0xac, 0x10, 0, 2]));
        assert_eq!(c.devices.vsock.as_ref().unwrap().guest_cid, 3);
        assert_eq!(c.devices.rng, Some(RngSpec::default()));
        assert_eq!(c.devices.balloon.as_ref().unwrap().stats_interval_s, 1);
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    }

    #[test]
    fn unknown_field_is_named() {
        let text = FIRECRACKER_EXAMPLE.replace("\"smt\": false", "\"smt\": false, \"turbo\": true");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("unknown field `turbo`"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let text = FIRECRACKER_EXAMPLE.replace("\"vcpu_count\": 2", "\"vcpu_count\": \"two\"");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("line"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn missing_boot_source_is_named() {
        let err = parse("{}").unwrap_err();
        assert!(err.contains("boot-source"), "{err}");
    }

    #[test]
    fn bad_mac_names_the_interface() {
        let text = FIRECRACKER_EXAMPLE.replace("06:00:AC:10:00:02", "nope");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("network-interfaces[0]"), "{err}");
        assert!(err.contains("guest_mac"), "{err}");
    }

    #[test]
    fn reserved_cid_is_refused() {
        let text = FIRECRACKER_EXAMPLE.replace("\"guest_cid\": 3", "\"guest_cid\": 2");
        assert!(parse(&text).unwrap_err().contains("vsock.guest_cid"));
    }

    #[test]
    fn drive_rate_limiter_is_read_not_ignored() {
        let text = FIRECRACKER_EXAMPLE.replace(
            "\"rate_limiter\": null",
            r#""rate_limiter": {"bandwidth": {"size": 4096, "one_time_burst": 8192, "refill_time": 100}}"#,
        );
        let c = parse(&text).unwrap();
        let limit = c.devices.rootfs.unwrap().rate_limiter.unwrap();
        assert_eq!(
            limit.bandwidth,
            Some(devices::virtio::TokenBucketConfig {
                size: 4096,
                one_time_burst: 8192,
                refill_time_ms: 100
            })
        );
        assert_eq!(limit.ops, None);
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    }

    #[test]
    fn nic_and_entropy_rate_limiters_are_read() {
        let bucket = r#"{"ops": {"size": 10, "refill_time": 1000}}"#;
        let text = FIRECRACKER_EXAMPLE
            .replace(
                "\"host_dev_name\": \"tap0\"",
                &format!("\"host_dev_name\": \"tap0\", \"tx_rate_limiter\": {bucket}"),
            )
            .replace(
                "\"entropy\": {}",
                &format!("\"entropy\": {{\"rate_limiter\": {bucket}}}"),
            );
        let c = parse(&text).unwrap();
        let nic = &c.devices.nets[0];
        assert_eq!(nic.rx_rate_limiter, None);
        assert!(nic.tx_rate_limiter.unwrap().limits_anything());
        let rng = c.devices.rng.unwrap();
        assert!(rng.rate_limiter.unwrap().limits_anything());
    }

    #[test]
    fn rate_limiter_that_never_refills_is_refused_with_its_path() {
        let text = FIRECRACKER_EXAMPLE.replace(
            "\"rate_limiter\": null",
            r#""rate_limiter": {"ops": {"size": 100, "refill_time": 0}}"#,
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.starts_with("drives[0] (\"rootfs\").rate_limiter.ops: refill_time is 0"),
            "{err}"
        );
    }

    #[test]
    fn rate_limiter_with_a_negative_size_or_unknown_field_is_refused() {
        for (limiter, needle) in [
            (
                r#"{"bandwidth": {"size": -1, "refill_time": 100}}"#,
                "invalid value",
            ),
            (
                r#"{"bandwidth": {"size": 1, "refill_time": 100, "burst": 2}}"#,
                "unknown field `burst`",
            ),
            (
                r#"{"iops": {"size": 1, "refill_time": 100}}"#,
                "unknown field `iops`",
            ),
        ] {
            let text = FIRECRACKER_EXAMPLE.replace(
                "\"rate_limiter\": null",
                &format!("\"rate_limiter\": {limiter}"),
            );
            let err = parse(&text).unwrap_err();
            assert!(err.contains(needle), "{limiter}: {err}");
        }
    }

    // The boundaries of the rules in `spec_checks`, through the config-file path; the
    // command-line tests in `device_specs` check the same boundaries through theirs.

    fn with_drive_id(id: &str) -> String {
        FIRECRACKER_EXAMPLE.replace(
            "\"drive_id\": \"rootfs\"",
            &format!("\"drive_id\": \"{id}\""),
        )
    }

    #[test]
    fn drive_id_of_20_bytes_is_kept_whole() {
        let id = "d".repeat(20);
        let c = parse(&with_drive_id(&id)).unwrap();
        assert_eq!(c.devices.rootfs.unwrap().id, Some(id));
    }

    #[test]
    fn drive_id_of_21_bytes_is_refused_not_cut() {
        let err = parse(&with_drive_id(&"d".repeat(21))).unwrap_err();
        assert!(err.contains("drives[0].drive_id"), "{err}");
        assert!(err.contains("21 bytes"), "{err}");
    }

    #[test]
    fn multibyte_drive_id_over_20_bytes_is_refused() {
        // 11 characters, 22 bytes: `chars().take(20)` used to pass it on whole.
        let err = parse(&with_drive_id(&"é".repeat(11))).unwrap_err();
        assert!(err.contains("22 bytes"), "{err}");
    }

    #[test]
    fn guest_cids_0_1_2_are_refused_and_3_accepted() {
        for cid in 0..3 {
            let text =
                FIRECRACKER_EXAMPLE.replace("\"guest_cid\": 3", &format!("\"guest_cid\": {cid}"));
            let err = parse(&text).unwrap_err();
            assert!(err.contains("vsock.guest_cid"), "{err}");
            assert!(err.contains("reserved"), "{err}");
        }
        let c = parse(FIRECRACKER_EXAMPLE).unwrap();
        assert_eq!(c.devices.vsock.unwrap().guest_cid, 3);
    }

    #[test]
    fn multicast_mac_is_refused() {
        let text = FIRECRACKER_EXAMPLE.replace("06:00:AC:10:00:02", "01:00:5E:00:00:01");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("guest_mac"), "{err}");
        assert!(err.contains("multicast"), "{err}");
    }
}
