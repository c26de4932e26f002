//! The order of the container setup steps, checked against a fake syscall layer.

use std::path::PathBuf;

use super::config::ContainerConfig;
use super::error::ContainerError;
use super::init::setup_and_exec;
use super::options::{config_from_options, parse_rlimit, NetMode, RunOptions};
use super::rootfs::HostInfo;
use super::sys::fake::FakeSyscall;
use super::sys::BpfInstruction;

const ROOT: &str = "/fake/rootfs";

/// A config as `vmm container run` builds it, with its rootfs moved to a path that does
/// not exist (the fake never touches the file system). `tweak` sets options as the
/// command line would.
fn config_with(tweak: impl FnOnce(&mut RunOptions)) -> ContainerConfig {
    let mut options = RunOptions::new(
        std::env::temp_dir(),
        vec!["sh".into(), "-c".into(), "true".into()],
    );
    options.name = Some("t1".into());
    tweak(&mut options);
    let mut cfg = config_from_options(&options).unwrap();
    cfg.rootfs = PathBuf::from(ROOT);
    cfg
}

fn config() -> ContainerConfig {
    config_with(|_| {})
}

fn fake() -> FakeSyscall {
    FakeSyscall::with_paths(&["/proc/acpi", "/proc/sys"], &["/bin/sh", "/proc/kcore"])
}

fn run(
    sys: &FakeSyscall,
    cfg: &ContainerConfig,
    seccomp: Option<&[BpfInstruction]>,
) -> ContainerError {
    let host = HostInfo { cgroup2: false };
    match setup_and_exec(sys, cfg, host, seccomp) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn pos(sys: &FakeSyscall, prefix: &str) -> usize {
    sys.position(prefix)
        .unwrap_or_else(|| panic!("no call {prefix:?} in {:#?}", sys.calls.borrow()))
}

#[test]
fn setup_steps_run_in_runc_order() {
    let sys = fake();
    let cfg = config_with(|o| {
        o.hostname = Some("box".into());
        o.rlimits = vec![parse_rlimit("nofile=64").unwrap()];
    });
    run(&sys, &cfg, None);
    let order = [
        "unshare 0x2000000",
        "mount - / - 0x44000",
        &format!("mount {ROOT} {ROOT} - 0x5000"),
        &format!("mount proc {ROOT}/proc proc"),
        &format!("mount tmpfs {ROOT}/dev tmpfs"),
        &format!("mknod {ROOT}/dev/null"),
        &format!("chdir {ROOT}"),
        "pivot_root . .",
        "umount2 . 2",
        "mount tmpfs /proc/acpi tmpfs",
        "mount /dev/null /proc/kcore",
        "mount /proc/sys /proc/sys",
        "sethostname box",
        "loopback_up",
        "setrlimit 7 64 64",
        "no_new_privs",
        "capbset_drop",
        "keep_caps true",
        "set_ids 0 0",
        "keep_caps false",
        "capset",
        "pdeathsig 9",
        "umask 0o22",
        "cloexec_from 3",
        "restore_signals",
        "execve /bin/sh",
    ];
    let positions: Vec<usize> = order.iter().map(|p| pos(&sys, p)).collect();
    for (w, pair) in positions.windows(2).zip(order.windows(2)) {
        assert!(w[0] < w[1], "{:?} must come before {:?}", pair[0], pair[1]);
    }
}

#[test]
fn mounts_and_devices_happen_before_pivot_root_and_masks_after() {
    let sys = fake();
    run(&sys, &config(), None);
    let pivot = pos(&sys, "pivot_root");
    assert!(pos(&sys, &format!("mount sysfs {ROOT}/sys sysfs")) < pivot);
    assert!(pos(&sys, &format!("symlink /proc/self/fd {ROOT}/dev/fd")) < pivot);
    assert!(pos(&sys, "mount tmpfs /proc/acpi") > pivot);
}

#[test]
fn bounding_set_drops_exactly_the_capabilities_not_configured() {
    let sys = fake();
    let cfg = config_with(|o| o.cap_drop = vec!["CAP_KILL".into()]);
    run(&sys, &cfg, None);
    let kept = cfg.process.capabilities.bounding.count_ones() as usize;
    assert_eq!(sys.count("capbset_drop"), 41 - kept);
    assert!(
        sys.position("capbset_drop 5").is_some(),
        "CAP_KILL (5) is dropped"
    );
    assert!(
        sys.position("capbset_drop 0").is_none(),
        "CAP_CHOWN (0) is kept"
    );
}

#[test]
fn user_namespace_binds_host_devices_instead_of_mknod() {
    let sys = fake();
    run(&sys, &config_with(|o| o.userns = true), None);
    assert_eq!(sys.count("mknod"), 0);
    assert!(sys
        .position(&format!("mount /dev/null {ROOT}/dev/null - 0x1000"))
        .is_some());
    assert!(
        pos(&sys, "set_ids 0 0") < pos(&sys, "mount - / -"),
        "root of the userns first"
    );
}

#[test]
fn host_network_skips_loopback_setup() {
    let sys = fake();
    run(&sys, &config_with(|o| o.net = NetMode::Host), None);
    assert!(sys.position("loopback_up").is_none());
}

#[test]
fn seccomp_is_the_last_step_before_exec_with_no_new_privs() {
    let sys = fake();
    let prog = vec![BpfInstruction {
        code: 6,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    }];
    run(&sys, &config(), Some(&prog));
    assert!(pos(&sys, "capset") < pos(&sys, "seccomp 1"));
    assert!(pos(&sys, "seccomp 1") < pos(&sys, "execve"));
}

#[test]
fn seccomp_comes_before_dropping_caps_without_no_new_privs() {
    let sys = fake();
    let mut cfg = config();
    cfg.process.no_new_privileges = false;
    let prog = vec![BpfInstruction {
        code: 6,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    }];
    run(&sys, &cfg, Some(&prog));
    assert!(sys.position("no_new_privs").is_none());
    assert!(pos(&sys, "seccomp 1") < pos(&sys, "capbset_drop"));
}

#[test]
fn command_missing_from_rootfs_is_bad_input_and_nothing_execs() {
    let sys = FakeSyscall::with_paths(&[], &[]);
    let err = run(&sys, &config(), None);
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("\"sh\""), "{err}");
    assert!(sys.position("execve").is_none());
}

#[test]
fn failing_step_stops_setup_and_is_named() {
    let sys = FakeSyscall {
        fail_on: Some("pivot_root".into()),
        ..fake()
    };
    let err = run(&sys, &config(), None);
    assert!(err.to_string().contains("pivot_root"), "{err}");
    assert!(!err.is_bad_input());
    assert!(sys.position("sethostname").is_none());
    assert!(sys.position("execve").is_none());
}

#[test]
fn without_mount_namespace_chroot_replaces_pivot_root() {
    let sys = fake();
    let mut cfg = config();
    cfg.namespaces.mount = false;
    run(&sys, &cfg, None);
    assert!(sys.position("pivot_root").is_none());
    assert!(
        sys.position("mount").is_none(),
        "no mounts in the host's namespace"
    );
    assert!(pos(&sys, &format!("chroot {ROOT}")) < pos(&sys, "execve"));
}

#[test]
fn read_only_root_is_remounted_after_the_masks() {
    let sys = fake();
    run(&sys, &config_with(|o| o.read_only = true), None);
    let ro = sys
        .position("mount - / - 0x")
        .and_then(|first| {
            sys.calls.borrow()[first + 1..]
                .iter()
                .position(|c| c.starts_with("mount - / - "))
                .map(|i| i + first + 1)
        })
        .expect("a second mount of /");
    assert!(ro > pos(&sys, "mount /proc/sys /proc/sys"));
    assert!(ro < pos(&sys, "sethostname"));
}
