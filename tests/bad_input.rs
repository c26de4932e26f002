//! Bad input: each case gives one clear error line naming the problem, exit status 2, and
//! no panic. The VMM validates before it touches the terminal, so nothing is left behind.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run_vmm, run_vmm_with, scratch_dir, skip_without_kvm, GUEST_TIMEOUT, TEST_GUEST};

/// How long refusing a file may take. Opening a FIFO used to block for ever (waiting for
/// a writer); with this limit the test fails instead of hanging.
const QUICK: Duration = Duration::from_secs(10);

/// Asserts exit 2, exactly one stderr line containing every `needle`, and no panic.
fn assert_bad_input(args: &[&str], needles: &[&str]) {
    assert_bad_input_within(args, needles, GUEST_TIMEOUT);
}

/// [`assert_bad_input`], failing when vmm takes longer than `timeout`.
fn assert_bad_input_within(args: &[&str], needles: &[&str], timeout: Duration) {
    let run = run_vmm_with(args, b"", timeout);
    assert_eq!(run.code(), Some(2), "vmm {args:?}\n{}", run.describe());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one error line\n{}",
        run.describe()
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "error line should mention {needle:?}: {}",
            lines[0]
        );
    }
}

fn write_file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// A FIFO in `dir`: opening it for reading waits for a writer, and none comes.
fn make_fifo(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {path:?}: {status}");
    path.to_string_lossy().into_owned()
}

/// Deterministic bytes that are neither an ELF nor a bzImage.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8 | 0x01
        })
        .collect()
}

#[test]
fn missing_kernel_is_named() {
    assert_bad_input(
        &["--kernel", "/nonexistent/vmlinux"],
        &["kernel image", "/nonexistent/vmlinux", "No such file"],
    );
}

#[test]
fn kernel_that_is_a_directory_is_refused() {
    let dir = scratch_dir("kernel-dir");
    assert_bad_input(&["--kernel", dir.to_str().unwrap()], &["is a directory"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn empty_kernel_is_refused() {
    let dir = scratch_dir("kernel-empty");
    let path = write_file(&dir, "empty", b"");
    assert_bad_input(&["--kernel", &path], &["is empty"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn random_bytes_are_not_a_kernel() {
    let dir = scratch_dir("kernel-noise");
    let path = write_file(&dir, "noise", &noise(64 * 1024));
    assert_bad_input(&["--kernel", &path], &["not an ELF vmlinux or a bzImage"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn truncated_elf_is_refused() {
    let dir = scratch_dir("kernel-truncated");
    let elf = std::fs::read(TEST_GUEST).unwrap();
    let path = write_file(&dir, "truncated", &elf[..elf.len().min(100)]);
    assert_bad_input(&["--kernel", &path], &["ELF vmlinux"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bzimage_with_bad_header_is_refused() {
    let dir = scratch_dir("kernel-bzimage");
    let mut image = vec![0u8; 8192];
    image[0x1f1] = 1; // setup_sects
    image[0x1fe] = 0x55;
    image[0x1ff] = 0xaa;
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x206..0x208].copy_from_slice(&0x0100u16.to_le_bytes()); // protocol 1.00: too old
    let path = write_file(&dir, "bzImage", &image);
    assert_bad_input(&["--kernel", &path], &["bzImage"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_initrd_is_named() {
    assert_bad_input(
        &[
            "--kernel",
            TEST_GUEST,
            "--initrd",
            "/nonexistent/initrd.img",
        ],
        &["initrd", "/nonexistent/initrd.img"],
    );
}

#[test]
fn initrd_larger_than_guest_ram_is_refused() {
    let dir = scratch_dir("initrd-large");
    let path = dir.join("big.img");
    // Sparse: 64 MiB that take no disk space, for a 32 MiB guest.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(64 << 20).unwrap();
    assert_bad_input(
        &[
            "--kernel",
            TEST_GUEST,
            "--mem",
            "32",
            "--initrd",
            path.to_str().unwrap(),
        ],
        &["initrd", "does not fit"],
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fifo_as_kernel_initrd_or_config_file_is_refused_at_once() {
    let dir = scratch_dir("fifo-inputs");
    let fifo = make_fifo(&dir, "fifo");
    let cases: [(&[&str], &str); 3] = [
        (&["--kernel", &fifo], "kernel image"),
        (&["--kernel", TEST_GUEST, "--initrd", &fifo], "initrd"),
        (&["--config-file", &fifo], "config file"),
    ];
    for (args, role) in cases {
        let needles = [role, fifo.as_str(), "is a FIFO, not a regular file"];
        assert_bad_input_within(args, &needles, QUICK);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn character_device_as_kernel_is_refused() {
    assert_bad_input_within(
        &["--kernel", "/dev/zero"],
        &["kernel image", "is a character device, not a regular file"],
        QUICK,
    );
}

#[test]
fn fifo_or_directory_as_a_disk_is_refused_at_once() {
    // Disks are opened once the VM exists, so these need /dev/kvm to get that far.
    if skip_without_kvm("fifo_or_directory_as_a_disk_is_refused_at_once") {
        return;
    }
    let dir = scratch_dir("fifo-disks");
    let fifo = make_fifo(&dir, "fifo");
    let subdir = dir.join("dir");
    std::fs::create_dir(&subdir).unwrap();
    let subdir = subdir.to_string_lossy().into_owned();
    let fifo_ro = format!("{fifo},ro");
    let dir_ro = format!("{subdir},ro");
    let not_a_disk = "not a regular file or a block device";
    let cases: [(&[&str], &str, &str); 4] = [
        (&["--disk", &fifo_ro], &fifo, "is a FIFO"),
        (&["--disk", &fifo], &fifo, "is a FIFO"),
        (&["--rootfs", &fifo], &fifo, "is a FIFO"),
        // Read-only, a directory used to open and show the guest a disk of 2^54 sectors.
        (&["--disk", &dir_ro], &subdir, "is a directory"),
    ];
    for (disk, path, kind) in cases {
        let mut args = vec![
            "--kernel",
            TEST_GUEST,
            "--cmdline",
            "console=ttyS0 tests=none",
        ];
        args.extend_from_slice(disk);
        assert_bad_input_within(&args, &["disk image", path, kind, not_a_disk], QUICK);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn balloon_larger_than_guest_ram_is_refused() {
    assert_bad_input(
        &[
            "--kernel",
            TEST_GUEST,
            "--mem",
            "64",
            "--balloon",
            "amount_mib=65",
        ],
        &["balloon amount_mib 65", "64 MiB"],
    );
}

#[test]
fn the_same_disk_id_twice_is_refused() {
    assert_bad_input(
        &[
            "--kernel",
            TEST_GUEST,
            "--rootfs",
            "/nonexistent/root.img",
            "--disk",
            "/nonexistent/data.img,id=rootfs",
        ],
        &["disk id \"rootfs\"", "two disks"],
    );
}

#[test]
fn zero_memory_is_refused() {
    assert_bad_input(&["--kernel", TEST_GUEST, "--mem", "0"], &["--mem"]);
}

#[test]
fn memory_beyond_the_host_is_refused() {
    assert_bad_input(
        &["--kernel", TEST_GUEST, "--mem", "100000000"],
        &["--mem", "more than this host"],
    );
}

#[test]
fn zero_cpus_are_refused() {
    assert_bad_input(&["--kernel", TEST_GUEST, "--cpus", "0"], &["--cpus"]);
}

#[test]
fn cpus_above_the_kvm_limit_are_refused() {
    if common::skip_without_kvm("cpus_above_the_kvm_limit_are_refused") {
        return;
    }
    assert_bad_input(
        &["--kernel", TEST_GUEST, "--cpus", "65535"],
        &["--cpus 65535", "limit"],
    );
}

#[test]
fn cmdline_longer_than_the_kernel_accepts_is_refused() {
    let long = "a".repeat(3000);
    assert_bad_input(
        &["--kernel", TEST_GUEST, "--cmdline", &long],
        &["command line is 3000 bytes", "at most 2048"],
    );
}

/// A device option clap refuses: exit 2 and an error line naming the option and `needle`
/// (clap adds its `--help` hint below it).
fn assert_device_option_refused(option: &str, value: &str, needle: &str) {
    let run = run_vmm(&["--kernel", TEST_GUEST, option, value]);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains(option) && first.contains(needle),
        "{}",
        run.describe()
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
}

#[test]
fn disk_id_longer_than_20_bytes_is_refused() {
    let value = format!("/nonexistent.img,id={}", "d".repeat(21));
    assert_device_option_refused("--disk", &value, "21 bytes");
    let multibyte = format!("/nonexistent.img,id={}", "é".repeat(11));
    assert_device_option_refused("--disk", &multibyte, "22 bytes");
}

#[test]
fn reserved_vsock_cid_is_refused() {
    assert_device_option_refused("--vsock", "cid=2,uds=/nonexistent/v.sock", "reserved");
}

#[test]
fn multicast_mac_is_refused() {
    assert_device_option_refused("--net", "tap=tap0,mac=01:00:5e:00:00:01", "multicast");
}

#[test]
fn unknown_option_is_a_usage_error() {
    let run = run_vmm(&["--kernel", TEST_GUEST, "--no-such-option"]);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(
        run.stderr.contains("--no-such-option"),
        "{}",
        run.describe()
    );
}
