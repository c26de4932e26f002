//! The expectations table against observations shaped like each level's.

use std::collections::BTreeMap;

use probe::report::{Access, CanarySight, ExceedOutcome, MemoryLimit, Observation};

use super::*;

const HOST_BOOT: &str = "host-boot-id";
const DOCKER_CAPS: u64 = 0x00000000a80425fb;
/// Docker's set without CAP_MKNOD (bit 27), as in our guests' containers.
const GUEST_CONTAINER_CAPS: u64 = 0x00000000a00425fb;

fn namespaces(base: u64, own: &[&str]) -> BTreeMap<String, Option<u64>> {
    ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"]
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let inode = base + i as u64 + if own.contains(kind) { 1000 } else { 0 };
            (kind.to_string(), Some(inode))
        })
        .collect()
}

fn host_observation() -> Observation {
    Observation {
        probe_version: probe::report::PROBE_VERSION,
        kernel_release: "6.1.0-host".into(),
        boot_id: Some(HOST_BOOT.into()),
        namespaces: namespaces(4026531835, &[]),
        pid: 4242,
        visible_pids: 180,
        hostname: "vmm-canary-x".into(),
        canaries: CanarySight {
            process: true,
            shm: true,
            msg_queue: true,
            hostname: true,
            tmp_file: true,
            abstract_socket: true,
            tcp_port: true,
        },
        root_source: "ext4 /dev/sda1".into(),
        net_interfaces: vec!["eth0".into(), "lo".into()],
        uid_map: vec!["0 0 4294967295".into()],
        cap_eff: "000001ffffffffff".into(),
        seccomp: 0,
        no_new_privs: false,
        memory_limit: MemoryLimit {
            bytes: Some(24 << 30),
            source: "MemTotal".into(),
        },
        exceed_memory_limit: ExceedOutcome::NotTested {
            reason: "not asked".into(),
        },
        kernel_log: Access::Allowed,
        dev_kmsg: Access::Allowed,
        proc_kcore: Access::Absent,
        kallsyms_addresses: Access::Allowed,
        module_loading: Access::Allowed,
    }
}

fn host() -> HostView {
    HostView {
        observation: host_observation(),
        container_caps: DOCKER_CAPS,
        guest_container_caps: GUEST_CONTAINER_CAPS,
    }
}

fn process_level() -> Observation {
    Observation {
        namespaces: namespaces(4026531835, &["mnt"]),
        root_source: String::new(),
        ..host_observation()
    }
}

fn container_level() -> Observation {
    Observation {
        namespaces: namespaces(4026531835, &["cgroup", "ipc", "mnt", "net", "pid", "uts"]),
        pid: 1,
        visible_pids: 1,
        hostname: "vmm-compare-1".into(),
        canaries: CanarySight::default(),
        root_source: "ext4 /dev/sda1".into(),
        net_interfaces: vec!["eth0".into(), "lo".into()],
        cap_eff: format!("{DOCKER_CAPS:016x}"),
        memory_limit: MemoryLimit {
            bytes: Some(64 << 20),
            source: "cgroup1 memory.limit_in_bytes".into(),
        },
        exceed_memory_limit: ExceedOutcome::Killed,
        kernel_log: Access::Denied,
        dev_kmsg: Access::Absent,
        proc_kcore: Access::Denied,
        kallsyms_addresses: Access::Denied,
        module_loading: Access::Denied,
        ..host_observation()
    }
}

fn vm_level() -> Observation {
    Observation {
        kernel_release: "6.1.0-microvm".into(),
        boot_id: Some("guest-boot-id".into()),
        namespaces: namespaces(4026531835, &[]),
        pid: 57,
        visible_pids: 60,
        canaries: CanarySight::default(),
        root_source: "overlay overlay".into(),
        net_interfaces: vec!["eth0".into(), "lo".into(), "sit0".into()],
        memory_limit: MemoryLimit {
            bytes: Some(110 << 20),
            source: "MemTotal".into(),
        },
        exceed_memory_limit: ExceedOutcome::Killed,
        ..host_observation()
    }
}

fn unexpected(level: Isolation, observation: &Observation) -> Vec<String> {
    let host = host();
    PROBES
        .iter()
        .filter_map(|p| {
            let seen = (p.observe)(observation, &host);
            let expected = (p.expect)(level, &host);
            (!expected.accepts(&seen))
                .then(|| format!("{}: {seen} (expected {})", p.id, expected.shown))
        })
        .collect()
}

#[test]
fn a_process_level_like_ours_is_all_expected() {
    assert_eq!(
        unexpected(Isolation::Process, &process_level()),
        Vec::<String>::new()
    );
}

#[test]
fn a_container_level_like_ours_is_all_expected() {
    assert_eq!(
        unexpected(Isolation::Container, &container_level()),
        Vec::<String>::new()
    );
}

#[test]
fn vm_levels_like_ours_are_all_expected() {
    assert_eq!(unexpected(Isolation::Vm, &vm_level()), Vec::<String>::new());
    let vm_container = Observation {
        pid: 1,
        visible_pids: 1,
        // The VM's NIC, moved into the container's network namespace.
        net_interfaces: vec!["eth0".into(), "lo".into(), "sit0".into()],
        cap_eff: format!("{GUEST_CONTAINER_CAPS:016x}"),
        memory_limit: MemoryLimit {
            bytes: Some(64 << 20),
            source: "cgroup2 memory.max".into(),
        },
        // The microVM kernel leaves dmesg_restrict off.
        kernel_log: Access::Allowed,
        dev_kmsg: Access::Absent,
        proc_kcore: Access::Denied,
        kallsyms_addresses: Access::Denied,
        module_loading: Access::Denied,
        ..vm_level()
    };
    assert_eq!(
        unexpected(Isolation::VmContainer, &vm_container),
        Vec::<String>::new()
    );
}

#[test]
fn a_container_that_sees_a_host_canary_is_unexpected() {
    let mut leaky = container_level();
    leaky.canaries.shm = true;
    assert_eq!(
        unexpected(Isolation::Container, &leaky),
        vec!["canary.shm: visible (expected hidden)".to_string()]
    );
}

#[test]
fn a_container_on_the_hosts_pid_namespace_is_unexpected() {
    let mut leaky = container_level();
    leaky.namespaces = namespaces(4026531835, &["cgroup", "ipc", "mnt", "net", "uts"]);
    leaky.visible_pids = 180;
    let found = unexpected(Isolation::Container, &leaky);
    assert!(
        found.iter().any(|f| f.starts_with("ns.pid: host's")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with("pids.visible")),
        "{found:?}"
    );
}

#[test]
fn a_vm_sharing_the_hosts_kernel_is_unexpected() {
    let mut fake = vm_level();
    fake.boot_id = Some(HOST_BOOT.into());
    let found = unexpected(Isolation::Vm, &fake);
    assert!(
        found.iter().any(|f| f.starts_with("kernel.shared")),
        "{found:?}"
    );
}

#[test]
fn a_container_that_survives_its_memory_limit_is_unexpected() {
    let mut loose = container_level();
    loose.exceed_memory_limit = ExceedOutcome::Survived;
    assert_eq!(
        unexpected(Isolation::Container, &loose),
        vec!["mem.exceed: survived (expected killed)".to_string()]
    );
}

#[test]
fn probe_ids_are_unique_and_grouped() {
    let mut ids: Vec<_> = PROBES.iter().map(|p| p.id).collect();
    assert!(ids.iter().all(|id| id.contains('.')));
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), PROBES.len());
}

#[test]
fn every_expectation_has_a_reason() {
    let host = host();
    for probe in PROBES {
        for level in crate::compare::args::ALL_LEVELS {
            let e = (probe.expect)(level, &host);
            assert!(
                !e.reason.is_empty() && !e.shown.is_empty(),
                "{} at {level}",
                probe.id
            );
        }
    }
}

#[test]
fn a_workload_with_an_interface_beyond_its_link_and_idle_tunnels_is_unexpected() {
    let mut leaky = container_level();
    leaky.net_interfaces = vec!["eth0".into(), "eth1".into(), "lo".into()];
    assert_eq!(
        unexpected(Isolation::Container, &leaky),
        vec![
            "net.interfaces: eth0,eth1,lo (expected eth0,lo (and the kernel's idle tunnel devices))"
                .to_string()
        ]
    );
}
