//! Bad input to `vmm container run`: one clear error line naming the problem, exit status
//! 2, and nothing left behind (no cgroup, no mount).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

use std::path::Path;
use std::process::{Command, Output};

use container_support::*;

fn assert_bad_input(out: &Output, name: &str, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "error should name {needle:?}: {err}");
    assert!(
        err.lines().next().is_some_and(|l| l.contains("error")),
        "{err}"
    );
    assert!(
        cgroup_dirs(name).is_empty(),
        "left behind: {:?}",
        cgroup_dirs(name)
    );
}

fn bundle_with(name: &str, config: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bad-bundle-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    dir
}

fn run_bundle(dir: &Path, name: &str) -> Output {
    let out = Command::new(VMM)
        .args(["container", "run", "--name", name, "--bundle"])
        .arg(dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    out
}

#[test]
fn missing_rootfs_is_rejected() {
    let name = unique("norootfs");
    let out = run(Path::new("/nonexistent/rootfs"), &name, &[], &["true"]);
    assert_bad_input(&out, &name, "/nonexistent/rootfs");
}

#[test]
fn rootfs_without_the_command_is_rejected() {
    let Some(rootfs) = rootfs_or_skip("missing_command") else {
        return;
    };
    let name = unique("nocmd");
    let out = run(&rootfs, &name, &[], &["no-such-program"]);
    assert_bad_input(&out, &name, "no-such-program");
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(host_mounts_under(&rootfs).is_empty());
}

#[test]
fn bundle_with_invalid_json_is_rejected() {
    let name = unique("badjson");
    let out = run_bundle(&bundle_with("json", "{ \"ociVersion\": "), &name);
    assert_bad_input(&out, &name, "config.json");
}

#[test]
fn bundle_with_an_unsupported_value_is_rejected() {
    let name = unique("unsupported");
    let config = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"terminal":true,"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"}}"#;
    let out = run_bundle(&bundle_with("tty", config), &name);
    assert_bad_input(&out, &name, "terminal");
}

#[test]
fn bundle_with_an_invalid_field_value_is_rejected() {
    let name = unique("badns");
    let config = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"},
        "linux":{"namespaces":[{"type":"galaxy"}]}}"#;
    let out = run_bundle(&bundle_with("ns", config), &name);
    assert_bad_input(&out, &name, "galaxy");
}

#[test]
fn limit_that_does_not_parse_is_rejected() {
    let name = unique("badlimit");
    for (flag, value) in [("--memory", "lots"), ("--pids", "-3"), ("--cpus", "half")] {
        let out = run(Path::new("/"), &name, &[flag, value], &["true"]);
        assert_bad_input(&out, &name, value);
    }
}

#[test]
fn mount_with_a_missing_source_is_rejected() {
    let Some(rootfs) = rootfs_or_skip("missing_mount_source") else {
        return;
    };
    let name = unique("nosrc");
    let dst = format!("/bad-input-dst-{}", std::process::id());
    let spec = format!("/no/such/source:{dst}");
    let out = run(&rootfs, &name, &["--mount", &spec], &["true"]);
    assert_bad_input(&out, &name, "/no/such/source");
    assert!(!rootfs.join(&dst[1..]).exists(), "mount point created");
}

#[test]
fn unknown_capability_is_rejected() {
    let Some(rootfs) = rootfs_or_skip("unknown_capability") else {
        return;
    };
    let name = unique("badcap");
    let out = run(&rootfs, &name, &["--cap-add", "CAP_TELEPORT"], &["true"]);
    assert_bad_input(&out, &name, "CAP_TELEPORT");
}

#[test]
fn hostname_longer_than_the_kernel_takes_is_rejected() {
    let Some(rootfs) = rootfs_or_skip("long_hostname") else {
        return;
    };
    let name = unique("longhost");
    let out = run(&rootfs, &name, &["--hostname", &"h".repeat(300)], &["true"]);
    assert_bad_input(&out, &name, "--hostname");
    assert!(stderr(&out).contains("300 bytes"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn hostname_with_a_slash_is_rejected() {
    let Some(rootfs) = rootfs_or_skip("slash_hostname") else {
        return;
    };
    let name = unique("slashhost");
    let out = run(&rootfs, &name, &["--hostname", "a/b"], &["true"]);
    assert_bad_input(&out, &name, "a/b");
}

#[test]
fn workdir_missing_from_the_rootfs_is_rejected_not_made() {
    let Some(rootfs) = rootfs_or_skip("missing_workdir") else {
        return;
    };
    let name = unique("noworkdir");
    let dir = format!("/no-such-workdir-{}", std::process::id());
    let out = run(&rootfs, &name, &["--workdir", &dir], &["true"]);
    assert_bad_input(&out, &name, &dir);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(!rootfs.join(&dir[1..]).exists(), "the workdir was made");
    assert!(host_mounts_under(&rootfs).is_empty());
}

#[test]
fn workdir_that_is_a_file_is_rejected() {
    let Some(rootfs) = rootfs_or_skip("file_workdir") else {
        return;
    };
    let name = unique("fileworkdir");
    let out = run(&rootfs, &name, &["--workdir", "/bin/sh"], &["true"]);
    assert_bad_input(&out, &name, "/bin/sh");
}
