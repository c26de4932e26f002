//! `--config-file`: Firecracker's JSON format boots the test guest; unknown or invalid
//! fields are refused with one error line naming the field, exit status 2.

mod common;

use common::{run_vmm, scratch_dir, skip_without_kvm, TEST_GUEST};

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
