//! The isolation probes: what each one shows, and what each level is expected to show —
//! written once, here, with the reason. A result other than the expected one is reported
//! and fails the comparison, so `vmm compare` is also a self-test of our isolation.

use probe::report::{Access, ExceedOutcome, Observation};

use crate::run::args::Isolation;

/// The host's own view, which several expectations refer to: observed by `vmm compare`
/// itself, outside any level.
pub struct HostView {
    pub observation: Observation,
    /// CapEff of a container on this host: Docker's default capability set, without
    /// CAP_MKNOD where the cgroup cannot restrict devices (the runtime withholds it).
    pub container_caps: u64,
    /// CapEff of a container in our guests (cgroup v2, no device filter: no CAP_MKNOD).
    pub guest_container_caps: u64,
}

/// What one level is expected to show for one probe.
pub struct Expected {
    /// As the report shows it.
    pub shown: String,
    pub reason: &'static str,
    accepts: Accepts,
}

enum Accepts {
    Exactly(String),
    OneOf(&'static [&'static str]),
    StartsWith(&'static str),
    Test(fn(&str) -> bool),
    Anything,
}

impl Expected {
    pub fn accepts(&self, observed: &str) -> bool {
        match &self.accepts {
            Accepts::Exactly(value) => observed == value,
            Accepts::OneOf(values) => values.contains(&observed),
            Accepts::StartsWith(prefix) => observed.starts_with(prefix),
            Accepts::Test(test) => test(observed),
            Accepts::Anything => true,
        }
    }
}

fn exactly(value: impl Into<String>, reason: &'static str) -> Expected {
    let value = value.into();
    Expected {
        shown: value.clone(),
        reason,
        accepts: Accepts::Exactly(value),
    }
}

fn one_of(shown: &str, values: &'static [&'static str], reason: &'static str) -> Expected {
    Expected {
        shown: shown.into(),
        reason,
        accepts: Accepts::OneOf(values),
    }
}

fn starts_with(prefix: &'static str, reason: &'static str) -> Expected {
    Expected {
        shown: format!("{prefix}…"),
        reason,
        accepts: Accepts::StartsWith(prefix),
    }
}

fn test(shown: &str, test: fn(&str) -> bool, reason: &'static str) -> Expected {
    Expected {
        shown: shown.into(),
        reason,
        accepts: Accepts::Test(test),
    }
}

fn anything(shown: &str, reason: &'static str) -> Expected {
    Expected {
        shown: shown.into(),
        reason,
        accepts: Accepts::Anything,
    }
}

/// One isolation probe.
pub struct Probe {
    /// Stable name (`--only`, the JSON's `id`): "group.name".
    pub id: &'static str,
    pub title: &'static str,
    /// The observation, as shown.
    pub observe: fn(&Observation, &HostView) -> String,
    pub expect: fn(Isolation, &HostView) -> Expected,
}

// Observed values, as the report shows them.
const HOSTS: &str = "host's";
const OWN: &str = "own";
const OWN_KERNEL: &str = "n/a: own kernel";
const VISIBLE: &str = "visible";
const HIDDEN: &str = "hidden";
const NOT_READABLE: &[&str] = &["denied", "absent"];

fn shares_kernel(o: &Observation, host: &HostView) -> bool {
    o.boot_id.is_some() && o.boot_id == host.observation.boot_id
}

fn seen(visible: bool) -> String {
    if visible { VISIBLE } else { HIDDEN }.to_owned()
}

fn access(a: Access) -> String {
    match a {
        Access::Allowed => "allowed",
        Access::Denied => "denied",
        Access::Absent => "absent",
    }
    .to_owned()
}

/// A namespace's inode against the host's; only meaningful on the host's kernel.
fn namespace(o: &Observation, host: &HostView, kind: &str) -> String {
    if !shares_kernel(o, host) {
        return OWN_KERNEL.into();
    }
    let mine = o.namespaces.get(kind).copied().flatten();
    let hosts = host.observation.namespaces.get(kind).copied().flatten();
    match (mine, hosts) {
        (Some(a), Some(b)) if a == b => HOSTS.into(),
        (Some(_), Some(_)) => OWN.into(),
        _ => "unreadable".into(),
    }
}

/// Expected namespaces: `own_in_container` says whether our containers make this one.
fn expect_namespace(level: Isolation, host: &HostView, kind: &str) -> Expected {
    let own_in_container = matches!(kind, "cgroup" | "ipc" | "mnt" | "net" | "pid" | "uts");
    let readable_on_host = host
        .observation
        .namespaces
        .get(kind)
        .copied()
        .flatten()
        .is_some();
    match level {
        _ if level.in_vm() => exactly(
            OWN_KERNEL,
            "a VM runs its own kernel: its namespaces are not comparable with the host's",
        ),
        _ if !readable_on_host => exactly(
            "unreadable",
            "this host's kernel does not have this namespace type",
        ),
        Isolation::Process if kind == "mnt" => exactly(
            OWN,
            "the process level's only namespace: a private mount namespace for its binds",
        ),
        Isolation::Process => exactly(HOSTS, "the process level shares the host's namespaces"),
        _ if own_in_container => exactly(OWN, "a container gets a namespace of this type"),
        _ if kind == "user" => exactly(
            HOSTS,
            "our containers run without a user namespace (as Docker's do by default)",
        ),
        _ => exactly(HOSTS, "our containers do not make a namespace of this type"),
    }
}

macro_rules! namespace_probe {
    ($id:literal, $kind:literal, $title:literal) => {
        Probe {
            id: $id,
            title: $title,
            observe: |o, h| namespace(o, h, $kind),
            expect: |l, h| expect_namespace(l, h, $kind),
        }
    };
}

fn canary_expectation(level: Isolation, what_process_sees: &'static str) -> Expected {
    match level {
        Isolation::Process => exactly(VISIBLE, what_process_sees),
        Isolation::Container => exactly(HIDDEN, "the container's namespaces hide it"),
        _ => exactly(HIDDEN, "a VM shares nothing with the host but its devices"),
    }
}

macro_rules! canary_probe {
    ($id:literal, $field:ident, $title:literal, $why:literal) => {
        Probe {
            id: $id,
            title: $title,
            observe: |o, _| seen(o.canaries.$field),
            expect: |l, _| canary_expectation(l, $why),
        }
    };
}

/// A kernel-leak probe: the process level sees what the host sees; containers are refused;
/// a VM's workload sees its own kernel's, which reveals nothing of the host.
fn expect_kernel_leak(level: Isolation, host: Access, container_reason: &'static str) -> Expected {
    match level {
        Isolation::Process => exactly(
            access(host),
            "the process level has the host's privileges (as measured on the host)",
        ),
        Isolation::Container | Isolation::VmContainer => {
            one_of("denied or absent", NOT_READABLE, container_reason)
        }
        Isolation::Vm => anything(
            "any: the guest kernel's",
            "the guest's root sees its own kernel, not the host's",
        ),
    }
}

fn memory_limit(o: &Observation) -> String {
    match o.memory_limit.bytes {
        Some(bytes) => format!("{} MiB ({})", bytes >> 20, o.memory_limit.source),
        None => format!("none ({})", o.memory_limit.source),
    }
}

fn exceed(o: &Observation) -> String {
    match &o.exceed_memory_limit {
        ExceedOutcome::Killed => "killed".into(),
        ExceedOutcome::Survived => "survived".into(),
        ExceedOutcome::NotTested { reason } => format!("not tested: {reason}"),
    }
}

fn root_source(o: &Observation) -> String {
    if o.root_source.is_empty() {
        "not a mount (a chroot)".into()
    } else {
        o.root_source.clone()
    }
}

fn is_guest_ram(shown: &str) -> bool {
    // "N MiB (MemTotal)" with N below the VM's 128 MiB of RAM: the kernel keeps some.
    shown.ends_with("(MemTotal)")
        && shown
            .split(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|mib| mib < 128)
}

/// Loopback and eth0 (the link to the host), beside the fallback devices a kernel with IP
/// tunnels built in makes in every network namespace (sit0, tunl0, …): none of them leads
/// anywhere until configured.
fn link_and_loopback(interfaces: &str) -> bool {
    only_these_and_idle_tunnels(interfaces, &["eth0", "lo"])
}

fn only_these_and_idle_tunnels(interfaces: &str, wanted: &[&str]) -> bool {
    const IDLE_TUNNELS: [&str; 9] = [
        "sit0", "tunl0", "ip6tnl0", "ip_vti0", "ip6_vti0", "gre0", "gretap0", "erspan0", "ip6gre0",
    ];
    let names: Vec<&str> = interfaces.split(',').collect();
    wanted.iter().all(|w| names.contains(w))
        && names
            .iter()
            .all(|n| wanted.contains(n) || IDLE_TUNNELS.contains(n))
}

fn has_sys_admin(cap_eff: &str) -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    u64::from_str_radix(cap_eff, 16).is_ok_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

pub const PROBES: &[Probe] = &[
    Probe {
        id: "kernel.shared",
        title: "kernel shared with the host (boot_id)",
        observe: |o, h| {
            if shares_kernel(o, h) {
                HOSTS.into()
            } else {
                format!("{OWN}: {}", o.kernel_release)
            }
        },
        expect: |l, _| {
            if l.in_vm() {
                starts_with(OWN, "a VM boots its own kernel")
            } else {
                exactly(HOSTS, "processes and containers run on the host's kernel")
            }
        },
    },
    namespace_probe!("ns.pid", "pid", "PID namespace"),
    namespace_probe!("ns.mnt", "mnt", "mount namespace"),
    namespace_probe!("ns.uts", "uts", "UTS namespace"),
    namespace_probe!("ns.ipc", "ipc", "IPC namespace"),
    namespace_probe!("ns.net", "net", "network namespace"),
    namespace_probe!("ns.user", "user", "user namespace"),
    namespace_probe!("ns.cgroup", "cgroup", "cgroup namespace"),
    namespace_probe!("ns.time", "time", "time namespace"),
    Probe {
        id: "pids.visible",
        title: "processes visible in /proc",
        observe: |o, _| o.visible_pids.to_string(),
        expect: |l, _| match l {
            Isolation::Process => test(
                "the host's (> 2)",
                |s| s.parse::<u32>().is_ok_and(|n| n > 2),
                "the process level shares the host's PID namespace",
            ),
            Isolation::Vm => anything(
                "any: the guest's",
                "the guest's own processes: its kernel threads, the agent, the workload",
            ),
            _ => test(
                "its own (≤ 2)",
                |s| s.parse::<u32>().is_ok_and(|n| n <= 2),
                "a new PID namespace holds only the workload",
            ),
        },
    },
    Probe {
        id: "pids.self",
        title: "the workload's own PID",
        observe: |o, _| o.pid.to_string(),
        expect: |l, _| match l {
            Isolation::Process => test(
                "a host PID (≠ 1)",
                |s| s != "1",
                "the host's PID namespace, where PID 1 is the host's init",
            ),
            Isolation::Vm => test(
                "a guest PID (≠ 1)",
                |s| s != "1",
                "the guest's PID 1 is the agent, which starts the workload",
            ),
            _ => exactly("1", "the workload is PID 1 of its new PID namespace"),
        },
    },
    canary_probe!(
        "canary.process",
        process,
        "host canary process in /proc",
        "the host's PID namespace and /proc"
    ),
    canary_probe!(
        "canary.shm",
        shm,
        "host SysV shared memory",
        "the host's IPC namespace"
    ),
    canary_probe!(
        "canary.msg_queue",
        msg_queue,
        "host SysV message queue",
        "the host's IPC namespace"
    ),
    canary_probe!(
        "canary.hostname",
        hostname,
        "host hostname",
        "the host's UTS namespace"
    ),
    canary_probe!(
        "canary.tmp_file",
        tmp_file,
        "host file in /tmp (directly or via /proc/PID/root)",
        "a chroot is no wall: a host process's /proc/PID/root leads out of it"
    ),
    canary_probe!(
        "canary.abstract_socket",
        abstract_socket,
        "host abstract unix socket",
        "abstract sockets belong to the network namespace, which is the host's"
    ),
    canary_probe!(
        "canary.tcp_port",
        tcp_port,
        "host TCP port on 127.0.0.1",
        "the host's network namespace and loopback"
    ),
    Probe {
        id: "fs.root",
        title: "root filesystem",
        observe: |o, _| root_source(o),
        expect: |l, _| match l {
            Isolation::Process => anything(
                "a directory of the host's",
                "chroot into the rootfs directory, on the host's filesystem",
            ),
            Isolation::Container => anything(
                "the rootfs directory",
                "pivot_root into the rootfs directory, on the host's filesystem",
            ),
            _ => starts_with(
                "overlay",
                "the agent mounts a tmpfs over the read-only rootfs disk (virtio-blk)",
            ),
        },
    },
    Probe {
        id: "net.interfaces",
        title: "network interfaces",
        observe: |o, _| o.net_interfaces.join(","),
        expect: |l, h| match l {
            Isolation::Process => exactly(
                h.observation.net_interfaces.join(","),
                "the host's network namespace",
            ),
            Isolation::Container => test(
                "eth0,lo (and the kernel's idle tunnel devices)",
                link_and_loopback,
                "a new network namespace: loopback, and eth0, the veth link to the host",
            ),
            Isolation::VmContainer => test(
                "eth0,lo (and the kernel's idle tunnel devices)",
                link_and_loopback,
                "a new network namespace in the guest: loopback, and eth0, the VM's virtio-net \
                 NIC moved in, on a TAP link to the host",
            ),
            Isolation::Vm => test(
                "eth0,lo (and the kernel's idle tunnel devices)",
                link_and_loopback,
                "the guest's own stack: loopback, and eth0, a virtio-net NIC on a TAP link to \
                 the host",
            ),
        },
    },
    Probe {
        id: "priv.uid_map",
        title: "uid_map (root in the workload is…)",
        observe: |o, _| o.uid_map.join(" | "),
        expect: |_, _| {
            exactly(
                "0 0 4294967295",
                "no user namespace: root of the workload is root of its kernel",
            )
        },
    },
    Probe {
        id: "priv.cap_eff",
        title: "effective capabilities (CapEff)",
        observe: |o, _| o.cap_eff.clone(),
        expect: |l, h| match l {
            Isolation::Process => exactly(
                h.observation.cap_eff.clone(),
                "the process level keeps the capabilities it was started with",
            ),
            Isolation::Vm => test(
                "all of the guest's (with CAP_SYS_ADMIN)",
                has_sys_admin,
                "root of the guest, which only governs the guest",
            ),
            Isolation::Container => exactly(
                format!("{:016x}", h.container_caps),
                "Docker's default capability set (no CAP_MKNOD if the host's cgroup cannot \
                 restrict devices)",
            ),
            Isolation::VmContainer => exactly(
                format!("{:016x}", h.guest_container_caps),
                "Docker's default set without CAP_MKNOD: the guest's cgroup v2 has no device \
                 filter",
            ),
        },
    },
    Probe {
        id: "priv.seccomp",
        title: "seccomp mode",
        observe: |o, _| o.seccomp.to_string(),
        expect: |l, h| match l {
            Isolation::Process => exactly(
                h.observation.seccomp.to_string(),
                "the process level inherits the host's",
            ),
            Isolation::Vm => exactly("0", "the agent starts the workload without a filter"),
            _ => exactly(
                "0",
                "`vmm run` applies no seccomp filter (`vmm container run --seccomp` adds Docker's)",
            ),
        },
    },
    Probe {
        id: "priv.no_new_privs",
        title: "NoNewPrivs",
        observe: |o, _| o.no_new_privs.to_string(),
        expect: |l, h| match l {
            Isolation::Process => exactly(
                h.observation.no_new_privs.to_string(),
                "the process level inherits the host's",
            ),
            _ => anything(
                "either",
                "set by the runtime's process setup, not an isolation boundary",
            ),
        },
    },
    Probe {
        id: "mem.limit",
        title: "memory limit in force",
        observe: |o, _| memory_limit(o),
        expect: |l, _| match l {
            Isolation::Process => test(
                "none: the host's RAM",
                |s| s.ends_with("(MemTotal)"),
                "the process level has no cgroup of its own",
            ),
            Isolation::Vm => test(
                "the guest's RAM (< 128 MiB)",
                is_guest_ram,
                "a VM's limit is its RAM (128 MiB here, some kept by its kernel)",
            ),
            _ => starts_with("64 MiB", "the container's cgroup limit (--memory 64m)"),
        },
    },
    Probe {
        id: "mem.exceed",
        title: "a child allocating past the limit",
        observe: |o, _| exceed(o),
        expect: |l, _| match l {
            Isolation::Process => starts_with(
                "not tested",
                "the limit is the host's RAM, which the probe never exhausts",
            ),
            Isolation::Vm => exactly("killed", "the guest kernel's OOM killer"),
            _ => exactly("killed", "the cgroup's OOM killer"),
        },
    },
    Probe {
        id: "leak.kernel_log",
        title: "kernel log (dmesg)",
        observe: |o, _| access(o.kernel_log),
        expect: |l, h| match l {
            Isolation::VmContainer => anything(
                "any: the guest kernel's",
                "the microVM kernel leaves dmesg_restrict off: its own log, not the host's",
            ),
            _ => expect_kernel_leak(
                l,
                h.observation.kernel_log,
                "no CAP_SYSLOG in a container (and the host restricts dmesg)",
            ),
        },
    },
    Probe {
        id: "leak.dev_kmsg",
        title: "/dev/kmsg",
        observe: |o, _| access(o.dev_kmsg),
        expect: |l, h| {
            expect_kernel_leak(
                l,
                h.observation.dev_kmsg,
                "a container's /dev has no kmsg device",
            )
        },
    },
    Probe {
        id: "leak.kcore",
        title: "/proc/kcore",
        observe: |o, _| access(o.proc_kcore),
        expect: |l, h| {
            expect_kernel_leak(
                l,
                h.observation.proc_kcore,
                "masked in a container (/dev/null bound over it)",
            )
        },
    },
    Probe {
        id: "leak.kallsyms",
        title: "real addresses in /proc/kallsyms",
        observe: |o, _| access(o.kallsyms_addresses),
        expect: |l, h| {
            expect_kernel_leak(
                l,
                h.observation.kallsyms_addresses,
                "no CAP_SYSLOG: the kernel prints zeros",
            )
        },
    },
    Probe {
        id: "priv.module_loading",
        title: "loading a kernel module (init_module)",
        observe: |o, _| access(o.module_loading),
        expect: |l, h| {
            expect_kernel_leak(
                l,
                h.observation.module_loading,
                "no CAP_SYS_MODULE in a container",
            )
        },
    },
];

#[cfg(test)]
#[path = "probes_tests.rs"]
mod tests;
