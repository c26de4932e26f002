//! The container's /sys/fs/cgroup as the setup steps make it, against the fake syscall
//! layer: cgroup v1 hierarchies read-only in a tmpfs, their fallbacks, and cgroup2.

use std::path::PathBuf;

use super::*;

/// A cgroup v1 host on which the container has groups in `memory` and `cpu,cpuacct`.
fn v1_host() -> HostInfo {
    let hierarchy = |name: &str| V1Hierarchy {
        name: name.into(),
        options: name.into(),
        group: PathBuf::from("/sys/fs/cgroup").join(name).join("t1"),
    };
    HostInfo {
        cgroup2: false,
        cgroup_v1: vec![hierarchy("memory"), hierarchy("cpu,cpuacct")],
    }
}

/// The container's /sys/fs/cgroup, as the fake sees it.
fn cgroup_dir(sub: &str) -> String {
    format!("{ROOT}/sys/fs/cgroup{sub}")
}

/// The flags of the `cgroup` mount of the default config (read-only, nosuid, ...).
fn cgroup_mount_flags(cfg: &ContainerConfig) -> u64 {
    let m = cfg.mounts.iter().find(|m| m.fstype == "cgroup");
    m.expect("a cgroup mount in the default config").flags
}

#[test]
fn cgroup_v1_hierarchies_are_mounted_read_only_in_a_tmpfs_made_read_only_last() {
    let sys = fake();
    let cfg = config();
    run_on(&sys, &cfg, v1_host(), &[]);
    let ro = cgroup_mount_flags(&cfg);
    assert_ne!(
        ro & libc::MS_RDONLY,
        0,
        "the default cgroup mount is read-only"
    );
    let tmpfs_ro = libc::MS_BIND | libc::MS_REMOUNT | ro | libc::MS_NOSUID;
    let order = [
        format!(
            "mount tmpfs {} tmpfs {:#x} mode=755",
            cgroup_dir(""),
            ro & !libc::MS_RDONLY
        ),
        format!("mkdir {}", cgroup_dir("/memory")),
        format!(
            "mount cgroup {} cgroup {ro:#x} memory",
            cgroup_dir("/memory")
        ),
        format!("mkdir {}", cgroup_dir("/cpu,cpuacct")),
        format!(
            "mount cgroup {} cgroup {ro:#x} cpu,cpuacct",
            cgroup_dir("/cpu,cpuacct")
        ),
        format!("symlink cpu,cpuacct {}", cgroup_dir("/cpu")),
        format!("symlink cpu,cpuacct {}", cgroup_dir("/cpuacct")),
        format!("mount - {} - {tmpfs_ro:#x}", cgroup_dir("")),
        "pivot_root".into(),
        "execve".into(),
    ];
    let positions: Vec<usize> = order.iter().map(|p| pos(&sys, p)).collect();
    for (w, pair) in positions.windows(2).zip(order.windows(2)) {
        assert!(w[0] < w[1], "{:?} must come before {:?}", pair[0], pair[1]);
    }
    assert_eq!(sys.count("mount cgroup "), 2);
    assert_eq!(sys.count("symlink cpu,cpuacct"), 2);
}

#[test]
fn cgroup_v1_without_own_groups_is_an_empty_read_only_tmpfs() {
    let sys = fake();
    run_on(&sys, &config(), HostInfo::default(), &[]);
    assert!(sys
        .position(&format!("mkdir {}/", cgroup_dir("")))
        .is_none());
    assert_eq!(sys.count("mount cgroup"), 0);
    let ro = pos(&sys, &format!("mount - {} - ", cgroup_dir("")));
    assert!(pos(&sys, &format!("mount tmpfs {} tmpfs", cgroup_dir(""))) < ro);
    assert!(ro < pos(&sys, "pivot_root"));
}

#[test]
fn cgroup_v1_mount_refused_falls_back_to_a_read_only_bind_of_the_group() {
    let sys = FakeSyscall {
        fail_on: Some(format!("mount cgroup {}", cgroup_dir("/memory"))),
        ..fake()
    };
    let cfg = config();
    run_on(&sys, &cfg, v1_host(), &[]);
    let bind = pos(
        &sys,
        &format!(
            "mount /sys/fs/cgroup/memory/t1 {} - {:#x}",
            cgroup_dir("/memory"),
            libc::MS_BIND
        ),
    );
    let remount = pos(&sys, &format!("mount - {} - ", cgroup_dir("/memory")));
    assert!(bind < remount);
    let flags = &sys.calls.borrow()[remount];
    let ro = format!(
        "{:#x}",
        libc::MS_BIND | libc::MS_REMOUNT | cgroup_mount_flags(&cfg) | libc::MS_NOSUID
    );
    assert!(flags.contains(&ro), "{flags} is a read-only remount");
    assert!(sys
        .position(&format!("mount cgroup {}", cgroup_dir("/cpu,cpuacct")))
        .is_some());
    assert!(sys.position("execve").is_some());
}

#[test]
fn cgroup_v1_without_cgroup_namespace_binds_the_containers_groups() {
    let sys = fake();
    let mut cfg = config();
    cfg.namespaces.cgroup = false;
    run_on(&sys, &cfg, v1_host(), &[]);
    assert_eq!(
        sys.count("mount cgroup"),
        0,
        "a mount would show the host's root"
    );
    for name in ["memory", "cpu,cpuacct"] {
        let bind = pos(
            &sys,
            &format!(
                "mount /sys/fs/cgroup/{name}/t1 {} - ",
                cgroup_dir(&format!("/{name}"))
            ),
        );
        let remount = pos(
            &sys,
            &format!("mount - {} - ", cgroup_dir(&format!("/{name}"))),
        );
        assert!(bind < remount);
    }
}

#[test]
fn cgroup_v1_hierarchy_that_cannot_be_shown_is_skipped_without_error() {
    let sys = FakeSyscall {
        fail_on: Some(format!("mkdir {}", cgroup_dir("/memory"))),
        ..fake()
    };
    run_on(&sys, &config(), v1_host(), &[]);
    assert!(sys
        .position(&format!("mount cgroup {}", cgroup_dir("/memory")))
        .is_none());
    assert!(sys
        .position(&format!(
            "mount /sys/fs/cgroup/memory/t1 {}",
            cgroup_dir("/memory")
        ))
        .is_none());
    assert!(sys
        .position(&format!("mount cgroup {}", cgroup_dir("/cpu,cpuacct")))
        .is_some());
    assert!(sys.position("execve").is_some());
}

#[test]
fn cgroup_v1_bind_that_stays_writable_is_detached() {
    let sys = FakeSyscall {
        fail_on: Some(format!("mount - {} - ", cgroup_dir("/memory"))),
        ..fake()
    };
    let mut cfg = config();
    cfg.namespaces.cgroup = false;
    run_on(&sys, &cfg, v1_host(), &[]);
    let remount = pos(&sys, &format!("mount - {} - ", cgroup_dir("/memory")));
    let detach = pos(&sys, &format!("umount2 {} 2", cgroup_dir("/memory")));
    assert!(remount < detach);
    assert!(sys.position("execve").is_some());
}

#[test]
fn cgroup2_host_mounts_cgroup2_without_a_tmpfs() {
    let sys = fake();
    let host = HostInfo {
        cgroup2: true,
        ..v1_host()
    };
    run_on(&sys, &config(), host, &[]);
    assert!(sys
        .position(&format!("mount cgroup2 {} cgroup2", cgroup_dir("")))
        .is_some());
    assert!(sys
        .position(&format!("mount tmpfs {} ", cgroup_dir("")))
        .is_none());
    assert_eq!(sys.count("mount cgroup "), 0);
}
