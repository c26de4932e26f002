//! `probe::isolation::observe` on this host, as `vmm compare` calls it for its reference
//! values: it must see this process as it is, see canaries that are there, and not see
//! canaries that are not.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;

use probe::isolation::observe;
use probe::report::{CanarySight, ExceedOutcome, PROBE_VERSION};
use support::{absent_canaries, Planted};

#[test]
fn observe_reports_this_process_on_this_kernel() {
    let seen = observe(&absent_canaries(), false);
    assert_eq!(seen.probe_version, PROBE_VERSION);
    assert_eq!(seen.pid, std::process::id());
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(seen.boot_id.as_deref(), Some(boot_id.trim()));
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(seen.kernel_release, release.trim());
    assert!(seen.visible_pids > 1, "{} pids", seen.visible_pids);
    assert!(seen.net_interfaces.iter().any(|name| name == "lo"));
    assert_ne!(seen.root_source, "unknown");
    assert_eq!(seen.cap_eff.len(), 16, "{:?}", seen.cap_eff);
    assert!(!seen.uid_map.is_empty());
}

#[test]
fn observe_reads_every_namespace_inode() {
    let seen = observe(&absent_canaries(), false);
    assert_eq!(seen.namespaces.len(), 8);
    for (ty, inode) in &seen.namespaces {
        let expected = fs::metadata(format!("/proc/self/ns/{ty}")).unwrap().ino();
        assert_eq!(*inode, Some(expected), "{ty}");
    }
}

#[test]
fn observe_does_not_see_canaries_that_were_not_planted() {
    let seen = observe(&absent_canaries(), false);
    assert_eq!(seen.canaries, CanarySight::default());
}

#[test]
fn observe_sees_every_canary_planted_on_this_host() {
    let planted = Planted::new();
    let seen = observe(&planted.canaries, false);
    let all = CanarySight {
        process: true,
        shm: true,
        msg_queue: true,
        hostname: true,
        tmp_file: true,
        abstract_socket: true,
        tcp_port: true,
    };
    assert_eq!(seen.canaries, all);
}

#[test]
fn observe_does_not_exceed_the_memory_limit_unless_asked() {
    let seen = observe(&absent_canaries(), false);
    assert!(matches!(
        seen.exceed_memory_limit,
        ExceedOutcome::NotTested { .. }
    ));
    assert!(seen.memory_limit.bytes.is_some_and(|b| b > 0));
}
