//! Reading OCI bundles: what `runc spec` writes is accepted and mapped field by field; what
//! the runtime cannot honour is refused by name.

use std::path::{Path, PathBuf};

use super::caps;
use super::config::{SeccompOp, SeccompVerdict};
use super::error::ContainerError;
use super::seccomp;
use super::spec::config_from_bundle;

/// `runc spec` output (runc 1.1), with terminal off and args set.
const RUNC_SPEC: &str = r#"{
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": false,
    "user": { "uid": 0, "gid": 0 },
    "args": ["sh", "-c", "echo hi"],
    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs", "readonly": true },
  "hostname": "runc",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": ["nosuid", "noexec", "nodev", "ro"] },
    { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
  ],
  "linux": {
    "resources": {
      "devices": [{ "allow": false, "access": "rwm" }],
      "memory": { "limit": 67108864 },
      "pids": { "limit": 32 },
      "cpu": { "quota": 50000, "period": 100000 }
    },
    "namespaces": [
      { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
      { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
    ],
    "maskedPaths": ["/proc/kcore", "/proc/keys"],
    "readonlyPaths": ["/proc/sys"]
  }
}"#;

/// A bundle directory with `rootfs/` and `data/` (a directory to bind), removed on drop.
pub(crate) struct Bundle(PathBuf);

impl Bundle {
    /// A bundle without a config.json.
    pub(crate) fn empty(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vmm-bundle-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["rootfs", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Self(dir)
    }

    fn new(name: &str, config: &str) -> Self {
        let b = Self::empty(name);
        std::fs::write(b.0.join("config.json"), config).unwrap();
        b
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_err(name: &str, config: &str) -> ContainerError {
    let b = Bundle::new(name, config);
    config_from_bundle(b.path()).unwrap_err()
}

#[test]
fn runc_default_spec_maps_to_the_config() {
    let b = Bundle::new("runc", RUNC_SPEC);
    let c = config_from_bundle(b.path()).unwrap();
    assert_eq!(c.rootfs, b.path().join("rootfs").canonicalize().unwrap());
    assert!(c.readonly_root);
    assert_eq!(c.hostname.as_deref(), Some("runc"));
    assert_eq!(c.process.args, ["sh", "-c", "echo hi"]);
    let expected = caps::mask_of(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]).unwrap();
    assert_eq!(c.process.capabilities.bounding, expected);
    assert_eq!(c.process.capabilities.ambient, expected);
    assert_eq!(c.process.capabilities.inheritable, 0);
    assert_eq!(c.process.rlimits.len(), 1);
    assert_eq!(c.process.rlimits[0].resource, libc::RLIMIT_NOFILE);
    assert!(c.process.no_new_privileges);
    assert!(c.namespaces.pid && c.namespaces.net && c.namespaces.cgroup && c.namespaces.mount);
    assert!(!c.namespaces.user);
    assert_eq!(c.mounts.len(), 4);
    assert_eq!(c.mounts[3].flags & libc::MS_RDONLY, libc::MS_RDONLY);
    assert!(c.default_devices, "a tmpfs /dev gets the default devices");
    assert_eq!(
        c.masked_paths,
        [PathBuf::from("/proc/kcore"), PathBuf::from("/proc/keys")]
    );
    assert_eq!(c.resources.memory, Some(64 << 20));
    assert_eq!(c.resources.pids, Some(32));
    assert_eq!(
        c.resources.cpu.map(|q| (q.quota, q.period)),
        Some((50_000, 100_000))
    );
}

#[test]
fn invalid_json_is_bad_input_naming_the_file() {
    let err = load_err("badjson", "{ \"process\": ");
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn missing_config_is_bad_input() {
    let dir = std::env::temp_dir().join(format!("vmm-bundle-none-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = config_from_bundle(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.is_bad_input());
}

#[test]
fn terminal_true_asks_for_a_console() {
    let b = Bundle::new(
        "tty",
        &RUNC_SPEC.replace("\"terminal\": false", "\"terminal\": true"),
    );
    assert!(config_from_bundle(b.path()).unwrap().terminal);
}

#[test]
fn console_size_is_taken_and_an_oversized_one_clamped() {
    let b = Bundle::new(
        "ttysize",
        &RUNC_SPEC.replace(
            "\"terminal\": false",
            "\"terminal\": true, \"consoleSize\": {\"height\": 40, \"width\": 100000}",
        ),
    );
    let size = config_from_bundle(b.path()).unwrap().console_size;
    assert_eq!(
        size,
        Some(crate::config::ConsoleSize {
            rows: 40,
            cols: u16::MAX
        })
    );
}

#[test]
fn network_namespace_with_a_path_is_joined_not_made() {
    let spec = RUNC_SPEC.replace(
        "{ \"type\": \"network\" }",
        "{ \"type\": \"network\", \"path\": \"/proc/1/ns/net\" }",
    );
    let b = Bundle::new("nspath", &spec);
    let cfg = config_from_bundle(b.path()).unwrap();
    assert!(!cfg.namespaces.net, "a new network namespace is made too");
    assert_eq!(cfg.join_namespaces.len(), 1);
    assert_eq!(cfg.join_namespaces[0].flag, libc::CLONE_NEWNET);
}

#[test]
fn joining_a_pid_namespace_by_path_is_refused() {
    let spec = RUNC_SPEC.replace(
        "{ \"type\": \"pid\" }",
        "{ \"type\": \"pid\", \"path\": \"/proc/1/ns/pid\" }",
    );
    let err = load_err("pidpath", &spec);
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("pid namespace"), "{err}");
}

#[test]
fn unknown_namespace_type_is_invalid_spec() {
    let err = load_err(
        "nstype",
        &RUNC_SPEC.replace("\"type\": \"uts\"", "\"type\": \"bogus\""),
    );
    assert!(matches!(err, ContainerError::InvalidSpec { .. }), "{err}");
}

#[test]
fn unknown_capability_is_invalid() {
    let err = load_err(
        "cap",
        &RUNC_SPEC.replace("\"CAP_KILL\", \"CAP_NET", "\"CAP_FLY\", \"CAP_NET"),
    );
    assert!(err.is_bad_input(), "{err}");
}

#[test]
fn missing_rootfs_is_bad_input() {
    let err = load_err(
        "noroot",
        &RUNC_SPEC.replace("\"path\": \"rootfs\"", "\"path\": \"nothere\""),
    );
    assert!(matches!(err, ContainerError::MissingRootfs(_)), "{err}");
}

#[test]
fn bind_mount_with_missing_source_is_bad_input() {
    let spec = RUNC_SPEC.replace(
        "{ \"destination\": \"/proc\"",
        "{ \"destination\": \"/data\", \"type\": \"bind\", \"source\": \"/no/such/dir\", \"options\": [\"rbind\"] },\n    { \"destination\": \"/proc\"",
    );
    let err = load_err("bindsrc", &spec);
    assert!(
        matches!(err, ContainerError::MissingMountSource(_)),
        "{err}"
    );
}

#[test]
fn seccomp_profile_with_one_action_is_translated() {
    let spec = RUNC_SPEC.replace(
        "\"maskedPaths\"",
        r#""seccomp": { "defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{ "names": ["reboot", "swapon"], "action": "SCMP_ACT_ERRNO" }] },
         "maskedPaths""#,
    );
    let b = Bundle::new("seccomp", &spec);
    let c = config_from_bundle(b.path()).unwrap();
    let s = c.seccomp.unwrap();
    assert_eq!(s.default, SeccompVerdict::Allow);
    assert_eq!(s.rules.len(), 1);
    assert_eq!(s.rules[0].names, ["reboot", "swapon"]);
    assert_eq!(
        s.rules[0].action,
        SeccompVerdict::Errno(1),
        "EPERM without errnoRet"
    );
}

/// The shapes of Podman's and Docker's default profiles as they hand them to the runtime
/// (conditions resolved for the default capabilities, x86_64), with fewer names.
const PODMAN_LIKE_SECCOMP: &str = r#""seccomp": {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    "syscalls": [
      { "names": ["bdflush", "kexec_load", "move_pages", "nfsservctl", "swapon", "sysfs",
                  "userfaultfd", "vm86"],
        "action": "SCMP_ACT_ERRNO", "errnoRet": 1 },
      { "names": ["_llseek", "accept4", "arch_prctl", "brk", "chown32", "close", "execve",
                  "exit", "exit_group", "fcntl64", "futex", "getpid", "mmap", "mmap2", "openat",
                  "read", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "seccomp", "write"],
        "action": "SCMP_ACT_ALLOW" },
      { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ" }] },
      { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ" }] },
      { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": 4294967295, "valueTwo": 0, "op": "SCMP_CMP_EQ" }] },
      { "names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": 2114060288, "valueTwo": 0,
                   "op": "SCMP_CMP_MASKED_EQ" }] },
      { "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38 },
      { "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
        "args": [{ "index": 0, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_EQ" },
                 { "index": 2, "value": 9, "valueTwo": 0, "op": "SCMP_CMP_EQ" }] },
      { "names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": 40, "op": "SCMP_CMP_NE" }] }
    ]
  },
  "maskedPaths""#;

#[test]
fn podman_like_seccomp_profile_converts_and_compiles() {
    let spec = RUNC_SPEC.replace("\"maskedPaths\"", PODMAN_LIKE_SECCOMP);
    let b = Bundle::new("podman-seccomp", &spec);
    let profile = config_from_bundle(b.path()).unwrap().seccomp.unwrap();
    assert_eq!(profile.default, SeccompVerdict::Errno(38));
    assert_eq!(profile.rules.len(), 9);
    let clone = &profile.rules[5];
    assert_eq!(clone.args[0].op, SeccompOp::MaskedEqual);
    assert_eq!(clone.args[0].value, 0x7e02_0000);
    let programs = seccomp::compile(&profile).unwrap();
    // The ABI guard on x86_64, the EINVAL and EPERM filters, the base; clone3's ENOSYS is
    // the default and needs none.
    let expected = if cfg!(target_arch = "x86_64") { 4 } else { 3 };
    assert_eq!(programs.len(), expected);
}

#[test]
fn cpu_shares_are_kept_and_out_of_range_ones_refused() {
    let with = |shares: &str| {
        RUNC_SPEC.replace(
            "\"cpu\": { \"quota\": 50000, \"period\": 100000 }",
            &format!("\"cpu\": {{ \"quota\": 50000, \"period\": 100000, \"shares\": {shares} }}"),
        )
    };
    let b = Bundle::new("shares", &with("1024"));
    assert_eq!(
        config_from_bundle(b.path()).unwrap().resources.cpu_shares,
        Some(1024)
    );
    let err = load_err("shares-bad", &with("1"));
    assert!(
        err.is_bad_input() && err.to_string().contains("shares"),
        "{err}"
    );
}

#[test]
fn device_rules_keep_their_order_and_wildcards() {
    let spec = RUNC_SPEC.replace(
        "\"devices\": [{ \"allow\": false, \"access\": \"rwm\" }]",
        "\"devices\": [{ \"allow\": false, \"access\": \"rwm\" }, \
         { \"allow\": true, \"type\": \"c\", \"major\": 1, \"minor\": 3, \"access\": \"rwm\" }, \
         { \"allow\": true, \"type\": \"c\", \"major\": 136, \"access\": \"rw\" }]",
    );
    let b = Bundle::new("devrules", &spec);
    let rules: Vec<(bool, String)> = config_from_bundle(b.path())
        .unwrap()
        .device_rules
        .into_iter()
        .map(|r| (r.allow, r.rule))
        .collect();
    assert_eq!(
        rules,
        [
            (false, "a *:* rwm".to_owned()),
            (true, "c 1:3 rwm".to_owned()),
            (true, "c 136:* rw".to_owned())
        ]
    );
}

/// RUNC_SPEC with `linux.resources` replaced by the JSON object body `body`.
fn with_resources(body: &str) -> String {
    let start = RUNC_SPEC.find("\"resources\": {").unwrap();
    let end = start + RUNC_SPEC[start..].find("},\n    \"namespaces\"").unwrap();
    format!(
        "{}\"resources\": {{ {body} }}{}",
        &RUNC_SPEC[..start],
        &RUNC_SPEC[end + 1..]
    )
}

fn resources_of(name: &str, body: &str) -> super::config::Resources {
    let b = Bundle::new(name, &with_resources(body));
    config_from_bundle(b.path()).unwrap().resources
}

fn resources_err(name: &str, body: &str) -> ContainerError {
    load_err(name, &with_resources(body))
}

#[test]
fn memory_swap_reservation_and_swappiness_are_kept() {
    let r = resources_of(
        "memory",
        r#""memory": { "limit": 67108864, "swap": 134217728, "reservation": 33554432,
            "swappiness": 10, "useHierarchy": true, "checkBeforeUpdate": true }"#,
    );
    assert_eq!(r.memory, Some(64 << 20));
    assert_eq!(r.memory_swap, Some(128 << 20));
    assert_eq!(r.memory_reservation, Some(32 << 20));
    assert_eq!(r.memory_swappiness, Some(10));
    let unlimited_swap = resources_of("swap-1", r#""memory": { "limit": 67108864, "swap": -1 }"#);
    assert_eq!(unlimited_swap.memory_swap, Some(-1));
}

#[test]
fn zero_and_minus_one_mean_no_limit() {
    let r = resources_of(
        "nolimit",
        r#""memory": { "limit": -1, "reservation": 0, "swap": -1 }, "pids": { "limit": -1 },
           "cpu": { "quota": -1 }"#,
    );
    assert_eq!(r, super::config::Resources::default());
}

#[test]
fn negative_limits_other_than_minus_one_are_refused_by_field() {
    for (name, body, field) in [
        ("neg-mem", r#""memory": { "limit": -5 }"#, "memory.limit"),
        (
            "neg-res",
            r#""memory": { "reservation": -2 }"#,
            "memory.reservation",
        ),
        (
            "neg-swap",
            r#""memory": { "limit": 1048576, "swap": -7 }"#,
            "memory.swap",
        ),
        ("neg-pids", r#""pids": { "limit": -3 }"#, "pids.limit"),
        ("neg-quota", r#""cpu": { "quota": -50000 }"#, "cpu.quota"),
    ] {
        let err = resources_err(name, body);
        assert!(err.is_bad_input(), "{name}: {err}");
        assert!(err.to_string().contains(field), "{name}: {err}");
    }
}

#[test]
fn swap_below_the_memory_limit_or_without_one_is_refused() {
    let below = resources_err(
        "swap-below",
        r#""memory": { "limit": 67108864, "swap": 1048576 }"#,
    );
    assert!(
        below.is_bad_input() && below.to_string().contains("memory.swap"),
        "{below}"
    );
    let alone = resources_err("swap-alone", r#""memory": { "swap": 67108864 }"#);
    assert!(
        alone.is_bad_input() && alone.to_string().contains("memory.limit"),
        "{alone}"
    );
}

#[test]
fn swappiness_over_100_is_refused() {
    let err = resources_err("swappiness", r#""memory": { "swappiness": 101 }"#);
    assert!(
        err.is_bad_input() && err.to_string().contains("swappiness"),
        "{err}"
    );
}

#[test]
fn cpu_period_alone_is_kept_without_a_quota() {
    let r = resources_of("period", r#""cpu": { "period": 50000 }"#);
    assert_eq!(
        r.cpu.map(|c| (c.quota, c.period)),
        Some((super::config::CpuQuota::UNLIMITED, 50_000))
    );
}

#[test]
fn cpu_quota_and_period_the_kernel_refuses_are_bad_input() {
    for (name, body, field) in [
        ("tiny-quota", r#""cpu": { "quota": 500 }"#, "cpu.quota"),
        (
            "tiny-period",
            r#""cpu": { "quota": 50000, "period": 999 }"#,
            "cpu.period",
        ),
        (
            "huge-period",
            r#""cpu": { "period": 2000000 }"#,
            "cpu.period",
        ),
    ] {
        let err = resources_err(name, body);
        assert!(
            err.is_bad_input() && err.to_string().contains(field),
            "{name}: {err}"
        );
    }
}

#[test]
fn cpu_burst_is_kept_within_the_quota_and_refused_beyond_or_without_it() {
    let r = resources_of("burst", r#""cpu": { "quota": 50000, "burst": 20000 }"#);
    assert_eq!(r.cpu_burst, Some(20_000));
    for (name, body) in [
        ("burst-over", r#""cpu": { "quota": 50000, "burst": 60000 }"#),
        ("burst-alone", r#""cpu": { "burst": 1000 }"#),
    ] {
        let err = resources_err(name, body);
        assert!(
            err.is_bad_input() && err.to_string().contains("burst"),
            "{name}: {err}"
        );
    }
}

#[test]
fn resource_fields_the_runtime_does_not_apply_are_refused_by_name() {
    for (name, body, field) in [
        ("blkio", r#""blockIO": { "weight": 500 }"#, "blockIO"),
        (
            "huge",
            r#""hugepageLimits": [{ "pageSize": "2MB", "limit": 1048576 }]"#,
            "hugepageLimits",
        ),
        ("net", r#""network": { "classID": 1 }"#, "network"),
        (
            "rdma",
            r#""rdma": { "mlx5_0": { "hcaHandles": 3 } }"#,
            "rdma",
        ),
        (
            "unified",
            r#""unified": { "memory.high": "1000000" }"#,
            "unified",
        ),
        (
            "kmem",
            r#""memory": { "kernel": 1048576 }"#,
            "memory.kernel",
        ),
        (
            "kmem-tcp",
            r#""memory": { "kernelTCP": 1048576 }"#,
            "memory.kernelTCP",
        ),
        (
            "oom",
            r#""memory": { "disableOOMKiller": true }"#,
            "memory.disableOOMKiller",
        ),
        (
            "flat",
            r#""memory": { "useHierarchy": false }"#,
            "memory.useHierarchy",
        ),
        ("cpus", r#""cpu": { "cpus": "0-1" }"#, "cpu.cpus"),
        ("mems", r#""cpu": { "mems": "0" }"#, "cpu.mems"),
        (
            "rt",
            r#""cpu": { "realtimeRuntime": 950000 }"#,
            "cpu.realtimeRuntime",
        ),
        ("idle", r#""cpu": { "idle": 1 }"#, "cpu.idle"),
    ] {
        let err = resources_err(name, body);
        assert!(err.is_bad_input(), "{name}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("linux.resources.{field}")),
            "{name}: {err}"
        );
    }
}

#[test]
fn empty_resource_fields_ask_for_nothing() {
    let r = resources_of(
        "empty",
        r#""blockIO": {}, "hugepageLimits": [], "unified": {}, "cpu": { "cpus": "" }"#,
    );
    assert_eq!(r, super::config::Resources::default());
}

#[test]
fn an_overlong_hostname_is_bad_input() {
    let long = "h".repeat(300);
    let err = load_err(
        "hostname",
        &RUNC_SPEC.replace(
            "\"hostname\": \"runc\"",
            &format!("\"hostname\": \"{long}\""),
        ),
    );
    assert!(
        err.is_bad_input() && err.to_string().contains("hostname"),
        "{err}"
    );
}

#[test]
fn linux_fields_the_runtime_does_not_apply_are_refused_by_name() {
    let spec = RUNC_SPEC.replace(
        "\"namespaces\": [",
        "\"timeOffsets\": { \"monotonic\": { \"secs\": 1 } },\n    \"namespaces\": [",
    );
    let err = load_err("timeoffsets", &spec);
    assert!(
        err.is_bad_input() && err.to_string().contains("timeOffsets"),
        "{err}"
    );
}
