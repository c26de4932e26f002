//! The configuration before start: what each PUT keeps, refuses and becomes.

use super::*;

fn body<T: serde::de::DeserializeOwned>(json: &str) -> T {
    serde_json::from_str(json).unwrap()
}

fn configured() -> Preboot {
    let mut p = Preboot::new(1, 128, "console=ttyS0");
    p.put_boot_source(body(
        r#"{"kernel_image_path":"vmlinux","boot_args":"quiet"}"#,
    ));
    p
}

#[test]
fn no_kernel_no_start() {
    let p = Preboot::new(1, 128, "");
    assert_eq!(
        p.vm_config(None).unwrap_err(),
        "Cannot start microvm without kernel configuration."
    );
}

#[test]
fn drives_become_root_first_then_the_others_in_order() {
    let mut p = configured();
    p.put_drive(body(
        r#"{"drive_id":"data","path_on_host":"d.img","is_root_device":false}"#,
    ))
    .unwrap();
    p.put_drive(body(
        r#"{"drive_id":"rootfs","path_on_host":"r.img","is_root_device":true}"#,
    ))
    .unwrap();
    let c = p.vm_config(None).unwrap();
    assert_eq!(c.devices.rootfs.unwrap().path, PathBuf::from("r.img"));
    assert_eq!(c.devices.disks.len(), 1);
    assert_eq!(c.devices.disks[0].id.as_deref(), Some("data"));
    assert_eq!(c.cmdline, "quiet");
}

#[test]
fn a_second_root_is_refused_and_a_re_put_replaces() {
    let mut p = configured();
    p.put_drive(body(
        r#"{"drive_id":"rootfs","path_on_host":"r.img","is_root_device":true}"#,
    ))
    .unwrap();
    p.put_drive(body(
        r#"{"drive_id":"rootfs","path_on_host":"r2.img","is_root_device":true}"#,
    ))
    .unwrap();
    let err = p
        .put_drive(body(
            r#"{"drive_id":"other","path_on_host":"o.img","is_root_device":true}"#,
        ))
        .unwrap_err();
    assert_eq!(err, "A root block device already exists!");
    let c = p.vm_config(None).unwrap();
    assert_eq!(c.devices.rootfs.unwrap().path, PathBuf::from("r2.img"));
    assert!(c.devices.disks.is_empty());
}

#[test]
fn patch_drive_swaps_the_backing_file_of_a_known_drive_only() {
    let mut p = configured();
    p.put_drive(body(
        r#"{"drive_id":"stub","path_on_host":"stub.img","is_root_device":false}"#,
    ))
    .unwrap();
    p.patch_drive(body(r#"{"drive_id":"stub","path_on_host":"real.img"}"#))
        .unwrap();
    let c = p.vm_config(None).unwrap();
    assert_eq!(c.devices.disks[0].path, PathBuf::from("real.img"));
    let err = p
        .patch_drive(body(r#"{"drive_id":"nope","path_on_host":"x"}"#))
        .unwrap_err();
    assert!(err.contains("no drive with id \"nope\""), "{err}");
}

#[test]
fn machine_config_patch_keeps_what_it_does_not_name() {
    let mut p = configured();
    p.put_machine_config(body(r#"{"vcpu_count":2,"mem_size_mib":256}"#))
        .unwrap();
    p.patch_machine_config(body(r#"{"mem_size_mib":64}"#))
        .unwrap();
    assert_eq!((p.machine().vcpu_count, p.machine().mem_size_mib), (2, 64));
    assert!(p.patch_machine_config(body(r#"{"vcpu_count":0}"#)).is_err());
    assert_eq!(p.machine().vcpu_count, 2);
}

#[test]
fn device_values_are_checked_as_in_a_config_file() {
    let mut p = configured();
    let err = p
        .put_vsock(body(r#"{"guest_cid":2,"uds_path":"v.sock"}"#))
        .unwrap_err();
    assert!(err.contains("vsock.guest_cid"), "{err}");
    let err = p
        .put_network_interface(body(
            r#"{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"01:00:5e:00:00:01"}"#,
        ))
        .unwrap_err();
    assert!(err.contains("multicast"), "{err}");
    let err = p
        .put_balloon(body(r#"{"amount_mib":4096,"deflate_on_oom":false}"#))
        .unwrap_err();
    assert!(err.contains("more than the guest's 128 MiB"), "{err}");
}

#[test]
fn two_interfaces_on_one_tap_are_refused() {
    let mut p = configured();
    p.put_network_interface(body(r#"{"iface_id":"eth0","host_dev_name":"tap0"}"#))
        .unwrap();
    let err = p
        .put_network_interface(body(r#"{"iface_id":"eth1","host_dev_name":"tap0"}"#))
        .unwrap_err();
    assert_eq!(err, "The host device name tap0 is already in use.");
}
