//! What an idle instance costs the host: the proportional set size (PSS) of `vmm run` and
//! every process it started — for the VM levels that is the VMM with the guest RAM it has
//! touched — and, when the workload has a memory cgroup of its own, that cgroup's charge
//! (which also counts kernel memory, which PSS does not).

use std::collections::BTreeSet;
use std::fs;

use super::runner::IdleCost;

pub fn idle_cost(root: u32) -> IdleCost {
    let tree = process_tree(root);
    let pss_kib: u64 = tree.iter().filter_map(|&pid| pss_kib(pid)).sum();
    let own = memory_cgroup_of("self");
    let cgroup_mib = tree
        .iter()
        .filter_map(|pid| memory_cgroup_of(&pid.to_string()))
        .find(|cg| Some(cg) != own.as_ref())
        .and_then(|cg| cgroup_charge_bytes(&cg))
        .map(|bytes| bytes as f64 / (1024.0 * 1024.0));
    IdleCost {
        pss_mib: pss_kib as f64 / 1024.0,
        cgroup_mib,
    }
}

/// `root` and its descendants, from the parent links in /proc/*/stat.
fn process_tree(root: u32) -> BTreeSet<u32> {
    let mut parents = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_of(&stat))
            {
                parents.push((pid, ppid));
            }
        }
    }
    descendants(root, &parents)
}

fn descendants(root: u32, parents: &[(u32, u32)]) -> BTreeSet<u32> {
    let mut tree = BTreeSet::from([root]);
    loop {
        let before = tree.len();
        for &(pid, ppid) in parents {
            if tree.contains(&ppid) {
                tree.insert(pid);
            }
        }
        if tree.len() == before {
            return tree;
        }
    }
}

/// The PPID field of /proc/PID/stat: the 2nd field after the parenthesised command name
/// (which may itself hold spaces and parentheses).
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    field_kib(&rollup, "Pss:")
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Where a process's memory is charged: (cgroup v1 memory controller or v2, path).
#[derive(Debug, Clone, PartialEq, Eq)]
enum MemoryCgroup {
    V1(String),
    V2(String),
}

fn memory_cgroup_of(pid: &str) -> Option<MemoryCgroup> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    memory_cgroup_in(&text)
}

fn memory_cgroup_in(proc_cgroup: &str) -> Option<MemoryCgroup> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some(MemoryCgroup::V1(path.to_owned()));
        }
        if controllers.is_empty() {
            v2 = Some(MemoryCgroup::V2(path.to_owned()));
        }
    }
    v2
}

fn cgroup_charge_bytes(cgroup: &MemoryCgroup) -> Option<u64> {
    let file = match cgroup {
        MemoryCgroup::V1(path) => format!("/sys/fs/cgroup/memory{path}/memory.usage_in_bytes"),
        MemoryCgroup::V2(path) => format!("/sys/fs/cgroup{path}/memory.current"),
    };
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_is_read_after_a_command_name_with_spaces_and_parens() {
        assert_eq!(parent_of("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn descendants_follow_every_generation_and_nothing_else() {
        let links = [(2, 1), (3, 2), (4, 3), (5, 1), (9, 8)];
        assert_eq!(descendants(2, &links), BTreeSet::from([2, 3, 4]));
    }

    #[test]
    fn memory_cgroup_prefers_the_v1_controller_on_hybrid_hosts() {
        let hybrid = "12:pids:/x\n4:memory:/vmm/c1\n0::/user.slice\n";
        assert_eq!(
            memory_cgroup_in(hybrid),
            Some(MemoryCgroup::V1("/vmm/c1".into()))
        );
        assert_eq!(
            memory_cgroup_in("0::/vmm/c1\n"),
            Some(MemoryCgroup::V2("/vmm/c1".into()))
        );
    }

    #[test]
    fn pss_field_is_read_in_kib() {
        let rollup = "Rss:  100 kB\nPss:  42 kB\nPss_Anon: 7 kB\n";
        assert_eq!(field_kib(rollup, "Pss:"), Some(42));
    }

    #[test]
    fn this_process_has_a_measurable_pss() {
        let cost = idle_cost(std::process::id());
        assert!(cost.pss_mib > 0.1, "PSS of the test process: {cost:?}");
    }
}
