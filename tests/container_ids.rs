//! A container name is held by one run at a time (a locked directory under the state
//! root): a second run of a live name is refused, at `vmm container run` and at `vmm run
//! --isolation container` alike, and what a runtime killed with SIGKILL leaves behind (its
//! cgroups, its state) is removed by the next run of the name or by `vmm container
//! delete`. Root-only.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use container_support::*;

/// `vmm container run` of `cmd` under `name`, once it has printed "ready".
fn start_ready(rootfs: &Path, name: &str, options: &[&str], cmd: &str) -> Child {
    let mut child = command(rootfs, name, options, &["sh", "-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

fn assert_in_use(out: &Output, name: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("in use") && err.contains(name), "{err}");
}

#[test]
fn a_second_run_of_a_live_name_is_refused_and_the_first_runs_on() {
    let Some(rootfs) = rootfs_or_skip("live_name") else {
        return;
    };
    let name = unique("live");
    let mut first = start_ready(
        &rootfs,
        &name,
        &["--pids", "20"],
        "echo ready; read x; echo done",
    );

    assert_in_use(&run(&rootfs, &name, &["--pids", "5"], &["true"]), &name);
    let at_run_level = Command::new(VMM)
        .args(["run", "--isolation", "container", "--rootfs"])
        .arg(&rootfs)
        .arg("--state-root")
        .arg(state_root())
        .args(["--name", &name, "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_in_use(&at_run_level, &name);
    assert_in_use(&delete(&name), &name);

    let pids = v1_dir("pids", &name)
        .unwrap_or_else(|| Path::new("/sys/fs/cgroup/vmm").join(&name))
        .join("pids.max");
    assert_eq!(
        std::fs::read_to_string(pids).unwrap().trim(),
        "20",
        "not overwritten"
    );
    first.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "done\n");
    assert!(cgroup_dirs(&name).is_empty(), "{:?}", cgroup_dirs(&name));
    assert!(
        !state_root().join(&name).exists(),
        "the state goes with the run"
    );
}

/// Starts a run of `name` with a memory limit and kills its runtime with SIGKILL: its
/// workload dies with it (parent-death signal), its cgroups stay.
fn killed_run(rootfs: &Path, name: &str) {
    let mut run = start_ready(rootfs, name, &["--memory", "32m"], "echo ready; sleep 60");
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(
        !cgroup_dirs(name).is_empty(),
        "a killed runtime leaves its cgroups"
    );
    assert!(state_root().join(name).exists());
}

#[test]
fn a_killed_runtimes_cgroups_are_removed_by_the_next_run_of_its_name() {
    let Some(rootfs) = rootfs_or_skip("killed_next_run") else {
        return;
    };
    let name = unique("killed-next");
    killed_run(&rootfs, &name);
    // Without --memory: the next run makes no memory group of its own to remove.
    let out = run(&rootfs, &name, &[], &["true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        cgroup_dirs(&name).is_empty(),
        "left: {:?}",
        cgroup_dirs(&name)
    );
    assert!(!state_root().join(&name).exists());
}

#[test]
fn a_killed_runtimes_cgroups_and_state_are_removed_by_delete() {
    let Some(rootfs) = rootfs_or_skip("killed_delete") else {
        return;
    };
    let name = unique("killed-delete");
    killed_run(&rootfs, &name);
    let out = delete(&name);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        cgroup_dirs(&name).is_empty(),
        "left: {:?}",
        cgroup_dirs(&name)
    );
    assert!(!state_root().join(&name).exists());
}

#[test]
fn delete_of_an_unknown_name_is_bad_input() {
    let out = delete(&unique("never-ran"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}
