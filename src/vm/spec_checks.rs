//! The rules a device spec must follow, in one place: the command-line options
//! (`device_specs`) and the Firecracker config file (`config_file`) both call these, so a
//! value is accepted or refused the same way whichever way it arrives. Each rule takes the
//! value as the user wrote it and returns it checked (and parsed, for a MAC); the rules
//! between devices and the VM's size are [`whole_vm`]'s, checked when the VM is built.
//!
//! The device models keep their own guards (`Block::new`, `Vsock::new`) for callers that
//! build specs in code; the limits come from the same constants, so the two cannot differ.

use std::collections::HashSet;

use devices::virtio::blk::ID_LEN as DISK_ID_MAX_BYTES;
use devices::virtio::vsock::GUEST_CIDS;

use super::device_specs::DeviceSpecs;

/// Tap names are at most IFNAMSIZ - 1 bytes.
const TAP_NAME_MAX_BYTES: usize = 15;

/// A device spec value that breaks a rule; the message names the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpec {
    #[error(
        "disk id {id:?} is {} bytes; it must be 1 to {DISK_ID_MAX_BYTES} ASCII characters \
         (the disk's virtio-blk serial)",
        id.len()
    )]
    DiskId { id: String },
    #[error("{text:?} is not a MAC address like 06:00:ac:10:00:02")]
    MacSyntax { text: String },
    #[error("{text:?} is a multicast address; a NIC needs a unicast one")]
    MacMulticast { text: String },
    #[error(
        "guest CID {cid} is reserved; use {} to {}",
        GUEST_CIDS.start,
        GUEST_CIDS.end - 1
    )]
    ReservedCid { cid: u64 },
    #[error(
        "tap name {name:?} must be 1 to {TAP_NAME_MAX_BYTES} characters without '/', ':' or spaces"
    )]
    TapName { name: String },
    #[error(
        "disk id {id:?} is given to two disks; a disk's id (its virtio-blk serial) must be unique"
    )]
    DuplicateDiskId { id: String },
    #[error("balloon amount_mib {amount_mib} is more than the guest's {mem_mib} MiB of RAM")]
    BalloonAboveRam { amount_mib: u32, mem_mib: u64 },
}

/// A virtio-blk id: 1 to 20 ASCII bytes. Refused rather than cut: a cut id could name
/// another disk, and the guest finds disks by it (/dev/disk/by-id).
pub fn disk_id(id: &str) -> Result<String, InvalidSpec> {
    if id.is_empty() || id.len() > DISK_ID_MAX_BYTES || !id.is_ascii() {
        return Err(InvalidSpec::DiskId { id: id.to_string() });
    }
    Ok(id.to_string())
}

/// A unicast MAC address, six colon-separated hex pairs (either case).
pub fn mac(text: &str) -> Result<[u8; 6], InvalidSpec> {
    let syntax = || InvalidSpec::MacSyntax {
        text: text.to_string(),
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(syntax());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        // from_str_radix alone would take "+a" and one-digit parts.
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(syntax());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| syntax())?;
    }
    // The I/G bit: a group address cannot be a NIC's own.
    if mac[0] & 1 == 1 {
        return Err(InvalidSpec::MacMulticast {
            text: text.to_string(),
        });
    }
    Ok(mac)
}

/// A guest CID outside the reserved ones (see [`GUEST_CIDS`]).
pub fn guest_cid(cid: u64) -> Result<u64, InvalidSpec> {
    if !GUEST_CIDS.contains(&cid) {
        return Err(InvalidSpec::ReservedCid { cid });
    }
    Ok(cid)
}

/// A network interface name the kernel accepts: 1 to 15 bytes without '/' or whitespace,
/// and without ':' (which would make it an alias).
pub fn tap_name(name: &str) -> Result<String, InvalidSpec> {
    let bad = name.is_empty()
        || name.len() > TAP_NAME_MAX_BYTES
        || name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c == ':');
    if bad {
        return Err(InvalidSpec::TapName {
            name: name.to_string(),
        });
    }
    Ok(name.to_string())
}

/// The rules that hold between a VM's devices and its size, checked once the whole VM is
/// known (`--rootfs` and `--disk` together, `--mem` or `machine-config` with `--balloon`
/// or `balloon`): no disk id twice, no balloon larger than guest RAM (Firecracker refuses
/// both).
pub fn whole_vm(devices: &DeviceSpecs, mem_mib: u64) -> Result<(), InvalidSpec> {
    let mut ids = HashSet::new();
    let disks = devices.rootfs.iter().chain(&devices.disks);
    for id in disks.filter_map(|d| d.id.as_deref()) {
        if !ids.insert(id) {
            return Err(InvalidSpec::DuplicateDiskId { id: id.to_string() });
        }
    }
    if let Some(balloon) = &devices.balloon {
        if u64::from(balloon.amount_mib) > mem_mib {
            return Err(InvalidSpec::BalloonAboveRam {
                amount_mib: balloon.amount_mib,
                mem_mib,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::device_specs::{BalloonSpec, DiskSpec};

    #[test]
    fn disk_id_of_20_bytes_is_accepted_and_21_refused() {
        assert_eq!(disk_id(&"a".repeat(20)).unwrap(), "a".repeat(20));
        assert!(matches!(
            disk_id(&"a".repeat(21)),
            Err(InvalidSpec::DiskId { .. })
        ));
    }

    #[test]
    fn disk_id_is_counted_in_bytes_not_characters() {
        // 11 characters, 22 bytes: what `chars().take(20)` used to let through.
        let id = "é".repeat(11);
        let err = disk_id(&id).unwrap_err();
        assert!(err.to_string().contains("22 bytes"), "{err}");
    }

    #[test]
    fn empty_or_non_ascii_disk_id_is_refused() {
        assert!(disk_id("").is_err());
        assert!(disk_id("dïsk").is_err());
    }

    #[test]
    fn cids_0_1_2_and_any_are_refused_and_3_accepted() {
        for cid in [0, 1, 2, u64::from(u32::MAX), 1 << 32] {
            assert_eq!(guest_cid(cid), Err(InvalidSpec::ReservedCid { cid }));
        }
        assert_eq!(guest_cid(3), Ok(3));
        assert_eq!(guest_cid(u64::from(u32::MAX) - 1), Ok(0xffff_fffe));
    }

    #[test]
    fn reserved_cid_message_names_the_valid_range() {
        let err = guest_cid(2).unwrap_err().to_string();
        assert_eq!(err, "guest CID 2 is reserved; use 3 to 4294967294");
    }

    const MAC: [u8; 6] = [0x06, 0, 0xac, 0x10, 0, 2];

    // Moved from devices/src/virtio/net/tests.rs, whose MAC parser this one replaces.
    #[test]
    fn mac_accepts_colon_hex_and_rejects_the_rest() {
        assert_eq!(mac("06:00:AC:10:00:02").unwrap(), MAC);
        for bad in [
            "",
            "06:00:ac:10:00",
            "06:00:ac:10:00:02:03",
            "6:00:ac:10:00:02",
            "zz:00:ac:10:00:02",
        ] {
            assert!(mac(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mac_with_sign_or_multicast_bit_is_refused() {
        assert!(matches!(
            mac("+6:00:ac:10:00:02"),
            Err(InvalidSpec::MacSyntax { .. })
        ));
        assert!(matches!(
            mac("01:00:5e:00:00:01"),
            Err(InvalidSpec::MacMulticast { .. })
        ));
    }

    fn disk(id: &str) -> DiskSpec {
        DiskSpec {
            path: "d.img".into(),
            read_only: false,
            id: Some(id.to_string()),
            rate_limiter: None,
        }
    }

    #[test]
    fn the_same_disk_id_twice_is_refused_and_the_root_disk_counts() {
        let mut devices = DeviceSpecs {
            rootfs: Some(disk("rootfs")),
            disks: vec![disk("data")],
            ..Default::default()
        };
        assert_eq!(whole_vm(&devices, 128), Ok(()));
        devices.disks.push(disk("rootfs"));
        assert_eq!(
            whole_vm(&devices, 128),
            Err(InvalidSpec::DuplicateDiskId {
                id: "rootfs".into()
            })
        );
    }

    #[test]
    fn balloon_of_all_guest_ram_is_accepted_and_one_mib_more_refused() {
        let balloon = |amount_mib| DeviceSpecs {
            balloon: Some(BalloonSpec {
                amount_mib,
                deflate_on_oom: false,
                stats_interval_s: 0,
            }),
            ..Default::default()
        };
        assert_eq!(whole_vm(&balloon(128), 128), Ok(()));
        let err = whole_vm(&balloon(129), 128).unwrap_err();
        assert_eq!(
            err.to_string(),
            "balloon amount_mib 129 is more than the guest's 128 MiB of RAM"
        );
    }

    #[test]
    fn tap_name_of_15_bytes_is_accepted_and_16_or_odd_characters_refused() {
        assert!(tap_name(&"t".repeat(15)).is_ok());
        for bad in ["", "tap/0", "tap 0", "tap:0", &"t".repeat(16)] {
            assert!(tap_name(bad).is_err(), "{bad:?}");
        }
    }
}
