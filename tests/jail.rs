//! `vmm --jail`: the test guest runs in a jail as an unprivileged user. While it runs, the
//! jailed VMM (the child of the `vmm` the test started, PID 1 of its own PID namespace) is
//! inspected through /proc: what its root holds, who it is, its namespaces, cgroup and
//! limits. Bad jail options end `vmm` at once with one line and status 2. Needs root and
//! /dev/kvm; without them each test prints a SKIP line.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{run_vmm, scratch_dir, skip_without_kvm, spawn_vmm, LiveVm, Run, TEST_GUEST};

/// The unprivileged user and group the jailed VMM runs as ("nobody").
const NOBODY: u32 = 65534;
const NOBODY_STR: &str = "65534";
/// The memory limit the cgroup tests give the VMM: guest RAM (128 MiB) fits under it.
const MEMORY_LIMIT: u64 = 512 << 20;

/// Prints a SKIP line and returns true when the host lacks /dev/kvm or we are not root.
fn skip_unless_root_with_kvm(test: &str) -> bool {
    if skip_without_kvm(test) {
        return true;
    }
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP {test}: the jail needs root");
        return true;
    }
    false
}

/// Prints a SKIP line and returns true when we are not root.
fn skip_unless_root(test: &str) -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIP {test}: the jail needs root");
    }
    !root
}

/// A scratch directory with an empty jail directory, the test guest (readable by all),
/// a disk and a vsock directory owned by the jail's user.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = scratch_dir(&format!("jail-{name}"));
        std::fs::create_dir(dir.join("jail")).unwrap();
        std::fs::copy(TEST_GUEST, dir.join("guest.elf")).unwrap();
        std::fs::set_permissions(dir.join("guest.elf"), PermissionsExt::from_mode(0o644)).unwrap();
        std::fs::write(dir.join("data.img"), vec![0u8; 64 << 10]).unwrap();
        chown(dir.join("data.img"), Some(NOBODY), Some(NOBODY)).unwrap();
        std::fs::create_dir(dir.join("vs")).unwrap();
        chown(dir.join("vs"), Some(NOBODY), Some(NOBODY)).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// `vmm --jail ... --kernel guest.elf --cmdline "console=ttyS0 TESTS"` with `extra`
    /// options in between.
    fn args(&self, extra: &[String], tests: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--jail".into(),
            self.path("jail"),
            "--uid".into(),
            NOBODY_STR.into(),
            "--gid".into(),
            NOBODY_STR.into(),
            "--kernel".into(),
            self.path("guest.elf"),
        ];
        args.extend_from_slice(extra);
        args.extend(["--cmdline".into(), format!("console=ttyS0 {tests}")]);
        args
    }

    /// The jailed test guest paused in its balloon test (a disk, vsock and the balloon
    /// attached, `extra` options added), with the pid of the jailed VMM.
    fn start_paused(&self, extra: &[&str]) -> (LiveVm, u32) {
        let mut options: Vec<String> = vec![
            "--disk".into(),
            self.path("data.img"),
            "--vsock".into(),
            format!("cid=3,uds={}", self.path("vs/v.sock")),
            "--balloon".into(),
            "amount_mib=4".into(),
        ];
        options.extend(extra.iter().map(|s| s.to_string()));
        let mut vm = spawn_vmm(self.args(&options, "tests=balloon"));
        let came = vm.wait_for_line("vmmtest: balloon ready", Duration::from_secs(20));
        assert!(
            came,
            "the jailed guest did not start:\n{}",
            vm.output_so_far()
        );
        let child = jailed_child(vm.pid());
        (vm, child)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The jailed VMM: the one child of the `vmm` the test started.
fn jailed_child(parent: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "vmm {parent} forked no jailed VMM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The names in a directory.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A field of /proc/PID/status, as written there.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn namespace(pid: &str, kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

/// Ends the paused VM and checks that its guest passed.
fn finish_passing(vm: LiveVm) -> Run {
    let run = vm.finish(Duration::from_secs(30));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.failures().is_empty(), "{}", run.describe());
    run
}

#[test]
fn jailed_test_guest_runs_as_nobody_and_passes_its_serial_test() {
    if skip_unless_root_with_kvm("jailed_test_guest_runs_as_nobody_and_passes_its_serial_test") {
        return;
    }
    let fx = Fixture::new("serial");
    let args = fx.args(&[], "tests=serial");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_vmm(&args);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(run.fact("serial_line"), Some("the quick brown fox"));
    assert!(run.stderr.is_empty(), "{}", run.describe());
}

#[test]
fn only_the_vms_files_and_devices_are_in_the_jails_root() {
    if skip_unless_root_with_kvm("only_the_vms_files_and_devices_are_in_the_jails_root") {
        return;
    }
    let fx = Fixture::new("root");
    let (vm, pid) = fx.start_paused(&[]);
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let top = listing(&root);
    let dev = listing(&root.join("dev"));
    let vsock = listing(&root.join("vsock"));
    let kvm_owner = std::fs::metadata(root.join("dev/kvm")).map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.uid(), m.gid())
    });
    finish_passing(vm);
    assert_eq!(top, set(&["data.img", "dev", "guest.elf", "vsock"]));
    assert_eq!(
        dev,
        set(&["kvm", "urandom"]),
        "no /dev/net/tun without --net"
    );
    assert_eq!(
        vsock,
        set(&["v.sock"]),
        "the VMM listens in the host's directory"
    );
    assert_eq!(kvm_owner.unwrap(), (NOBODY, NOBODY));
}

#[test]
fn jailed_vmm_runs_as_the_given_ids_without_capabilities_and_with_no_new_privs() {
    if skip_unless_root_with_kvm(
        "jailed_vmm_runs_as_the_given_ids_without_capabilities_and_with_no_new_privs",
    ) {
        return;
    }
    let fx = Fixture::new("ids");
    let (vm, pid) = fx.start_paused(&[]);
    let fields: Vec<(&str, String)> = [
        "Uid",
        "Gid",
        "Groups",
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
    ]
    .into_iter()
    .map(|f| (f, status_field(pid, f)))
    .collect();
    finish_passing(vm);
    let ids = "65534\t65534\t65534\t65534";
    let zero = "0000000000000000";
    let expected = [
        ("Uid", ids),
        ("Gid", ids),
        ("Groups", ""),
        ("CapInh", zero),
        ("CapPrm", zero),
        ("CapEff", zero),
        ("CapBnd", zero),
        ("CapAmb", zero),
        ("NoNewPrivs", "1"),
    ];
    for ((field, seen), (_, want)) in fields.iter().zip(expected) {
        assert_eq!(seen, want, "{field}");
    }
}

#[test]
fn jailed_vmm_is_pid_1_of_its_own_pid_mount_and_ipc_namespaces() {
    if skip_unless_root_with_kvm("jailed_vmm_is_pid_1_of_its_own_pid_mount_and_ipc_namespaces") {
        return;
    }
    let fx = Fixture::new("ns");
    let (vm, pid) = fx.start_paused(&[]);
    let child = pid.to_string();
    let kinds = ["pid", "mnt", "ipc", "net"];
    let theirs: Vec<PathBuf> = kinds.iter().map(|k| namespace(&child, k)).collect();
    let ours: Vec<PathBuf> = kinds.iter().map(|k| namespace("self", k)).collect();
    let nspid = status_field(pid, "NSpid");
    finish_passing(vm);
    for i in 0..3 {
        assert_ne!(theirs[i], ours[i], "{} namespace", kinds[i]);
    }
    assert_eq!(
        theirs[3], ours[3],
        "no --netns: the host's network namespace"
    );
    assert_eq!(nspid, format!("{pid}\t1"), "PID 1 in its namespace");
}

#[test]
fn jail_mounts_stay_out_of_the_hosts_mount_namespace() {
    if skip_unless_root_with_kvm("jail_mounts_stay_out_of_the_hosts_mount_namespace") {
        return;
    }
    let fx = Fixture::new("mounts");
    let (vm, _) = fx.start_paused(&[]);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let jail_on_host = listing(&fx.dir.join("jail"));
    finish_passing(vm);
    assert!(
        !mountinfo.contains(&fx.path("jail")),
        "the jail's mounts reached the host:\n{mountinfo}"
    );
    assert!(jail_on_host.is_empty(), "{jail_on_host:?}");
    assert!(listing(&fx.dir.join("jail")).is_empty());
}

#[test]
fn seccomp_filters_still_confine_the_jailed_vmms_threads() {
    if skip_unless_root_with_kvm("seccomp_filters_still_confine_the_jailed_vmms_threads") {
        return;
    }
    let fx = Fixture::new("seccomp");
    let (vm, pid) = fx.start_paused(&[]);
    let confined = ["vcpu0", "vmm-events", "vmm-spawner", "vmm-balloon"];
    let modes = common::thread_seccomp_modes(pid, &confined);
    finish_passing(vm);
    for kind in confined {
        let mode = modes.iter().find(|(n, _)| n == kind).map(|(_, m)| *m);
        assert_eq!(mode, Some(2), "{kind} in {modes:?}");
    }
}

#[test]
fn sigterm_to_vmm_reaches_the_jailed_vmm_which_ends_with_status_143() {
    if skip_unless_root_with_kvm("sigterm_to_vmm_reaches_the_jailed_vmm_which_ends_with_status_143")
    {
        return;
    }
    let fx = Fixture::new("sigterm");
    let (vm, _) = fx.start_paused(&[]);
    // SAFETY: kill(2) of our own child, which `finish` reaps.
    unsafe { libc::kill(vm.pid() as i32, libc::SIGTERM) };
    let run = vm.finish(Duration::from_secs(10));
    assert_eq!(run.code(), Some(143), "{}", run.describe());
}

/// The directory of `pid`'s group in the v1 hierarchy or v2 tree holding `controller`.
fn cgroup_dir_of(pid: u32, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if list.split(',').any(|c| c == controller) {
            return Path::new("/sys/fs/cgroup")
                .join(list)
                .join(path.trim_start_matches('/'));
        }
    }
    // cgroup v2: "0::/path".
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
}

#[test]
fn cgroup_limit_is_applied_to_the_jailed_vmm_and_its_group_removed_at_exit() {
    if skip_unless_root_with_kvm(
        "cgroup_limit_is_applied_to_the_jailed_vmm_and_its_group_removed_at_exit",
    ) {
        return;
    }
    let v2 = runtime::cgroup::detect_mode() == runtime::cgroup::CgroupMode::V2;
    let (key, value) = match v2 {
        true => ("memory.max", MEMORY_LIMIT.to_string()),
        false => ("memory.limit_in_bytes", MEMORY_LIMIT.to_string()),
    };
    let fx = Fixture::new("cgroup");
    let setting = format!("{key}={value}");
    let (vm, pid) = fx.start_paused(&["--cgroup", &setting]);
    let group = cgroup_dir_of(pid, "memory");
    let limit = std::fs::read_to_string(group.join(key)).unwrap();
    finish_passing(vm);
    assert!(
        group
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("vmm-jail-"),
        "{group:?}"
    );
    assert_eq!(limit.trim(), value);
    assert!(!group.exists(), "{group:?} outlived the VM");
}

#[test]
fn resource_limits_are_applied_to_the_jailed_vmm() {
    if skip_unless_root_with_kvm("resource_limits_are_applied_to_the_jailed_vmm") {
        return;
    }
    let fx = Fixture::new("rlimits");
    let (vm, pid) = fx.start_paused(&["--resource-limit", "fsize=1048576"]);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    finish_passing(vm);
    let row = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(String::from)
            .collect()
    };
    assert_eq!(
        row("Max open files"),
        ["2048", "2048"],
        "the jailer's default"
    );
    assert_eq!(row("Max file size"), ["1048576", "1048576"]);
}

/// Runs `ip ARGS`; true when it succeeded.
fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn jailed_vmm_joins_the_netns_and_opens_a_tap_made_there_through_its_own_dev_net_tun() {
    let test = "jailed_vmm_joins_the_netns_and_opens_a_tap_made_there_through_its_own_dev_net_tun";
    if skip_unless_root_with_kvm(test) {
        return;
    }
    let name = format!("vmm-jail-test-{}", std::process::id());
    if !ip(&["netns", "add", &name]) {
        eprintln!("SKIP {test}: `ip netns add` failed");
        return;
    }
    // The jailed VMM has no CAP_NET_ADMIN: the TAP must exist before it starts.
    let tap_made = ip(&[
        "netns", "exec", &name, "ip", "tuntap", "add", "tap0", "mode", "tap",
    ]);
    let netns = format!("/var/run/netns/{name}");
    let fx = Fixture::new("netns");
    let seen = tap_made.then(|| {
        let (vm, pid) = fx.start_paused(&["--netns", &netns, "--net", "tap=tap0"]);
        let ns = namespace(&pid.to_string(), "net");
        let dev_net = listing(&PathBuf::from(format!("/proc/{pid}/root/dev/net")));
        finish_passing(vm);
        (ns, dev_net)
    });
    let want = std::fs::metadata(&netns).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    ip(&["netns", "delete", &name]);
    let (ns, dev_net) = seen.expect("ip tuntap add tap0 in the test's netns");
    assert_eq!(ns, PathBuf::from(format!("net:[{}]", want.unwrap())));
    assert_eq!(dev_net, set(&["tun"]));
}

/// Asserts exit 2 and exactly one stderr line holding each of `needles`.
fn assert_refused(args: &[String], needles: &[&str]) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_vmm(&args);
    assert_eq!(run.code(), Some(2), "vmm {args:?}\n{}", run.describe());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line\n{}", run.describe());
    for needle in needles {
        assert!(lines[0].contains(needle), "{needle:?} in {:?}", lines[0]);
    }
}

/// The usual jail options with `jail` as the directory and `uid`/`gid` as given.
fn jail_args(jail: &str, uid: Option<&str>, gid: Option<&str>, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--jail".to_string(), jail.to_string()];
    if let Some(uid) = uid {
        args.extend(["--uid".into(), uid.into()]);
    }
    if let Some(gid) = gid {
        args.extend(["--gid".into(), gid.into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--kernel".into(), TEST_GUEST.into()]);
    args
}

#[test]
fn missing_jail_directory_is_refused() {
    let args = jail_args("/nonexistent/jail", Some("1"), Some("1"), &[]);
    assert_refused(
        &args,
        &["jail directory", "/nonexistent/jail", "No such file"],
    );
}

#[test]
fn jail_that_is_not_a_directory_is_refused() {
    let args = jail_args(TEST_GUEST, Some("1"), Some("1"), &[]);
    assert_refused(&args, &["is not a directory"]);
}

#[test]
fn uid_or_gid_that_is_not_a_number_is_refused() {
    let dir = std::env::temp_dir();
    let dir = dir.to_str().unwrap();
    assert_refused(
        &jail_args(dir, Some("nobody"), Some("1"), &[]),
        &["--uid", "nobody", "not a number"],
    );
    assert_refused(
        &jail_args(dir, Some("1"), Some("-5"), &[]),
        &["--gid", "-5", "not a number"],
    );
}

#[test]
fn jail_without_uid_is_refused() {
    let dir = std::env::temp_dir();
    let args = jail_args(dir.to_str().unwrap(), None, Some("1"), &[]);
    assert_refused(&args, &["--jail needs --uid and --gid"]);
}

#[test]
fn uid_without_jail_is_refused() {
    let args = vec![
        "--uid".to_string(),
        "1".into(),
        "--kernel".into(),
        TEST_GUEST.into(),
    ];
    assert_refused(&args, &["--uid needs --jail"]);
}

#[test]
fn unknown_cgroup_key_is_refused() {
    if skip_unless_root("unknown_cgroup_key_is_refused") {
        return;
    }
    let dir = std::env::temp_dir();
    let args = jail_args(
        dir.to_str().unwrap(),
        Some("1"),
        Some("1"),
        &["--cgroup", "memory.no_such_knob=1"],
    );
    assert_refused(&args, &["--cgroup", "memory.no_such_knob", "unknown key"]);
}

#[test]
fn cgroup_key_of_a_controller_that_is_not_mounted_is_refused() {
    if skip_unless_root("cgroup_key_of_a_controller_that_is_not_mounted_is_refused") {
        return;
    }
    let dir = std::env::temp_dir();
    let args = jail_args(
        dir.to_str().unwrap(),
        Some("1"),
        Some("1"),
        &["--cgroup", "nosuchctl.max=1"],
    );
    assert_refused(&args, &["nosuchctl", "not mounted"]);
}

#[test]
fn disk_the_jails_user_may_not_write_is_named_by_its_host_path() {
    if skip_unless_root_with_kvm("disk_the_jails_user_may_not_write_is_named_by_its_host_path") {
        return;
    }
    let fx = Fixture::new("access");
    let root_owned = fx.path("root-owned.img");
    std::fs::write(&root_owned, vec![0u8; 4096]).unwrap();
    let args = fx.args(&["--disk".into(), root_owned.clone()], "tests=serial");
    assert_refused(
        &args,
        &["disk image", &root_owned, "uid 65534", "may not write"],
    );
}
