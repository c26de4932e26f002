//! The order of the container setup steps, checked against a fake syscall layer.

use std::path::PathBuf;

use super::config::ContainerConfig;
use super::error::ContainerError;
use super::init::{setup_and_exec, Extras};
use super::options::{config_from_options, parse_rlimit, NetMode, RunOptions};
use super::rootfs::{HostInfo, V1Hierarchy};
use super::sys::fake::FakeSyscall;
use super::sys::BpfInstruction;

const ROOT: &str = "/fake/rootfs";

mod cgroup_mounts;

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
    seccomp: &[Vec<BpfInstruction>],
) -> ContainerError {
    run_on(sys, cfg, HostInfo::default(), seccomp)
}

fn run_on(
    sys: &FakeSyscall,
    cfg: &ContainerConfig,
    host: HostInfo,
    seccomp: &[Vec<BpfInstruction>],
) -> ContainerError {
    let extras = Extras {
        seccomp,
        ..Extras::default()
    };
    match setup_and_exec(sys, cfg, host, extras) {
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
    run(&sys, &cfg, &[]);
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
        "sethostname box",
        "loopback_up",
        "mount tmpfs /proc/acpi tmpfs",
        "mount /dev/null /proc/kcore",
        "mount /proc/sys /proc/sys",
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
    run(&sys, &config(), &[]);
    let pivot = pos(&sys, "pivot_root");
    assert!(pos(&sys, &format!("mount sysfs {ROOT}/sys sysfs")) < pivot);
    assert!(pos(&sys, &format!("symlink /proc/self/fd {ROOT}/dev/fd")) < pivot);
    assert!(pos(&sys, "mount tmpfs /proc/acpi") > pivot);
}

#[test]
fn bounding_set_drops_exactly_the_capabilities_not_configured() {
    let sys = fake();
    let cfg = config_with(|o| o.cap_drop = vec!["CAP_KILL".into()]);
    run(&sys, &cfg, &[]);
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
    run(&sys, &config_with(|o| o.userns = true), &[]);
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
    run(&sys, &config_with(|o| o.net = NetMode::Host), &[]);
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
    run(&sys, &config(), &[prog]);
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
    run(&sys, &cfg, &[prog]);
    assert!(sys.position("no_new_privs").is_none());
    assert!(pos(&sys, "seccomp 1") < pos(&sys, "capbset_drop"));
}

#[test]
fn command_missing_from_rootfs_is_bad_input_and_nothing_execs() {
    let sys = FakeSyscall::with_paths(&[], &[]);
    let err = run(&sys, &config(), &[]);
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
    let err = run(&sys, &config(), &[]);
    assert!(err.to_string().contains("pivot_root"), "{err}");
    assert!(!err.is_bad_input());
    assert!(sys.position("sethostname").is_none());
    assert!(sys.position("execve").is_none());
}

#[test]
fn missing_working_directory_is_bad_input_naming_it() {
    let sys = FakeSyscall {
        fail_on: Some("chdir /no/such/dir".into()),
        fail_errno: Some(libc::ENOENT),
        ..fake()
    };
    let cfg = config_with(|o| o.workdir = PathBuf::from("/no/such/dir"));
    let err = run(&sys, &cfg, &[]);
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
    assert!(sys.position("execve").is_none());
}

#[test]
fn working_directory_failing_otherwise_is_a_failure() {
    let sys = FakeSyscall {
        fail_on: Some("chdir /work".into()),
        fail_errno: Some(libc::EIO),
        ..fake()
    };
    let err = run(
        &sys,
        &config_with(|o| o.workdir = PathBuf::from("/work")),
        &[],
    );
    assert!(!err.is_bad_input(), "{err}");
}

#[test]
fn without_mount_namespace_chroot_replaces_pivot_root() {
    let sys = fake();
    let mut cfg = config();
    cfg.namespaces.mount = false;
    run(&sys, &cfg, &[]);
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
    run(&sys, &config_with(|o| o.read_only = true), &[]);
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
    assert!(ro < pos(&sys, "capset"));
}

#[test]
fn link_is_configured_after_loopback_and_before_the_identity_change() {
    let sys = fake();
    let cfg = config_with(|o| o.net = NetMode::Link);
    let link = cfg
        .net_link
        .as_ref()
        .expect("a link for --net link")
        .addresses;
    run(&sys, &cfg, &[]);
    let order = [
        "loopback_up".to_owned(),
        format!("set_ipv4 eth0 {}/30", link.workload),
        "link_up eth0".to_owned(),
        format!("default_route {}", link.host),
        "no_new_privs".to_owned(),
        "set_ids".to_owned(),
        "execve".to_owned(),
    ];
    let positions: Vec<usize> = order.iter().map(|p| pos(&sys, p)).collect();
    for (w, pair) in positions.windows(2).zip(order.windows(2)) {
        assert!(w[0] < w[1], "{:?} must come before {:?}", pair[0], pair[1]);
    }
}

#[test]
fn no_link_is_configured_without_net_link() {
    for net in [NetMode::None, NetMode::Host] {
        let sys = fake();
        run(&sys, &config_with(|o| o.net = net), &[]);
        assert_eq!(sys.count("set_ipv4"), 0, "{net:?}");
        assert_eq!(sys.count("link_up"), 0, "{net:?}");
        assert_eq!(sys.count("default_route"), 0, "{net:?}");
    }
}

#[test]
fn failing_link_step_stops_setup_and_names_the_interface() {
    let sys = FakeSyscall {
        fail_on: Some("link_up".into()),
        ..fake()
    };
    let err = run(&sys, &config_with(|o| o.net = NetMode::Link), &[]);
    assert!(err.to_string().contains("bring up eth0"), "{err}");
    assert!(!err.is_bad_input());
    assert!(sys.position("default_route").is_none());
    assert!(sys.position("execve").is_none());
}

#[test]
fn sysctls_are_written_through_proc_before_proc_sys_turns_read_only() {
    let sys = fake();
    let mut cfg = config();
    cfg.sysctl = vec![("net.ipv4.ping_group_range".into(), "0 0".into())];
    cfg.readonly_paths = vec![PathBuf::from("/proc/sys")];
    run(&sys, &cfg, &[]);
    let write = pos(&sys, "write /proc/sys/net/ipv4/ping_group_range 0 0");
    assert!(pos(&sys, "pivot_root") < write);
    assert!(
        write < pos(&sys, "mount /proc/sys"),
        "{:?}",
        sys.calls.borrow()
    );
}

#[test]
fn sysctl_key_that_leaves_proc_sys_is_bad_input() {
    let sys = fake();
    let mut cfg = config();
    cfg.sysctl = vec![("net/../../etc".into(), "x".into())];
    let err = run(&sys, &cfg, &[]);
    assert!(err.is_bad_input(), "{err}");
    assert_eq!(sys.count("write"), 0);
}

#[test]
fn oom_score_adj_is_set_before_capabilities_are_dropped() {
    let sys = fake();
    let mut cfg = config();
    cfg.oom_score_adj = Some(-500);
    run(&sys, &cfg, &[]);
    assert!(pos(&sys, "write /proc/self/oom_score_adj -500") < pos(&sys, "capbset_drop"));
}

#[test]
fn terminal_without_a_console_socket_is_refused_before_anything_runs() {
    let sys = fake();
    let mut cfg = config();
    cfg.terminal = true;
    let err = run(&sys, &cfg, &[]);
    assert!(err.to_string().contains("console socket"), "{err}");
    assert!(sys.position("execve").is_none());
}

#[test]
fn terminal_is_attached_after_the_rootfs_and_before_the_identity_change() {
    let sys = fake();
    let mut cfg = config();
    cfg.terminal = true;
    let extras = Extras {
        console_socket: Some(7),
        ..Extras::default()
    };
    let _ = setup_and_exec(&sys, &cfg, HostInfo::default(), extras);
    let console = pos(&sys, "console 7");
    assert!(pos(&sys, "pivot_root") < console);
    assert!(console < pos(&sys, "set_ids"), "{:?}", sys.calls.borrow());
}

#[test]
fn create_gate_runs_after_the_command_is_found_and_before_seccomp_and_exec() {
    let sys = fake();
    let prog = vec![BpfInstruction {
        code: 6,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    }];
    let calls_at_gate = std::cell::Cell::new(0);
    let mut gate = || {
        calls_at_gate.set(sys.calls.borrow().len());
        Ok(())
    };
    let extras = Extras {
        seccomp: &[prog],
        console_socket: None,
        gate: Some(&mut gate),
        before_root_switch: None,
        outlives_runtime: false,
    };
    let _ = setup_and_exec(&sys, &config(), HostInfo::default(), extras);
    let at_gate = calls_at_gate.get();
    assert!(
        at_gate > pos(&sys, "capset"),
        "gate before the capabilities"
    );
    assert!(at_gate <= pos(&sys, "seccomp 1"), "gate after seccomp");
    assert!(at_gate <= pos(&sys, "execve"));
}

#[test]
fn failing_gate_stops_before_exec() {
    let sys = fake();
    let mut gate = || Err(ContainerError::Setup("start never came".into()));
    let extras = Extras {
        gate: Some(&mut gate),
        ..Extras::default()
    };
    let err = match setup_and_exec(&sys, &config(), HostInfo::default(), extras) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    assert!(err.to_string().contains("start never came"));
    assert!(sys.position("execve").is_none());
}

#[test]
fn workload_that_outlives_the_runtime_gets_no_parent_death_signal() {
    let sys = fake();
    run(&sys, &config(), &[]);
    assert!(
        sys.position("pdeathsig").is_some(),
        "a run's workload dies with its runtime"
    );
    let sys = fake();
    let extras = Extras {
        outlives_runtime: true,
        ..Extras::default()
    };
    let _ = setup_and_exec(&sys, &config(), HostInfo::default(), extras);
    assert!(sys.position("execve").is_some());
    assert!(
        sys.position("pdeathsig").is_none(),
        "{:?}",
        sys.calls.borrow()
    );
}

#[test]
fn create_container_hooks_run_just_before_pivot_root() {
    let sys = fake();
    let calls_then = std::cell::Cell::new(0);
    let mut hook = || {
        calls_then.set(sys.calls.borrow().len());
        Ok(())
    };
    let extras = Extras {
        before_root_switch: Some(&mut hook),
        ..Extras::default()
    };
    let _ = setup_and_exec(&sys, &config(), HostInfo::default(), extras);
    let then = calls_then.get();
    assert!(
        then > pos(&sys, &format!("mknod {ROOT}/dev/null")),
        "before the mounts were made"
    );
    assert!(then <= pos(&sys, "pivot_root"), "after pivot_root");
}
