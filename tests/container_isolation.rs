//! Each namespace and each restriction of `vmm container run`, asserted from inside and,
//! where it matters, from the host. Root-only; prints SKIP otherwise.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

use container_support::*;

#[test]
fn pid_namespace_shows_the_workload_as_pid_1_and_only_its_processes() {
    let Some(rootfs) = rootfs_or_skip("pid_namespace") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("pid"),
        &[],
        "echo self=$$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("self=1"), "{out}");
    let pids: Vec<u32> = lines.filter_map(|l| l.parse().ok()).collect();
    // sh itself (1) and at most the short-lived glob helpers: nothing of the host.
    assert!(pids.contains(&1), "{out}");
    assert!(
        pids.iter().all(|p| *p < 10),
        "host processes visible: {pids:?}"
    );
}

#[test]
fn hostname_change_inside_is_invisible_to_the_host() {
    let Some(rootfs) = rootfs_or_skip("hostname") else {
        return;
    };
    let before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = sh(
        &rootfs,
        &unique("uts"),
        &["--hostname", "box-one", "--cap-add", "CAP_SYS_ADMIN"],
        "hostname; hostname changed-inside; hostname",
    );
    assert_eq!(out, "box-one\nchanged-inside\n");
    let after = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(before, after);
}

#[test]
fn mount_inside_is_invisible_outside() {
    let Some(rootfs) = rootfs_or_skip("mount_ns") else {
        return;
    };
    let own = OwnRootfs::new(&rootfs, "mountns");
    let out = sh(
        &own.0,
        &unique("mnt"),
        &["--cap-add", "CAP_SYS_ADMIN"],
        "mount -t tmpfs none /mnt && touch /mnt/inside && ls /mnt && grep -c ' /mnt ' /proc/mounts",
    );
    assert_eq!(out, "inside\n1\n");
    assert!(
        !own.0.join("mnt/inside").exists(),
        "the tmpfs leaked to the host"
    );
    assert!(
        host_mounts_under(&own.0).is_empty(),
        "{:?}",
        host_mounts_under(&own.0)
    );
}

#[test]
fn host_sysv_shared_memory_is_invisible_inside() {
    let Some(rootfs) = rootfs_or_skip("ipc_ns") else {
        return;
    };
    // SAFETY: a new private segment of one page; removed below.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0, "shmget");
    let host = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let inside = sh(&rootfs, &unique("ipc"), &[], "cat /proc/sysvipc/shm");
    // SAFETY: `id` is the segment made above.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    let has_id = |text: &str| {
        text.lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
    };
    assert!(has_id(&host), "segment {id} not listed on the host");
    assert!(!has_id(&inside), "segment {id} visible inside:\n{inside}");
    assert_eq!(inside.lines().count(), 1, "only the header:\n{inside}");
}

#[test]
fn new_network_namespace_has_only_lo_and_it_is_up() {
    let Some(rootfs) = rootfs_or_skip("net_ns") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("net"),
        &[],
        "ls /sys/class/net; cat /sys/class/net/lo/flags",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    assert_eq!(lines.len(), 2, "{out}");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is up");
}

#[test]
fn userns_maps_container_root_to_host_uid_100000() {
    let Some(rootfs) = rootfs_or_skip("userns") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("user"),
        &["--userns"],
        "cat /proc/self/uid_map /proc/self/gid_map; id -u",
    );
    let norm: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(norm, ["0 100000 65536", "0 100000 65536", "0"]);
}

fn cap_eff(out: &str) -> u64 {
    let hex = out
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff line")
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// Docker's default set, the runtime's default.
const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

#[test]
fn cap_eff_equals_the_default_set() {
    let Some(rootfs) = rootfs_or_skip("caps_default") else {
        return;
    };
    let out = sh(&rootfs, &unique("caps"), &[], "grep Cap /proc/self/status");
    let expected = DEFAULT_CAPS.iter().fold(0u64, |m, c| m | 1 << c);
    assert_eq!(cap_eff(&out), expected, "{out}");
    assert!(out.contains(&format!("CapBnd:\t{expected:016x}")), "{out}");
}

#[test]
fn cap_eff_equals_the_configured_set() {
    let Some(rootfs) = rootfs_or_skip("caps_configured") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("caps2"),
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CAP_NET_RAW",
            "--cap-add",
            "CAP_KILL",
        ],
        "grep CapEff /proc/self/status",
    );
    assert_eq!(cap_eff(&out), (1 << 13) | (1 << 5), "{out}");
}

#[test]
fn no_new_privs_is_set() {
    let Some(rootfs) = rootfs_or_skip("no_new_privs") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("nnp"),
        &[],
        "grep NoNewPrivs /proc/self/status",
    );
    assert_eq!(out.split_whitespace().last(), Some("1"), "{out}");
}

#[test]
fn masked_paths_are_unreadable_and_proc_sys_is_read_only() {
    let Some(rootfs) = rootfs_or_skip("masked_paths") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("mask"),
        &[],
        "echo keys=$(cat /proc/keys | wc -c); echo timer=$(cat /proc/timer_list | wc -c); \
         echo acpi=$(ls -A /proc/acpi | wc -l); echo firmware=$(ls -A /sys/firmware | wc -l); \
         if echo 1 > /proc/sys/kernel/ns_last_pid; then echo sys=writable; else echo sys=ro; fi; \
         if touch /sys/x 2>/dev/null; then echo sysfs=writable; else echo sysfs=ro; fi",
    );
    for expected in [
        "keys=0",
        "timer=0",
        "acpi=0",
        "firmware=0",
        "sys=ro",
        "sysfs=ro",
    ] {
        assert!(
            out.lines().any(|l| l == expected),
            "want {expected}:\n{out}"
        );
    }
}

#[test]
fn minimal_dev_has_the_standard_nodes_and_nothing_else() {
    let Some(rootfs) = rootfs_or_skip("dev") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("dev"),
        &[],
        "ls /dev; head -c 4 /dev/zero | wc -c; ls /dev/pts",
    );
    let names: Vec<&str> = out.lines().collect();
    for n in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd",
    ] {
        assert!(names.contains(&n), "/dev/{n} missing:\n{out}");
    }
    assert!(
        !names.contains(&"kvm") && !names.contains(&"vda"),
        "host devices leaked:\n{out}"
    );
    assert!(names.contains(&"4"), "/dev/zero reads");
}

#[test]
fn seccomp_profile_denies_unshare_even_with_cap_sys_admin() {
    let Some(rootfs) = rootfs_or_skip("seccomp") else {
        return;
    };
    let name = unique("seccomp");
    let with = run(
        &rootfs,
        &name,
        &["--cap-add", "CAP_SYS_ADMIN", "--seccomp"],
        &["unshare", "-u", "true"],
    );
    assert_ne!(with.status.code(), Some(0));
    assert!(
        stderr(&with).contains("Operation not permitted"),
        "{}",
        stderr(&with)
    );
    let without = run(
        &rootfs,
        &name,
        &["--cap-add", "CAP_SYS_ADMIN"],
        &["unshare", "-u", "true"],
    );
    assert_eq!(without.status.code(), Some(0), "{}", stderr(&without));
}

#[test]
fn read_only_rootfs_refuses_writes() {
    let Some(rootfs) = rootfs_or_skip("read_only") else {
        return;
    };
    let out = run(
        &rootfs,
        &unique("ro"),
        &["--read-only"],
        &["touch", "/written"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(!rootfs.join("written").exists());
}

#[test]
fn bind_mount_is_visible_and_ro_is_enforced() {
    let Some(shared) = rootfs_or_skip("bind_mount") else {
        return;
    };
    let own = OwnRootfs::new(&shared, "bind");
    let rootfs = own.0.clone();
    let src = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bind-src-{}", std::process::id()));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "from host\n").unwrap();
    let spec = format!("{}:/data:ro", src.display());
    let out = run(
        &rootfs,
        &unique("bind"),
        &["--mount", &spec],
        &["sh", "-c", "cat /data/hello; touch /data/new"],
    );
    let _ = std::fs::remove_dir_all(&src);
    assert_eq!(stdout(&out), "from host\n");
    assert!(stderr(&out).contains("Read-only"), "{}", stderr(&out));
}

#[test]
fn env_workdir_and_user_are_applied() {
    let Some(rootfs) = rootfs_or_skip("process") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("proc"),
        &[
            "--env",
            "GREETING=hi",
            "--workdir",
            "/etc",
            "--user",
            "1000:1001",
        ],
        "echo $GREETING; pwd; id -u; id -g; grep CapEff /proc/self/status",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], ["hi", "/etc", "1000", "1001"]);
    assert_eq!(cap_eff(&out), 0, "a non-root user has no effective caps");
}

#[test]
fn rlimit_is_applied() {
    let Some(rootfs) = rootfs_or_skip("rlimit") else {
        return;
    };
    let out = sh(
        &rootfs,
        &unique("rlim"),
        &["--rlimit", "nofile=77:88"],
        "ulimit -n; ulimit -Hn",
    );
    assert_eq!(out, "77\n88\n");
}

#[test]
fn device_outside_the_allowlist_cannot_be_opened() {
    let Some(rootfs) = rootfs_or_skip("device_allowlist") else {
        return;
    };
    // /dev/kvm's numbers (10:232): opening it needs no capability, only the device cgroup
    // (v1) or the missing CAP_MKNOD (v2) stands in the way.
    let out = run(
        &rootfs,
        &unique("devices"),
        &[],
        &["sh", "-c", "mknod /dev/k c 10 232 && cat /dev/k"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}
