//! What the probe can see from where it runs: the kernel it is on, its namespaces, the
//! host's canaries, its privileges, its memory limit and what the kernel lets it read about
//! itself. Every field is measured where the probe runs, never assumed from the level it
//! was told it is at, so the comparison shows what an isolation level really does.

mod canaries;
mod kernel;
mod kernel_leaks;
mod memory;
mod memory_exceed;
mod mounts;
mod namespaces;
mod privilege;

use crate::report::{Canaries, ExceedOutcome, Observation, PROBE_VERSION};

/// Observes isolation from this process. Never fails: what cannot be read is reported as
/// such (None, empty, `Absent`), because not being able to read it is itself what differs
/// between the levels.
///
/// With `exceed_memory_limit`, a child process touches 32 MiB more than the memory limit
/// (see [`Observation::exceed_memory_limit`]). When no cgroup limit applies, the limit is
/// this machine's MemTotal, so ask for it only where that RAM is a guest's, never on a host.
pub fn observe(canaries: &Canaries, exceed_memory_limit: bool) -> Observation {
    let status = privilege::status();
    let memory_limit = memory::limit();
    let exceed_memory_limit = if exceed_memory_limit {
        memory_exceed::run(&memory_limit)
    } else {
        ExceedOutcome::NotTested {
            reason: "not asked (--exceed-memory-limit)".to_owned(),
        }
    };
    Observation {
        probe_version: PROBE_VERSION,
        kernel_release: kernel::release(),
        boot_id: kernel::boot_id(),
        namespaces: namespaces::inodes(),
        pid: std::process::id(),
        visible_pids: namespaces::visible_pids(),
        hostname: namespaces::hostname(),
        canaries: canaries::look_for(canaries),
        root_source: mounts::root_source(),
        net_interfaces: namespaces::net_interfaces(),
        uid_map: privilege::uid_map(),
        cap_eff: status.cap_eff,
        seccomp: status.seccomp,
        no_new_privs: status.no_new_privs,
        memory_limit,
        exceed_memory_limit,
        kernel_log: kernel_leaks::kernel_log(),
        dev_kmsg: kernel_leaks::dev_kmsg(),
        proc_kcore: kernel_leaks::proc_kcore(),
        kallsyms_addresses: kernel_leaks::kallsyms_addresses(),
        module_loading: kernel_leaks::module_loading(),
    }
}
