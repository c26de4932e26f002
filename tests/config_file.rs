//! `--config-file`: Firecracker's JSON format boots the test guest; unknown or invalid
//! fields are refused with one error line naming the field, exit status 2.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{
    run_vmm, run_vmm_watching_memory, run_vmm_with, scratch_dir, skip_without_kvm, TEST_GUEST,
};

fn write_config(name: &str, json: &str) -> (std::path::PathBuf, String) {
    let dir = scratch_dir(name);
    let path = dir.join("vm_config.json");
    std::fs::write(&path, json).unwrap();
    (dir, path.to_string_lossy().into_owned())
}

fn minimal_config(extra_machine: &str) -> String {
    format!(
        r#"{{
  "boot-source": {{
    "kernel_image_path": "{TEST_GUEST}",
    "boot_args": "console=ttyS0 tests=boot,smp"
  }},
  "machine-config": {{ "vcpu_count": 2, "mem_size_mib": 64, "smt": false{extra_machine} }},
  "logger": null,
  "metrics": null
}}"#
    )
}

#[test]
fn firecracker_config_boots_the_test_guest() {
    if skip_without_kvm("firecracker_config_boots_the_test_guest") {
        return;
    }
    let (dir, path) = write_config("fc-boot", &minimal_config(""));
    let run = run_vmm(&["--config-file", &path]);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(run.fact("mptable_cpus"), Some("2"), "{}", run.describe());
    assert_eq!(run.fact("cpus_online"), Some("2"), "{}", run.describe());
    let ram_kib: u64 = run.fact("e820_ram_kib").unwrap().parse().unwrap();
    assert_eq!(ram_kib, 64 * 1024 - 385, "{}", run.describe());
}

#[test]
fn unknown_config_field_is_named_with_exit_2() {
    let (dir, path) = write_config("fc-unknown", &minimal_config(", \"turbo_mode\": true"));
    let run = run_vmm(&["--config-file", &path]);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
    assert!(
        run.stderr.contains("unknown field `turbo_mode`"),
        "{}",
        run.describe()
    );
}

#[test]
fn invalid_config_value_is_named_with_exit_2() {
    let json = minimal_config("").replace("\"vcpu_count\": 2", "\"vcpu_count\": -1");
    let (dir, path) = write_config("fc-invalid", &json);
    let run = run_vmm(&["--config-file", &path]);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stderr.contains("invalid value"), "{}", run.describe());
}

#[test]
fn config_file_that_is_not_json_is_refused() {
    let (dir, path) = write_config("fc-notjson", "kernel = vmlinux\n");
    let run = run_vmm(&["--config-file", &path]);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stderr.contains("vm_config.json"), "{}", run.describe());
}

#[test]
fn config_file_and_kernel_option_conflict() {
    let run = run_vmm(&["--config-file", "x.json", "--kernel", TEST_GUEST]);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(
        run.stderr.contains("cannot be used with"),
        "{}",
        run.describe()
    );
}

#[test]
fn drive_id_longer_than_20_bytes_is_refused_with_exit_2() {
    // 21 bytes, the virtio-blk serial holds 20: refused, as `--disk id=` refuses it, where
    // the id used to be cut. No KVM needed: the file is refused before any VM is made.
    let long_id = "d".repeat(21);
    let json = minimal_config("").replace(
        "\"logger\": null",
        &format!(
            "\"drives\": [{{ \"drive_id\": \"{long_id}\", \"path_on_host\": \"/nonexistent.img\", \
             \"is_root_device\": true }}],\n  \"logger\": null"
        ),
    );
    let (dir, path) = write_config("fc-long-drive-id", &json);
    let run = run_vmm(&["--config-file", &path]);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
    assert!(
        run.stderr.contains("drives[0].drive_id") && run.stderr.contains("21 bytes"),
        "{}",
        run.describe()
    );
}

/// `minimal_config` with `drives` (a JSON array) and `balloon` (an object or null).
fn config_with(drives: &str, balloon: &str) -> String {
    minimal_config("").replace(
        "\"logger\": null",
        &format!("\"drives\": {drives},\n  \"balloon\": {balloon},\n  \"logger\": null"),
    )
}

/// Asserts exit 2 and one error line containing every `needle`.
fn assert_refused(run: &common::Run, needles: &[&str]) {
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{needle:?}: {}",
            run.describe()
        );
    }
}

#[test]
fn two_drives_with_the_same_drive_id_are_refused_with_exit_2() {
    let drive = |path: &str| {
        format!(
            "{{ \"drive_id\": \"data\", \"path_on_host\": \"{path}\", \"is_root_device\": false }}"
        )
    };
    let drives = format!(
        "[{}, {}]",
        drive("/nonexistent/a.img"),
        drive("/nonexistent/b.img")
    );
    let (dir, path) = write_config("fc-duplicate-drive", &config_with(&drives, "null"));
    let run = run_vmm(&["--config-file", &path]);
    let _ = std::fs::remove_dir_all(dir);
    assert_refused(&run, &["disk id \"data\"", "two disks"]);
}

#[test]
fn balloon_larger_than_guest_ram_is_refused_with_exit_2() {
    // machine-config gives the guest 64 MiB.
    let balloon = "{ \"amount_mib\": 65, \"deflate_on_oom\": false }";
    let (dir, path) = write_config("fc-big-balloon", &config_with("[]", balloon));
    let run = run_vmm(&["--config-file", &path]);
    let _ = std::fs::remove_dir_all(dir);
    assert_refused(&run, &["balloon amount_mib 65", "64 MiB"]);
}

#[test]
fn config_file_over_1_mib_is_refused_with_exit_2() {
    // A config that parses, then more than 1 MiB of blanks that JSON allows.
    let json = minimal_config("") + &" ".repeat(1 << 20);
    let (dir, path) = write_config("fc-huge", &json);
    let run = run_vmm(&["--config-file", &path]);
    let _ = std::fs::remove_dir_all(dir);
    assert_refused(
        &run,
        &["config file", "vm_config.json", "larger than 1 MiB"],
    );
}

#[test]
fn config_file_dev_zero_is_refused_without_reading_it() {
    // Read whole, /dev/zero grew vmm past 2 GB; the memory watch fails the test long
    // before that.
    let watched = run_vmm_watching_memory(
        &["--config-file", "/dev/zero"],
        Stdio::null(),
        Duration::from_secs(10),
        100 * 1024,
    );
    assert!(watched.peak_kib < 100 * 1024, "{watched:?}");
    assert_eq!(
        watched.status.and_then(|s| s.code()),
        Some(2),
        "{watched:?}"
    );
    assert!(
        watched
            .stderr
            .contains("is a character device, not a regular file"),
        "{watched:?}"
    );
}

#[test]
fn drive_that_is_a_fifo_is_refused_at_once() {
    // Disks are opened once the VM exists, so this needs /dev/kvm to get that far.
    if skip_without_kvm("drive_that_is_a_fifo_is_refused_at_once") {
        return;
    }
    let dir = scratch_dir("fc-fifo-drive");
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let drives = format!(
        "[{{ \"drive_id\": \"data\", \"path_on_host\": \"{}\", \"is_root_device\": false, \"is_read_only\": true }}]",
        fifo.display()
    );
    let path = dir.join("vm_config.json");
    std::fs::write(&path, config_with(&drives, "null")).unwrap();
    // A blocking open of the FIFO used to hang for ever; the limit makes that a failure.
    let run = run_vmm_with(
        &["--config-file", path.to_str().unwrap()],
        b"",
        Duration::from_secs(10),
    );
    let _ = std::fs::remove_dir_all(dir);
    assert_refused(&run, &["is a FIFO, not a regular file or a block device"]);
}

#[test]
fn firecracker_config_with_drives_nics_and_vsock_boots_the_test_guest() {
    if skip_without_kvm("firecracker_config_with_drives_nics_and_vsock_boots_the_test_guest") {
        return;
    }
    if !std::path::Path::new("/dev/net/tun").exists() || effective_uid() != 0 {
        eprintln!("SKIP firecracker_config_with_drives_nics_and_vsock_boots_the_test_guest: needs root and /dev/net/tun for the tap");
        return;
    }
    let dir = scratch_dir("fc-devices");
    let rootfs = dir.join("rootfs.img");
    let data = dir.join("data.img");
    std::fs::write(&rootfs, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(&data, vec![0u8; 1 << 20]).unwrap();
    let uds = dir.join("v.sock");
    let tap = format!("vmmfc{}", std::process::id() % 100_000);
    let json = format!(
        r#"{{
  "boot-source": {{ "kernel_image_path": "{TEST_GUEST}", "boot_args": "console=ttyS0 tests=virtio,blk" }},
  "drives": [
    {{ "drive_id": "rootfs", "path_on_host": "{}", "is_root_device": true, "is_read_only": false }},
    {{ "drive_id": "data", "path_on_host": "{}", "is_root_device": false, "is_read_only": true }}
  ],
  "machine-config": {{ "vcpu_count": 1, "mem_size_mib": 64 }},
  "network-interfaces": [ {{ "iface_id": "eth0", "guest_mac": "06:00:ac:10:00:02", "host_dev_name": "{tap}" }} ],
  "vsock": {{ "guest_cid": 3, "uds_path": "{}" }}
}}"#,
        rootfs.display(),
        data.display(),
        uds.display()
    );
    let path = dir.join("vm_config.json");
    std::fs::write(&path, json).unwrap();
    let run = run_vmm(&["--config-file", path.to_str().unwrap()]);
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", &tap])
        .status();
    let socket_left = uds.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    // Two disks, a NIC and a vsock device, in that order.
    let ids: Vec<&str> = run
        .facts("virtio_device")
        .iter()
        .map(|f| f.rsplit(':').next().unwrap())
        .collect();
    assert_eq!(ids, ["2", "2", "1", "19"], "{}", run.describe());
    assert_eq!(run.fact("blk_id"), Some("rootfs"), "{}", run.describe());
    assert!(!socket_left, "the vsock socket is removed at exit");
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
