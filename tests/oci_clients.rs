//! `vmm-runc` under the real clients, driven as users drive them: Podman
//! (`podman --runtime vmm-runc run|exec|stop|rm`, through conmon) and containerd
//! (`ctr run --runc-binary vmm-runc`, through containerd-shim-runc-v2). Each client calls
//! the runtime in its own order, with its own flags, stdio and error channel (conmon reads
//! the JSON log or stderr, the shim only the `--log` file), which no unit test imitates
//! faithfully. Each test asserts the workload's output, the exit status the user sees, and
//! that once the container is removed nothing of it is left on the host: no runtime
//! state, cgroup, mount or process.
//!
//! Everything is made offline: the busybox rootfs (resources/container-rootfs.sh) becomes
//! one uncompressed layer tar, which `podman import` takes as is and which is wrapped
//! here into an OCI image archive for `ctr image import`. Podman gets its own
//! containers.conf through CONTAINERS_CONF (which replaces /etc/containers/containers.conf)
//! with `vmm-runc` registered by name, so that conmon passes it `--log-format=json --log`
//! as it does runc. Each containerd test starts a private daemon (its own root, state and
//! socket under a temporary directory, its own namespace), so no system daemon is touched.
//!
//! Tests skip (printing `SKIP`) when not root or when their client is not installed
//! (Debian: `apt-get install podman containerd`). Every client command runs under
//! `timeout`, so a hang fails the test instead of hanging the run.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

mod oci_support;

use oci_support::containerd::*;
use oci_support::podman::*;
use oci_support::*;

// ---- Podman ----

#[test]
fn podman_run_prints_output_and_passes_the_exit_status() {
    let Some(podman) = podman_or_skip("podman_run_prints_output_and_passes_the_exit_status") else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-run");
    let ran = c.run(&["--rm"], "echo hi; exit 3");
    assert_eq!((ran.code, ran.stdout.as_str()), (3, "hi\n"), "{ran}");
    c.assert_nothing_left();
}

#[test]
fn podman_run_with_a_terminal() {
    let Some(podman) = podman_or_skip("podman_run_with_a_terminal") else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-tty");
    let ran = podman
        .client
        .run_in_terminal(&c.run_args(&["--rm", "-t"], &sh("tty; exit 4", &c.name)));
    assert_eq!(ran.code, 4, "{ran}");
    assert!(
        ran.stdout.contains("/dev/pts/"),
        "stdin is not a terminal: {ran}"
    );
    c.assert_nothing_left();
}

#[test]
fn podman_exec_runs_in_the_container_and_passes_its_status() {
    let Some(podman) = podman_or_skip("podman_exec_runs_in_the_container_and_passes_its_status")
    else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-exec");
    c.run(&["-d"], SLEEPER).expect(0);
    let hostname = c.inspect("{{.Config.Hostname}}");

    let script = "cat /proc/1/cmdline; echo; hostname; exit 5";
    let ran = podman
        .client
        .run(&["exec", &c.name, "sh", "-c", script, &c.name]);
    assert_eq!(ran.code, 5, "{ran}");
    let mut lines = ran.stdout.lines();
    let pid1 = lines.next().unwrap_or_default().replace('\0', " ");
    assert!(
        pid1.contains(SLEEPER) && pid1.contains(&c.name),
        "PID 1 seen by the exec is not the workload: {ran}"
    );
    assert_eq!(lines.next(), Some(hostname.as_str()), "{ran}");

    podman
        .client
        .run(&["rm", "-f", "-t", "0", &c.name])
        .expect(0);
    c.assert_nothing_left();
}

#[test]
fn podman_stop_and_rm_leave_nothing() {
    let Some(podman) = podman_or_skip("podman_stop_and_rm_leave_nothing") else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-stop");
    // PID 1 without a handler ignores SIGTERM: the stop ends with SIGKILL after 2 s.
    c.run(&["-d"], SLEEPER).expect(0);
    assert_eq!(c.inspect("{{.State.Status}}"), "running");

    podman.client.run(&["stop", "-t", "2", &c.name]).expect(0);
    assert_eq!(
        c.inspect("{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    podman.client.run(&["rm", "-f", &c.name]).expect(0);
    c.assert_nothing_left();
}

#[test]
fn podman_rm_force_of_a_running_container_leaves_nothing() {
    let Some(podman) = podman_or_skip("podman_rm_force_of_a_running_container_leaves_nothing")
    else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-rm");
    // This one ends on SIGTERM, so `rm -f` needs no SIGKILL.
    c.run(&["-d"], &format!("trap 'exit 0' TERM; {SLEEPER}"))
        .expect(0);
    assert_eq!(c.inspect("{{.State.Status}}"), "running");

    podman.client.run(&["rm", "-f", &c.name]).expect(0);
    c.assert_nothing_left();
}

#[test]
fn podman_run_reports_a_missing_command() {
    let Some(podman) = podman_or_skip("podman_run_reports_a_missing_command") else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-nocmd");
    let ran = podman.client.run(&c.run_args(&["--rm"], &["/no/such"]));
    // 127 is Podman's "command not found", chosen from the runtime's message.
    assert_eq!(ran.code, 127, "{ran}");
    assert!(ran.stderr.contains(MISSING_COMMAND_MESSAGE), "{ran}");
    c.assert_nothing_left();
}

// ---- containerd ----

#[test]
fn ctr_run_prints_output_and_passes_the_exit_status() {
    let Some(containerd) = containerd_or_skip("ctr_run_prints_output_and_passes_the_exit_status")
    else {
        return;
    };
    let id = unique("ctr-run");
    let ran = containerd
        .ctr
        .run(&ctr_run_args(&[], &id, &sh("echo hi; exit 3", &id)));
    assert_eq!((ran.code, ran.stdout.as_str()), (3, "hi\n"), "{ran}");
    containerd.assert_nothing_left(&id);
}

#[test]
fn ctr_run_with_a_terminal() {
    let Some(containerd) = containerd_or_skip("ctr_run_with_a_terminal") else {
        return;
    };
    let id = unique("ctr-tty");
    let ran = containerd
        .ctr
        .run_in_terminal(&ctr_run_args(&["-t"], &id, &sh("tty; exit 4", &id)));
    assert_eq!(ran.code, 4, "{ran}");
    assert!(
        ran.stdout.contains("/dev/pts/"),
        "stdin is not a terminal: {ran}"
    );
    containerd.assert_nothing_left(&id);
}

#[test]
fn ctr_failure_message_comes_from_the_json_log() {
    let Some(containerd) = containerd_or_skip("ctr_failure_message_comes_from_the_json_log") else {
        return;
    };
    let id = unique("ctr-nocmd");
    // The shim ignores the runtime's stderr: the message can only come from `--log`.
    let ran = containerd.ctr.run(&ctr_run_args(&[], &id, &["/no/such"]));
    assert_ne!(ran.code, 0, "{ran}");
    assert!(
        ran.stderr.contains(&format!(
            "OCI runtime create failed: {MISSING_COMMAND_MESSAGE}"
        )),
        "{ran}"
    );
    containerd.assert_nothing_left(&id);
}
