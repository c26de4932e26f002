//! The memory limit the probe is under: a cgroup's (a container), or the RAM the kernel has
//! (a microVM's guest RAM, or the host's). Read the way the kernel applies it, so inside a
//! container, where the cgroup namespace makes the container's cgroup look like the root,
//! the container's limit is still found.

use std::fs;
use std::path::Path;

use crate::report::MemoryLimit;

const CGROUP2_SOURCE: &str = "cgroup2 memory.max";
const CGROUP1_SOURCE: &str = "cgroup1 memory.limit_in_bytes";
const MEMTOTAL_SOURCE: &str = "MemTotal";

/// Where the hierarchies are mounted (cgroup v1 mounts one per controller below it).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// cgroup v1 writes "no limit" as the largest page-aligned i64 (9223372036854771712);
/// anything this large is no limit on any real machine.
const UNLIMITED_FROM: u64 = 1 << 60;

/// The lowest cgroup limit on the way from the probe's cgroup to the root (cgroup v2
/// first, then v1's memory controller); without one, MemTotal.
pub fn limit() -> MemoryLimit {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let read = |path: &Path| fs::read_to_string(path).ok();
    let cgroup = cgroup_limit(&own, &read);
    if let Some(limit @ MemoryLimit { bytes: Some(_), .. }) = cgroup {
        return limit;
    }
    if let Some(bytes) = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total(&text))
    {
        return MemoryLimit {
            bytes: Some(bytes),
            source: MEMTOTAL_SOURCE.to_owned(),
        };
    }
    cgroup.unwrap_or(MemoryLimit {
        bytes: None,
        source: "none".to_owned(),
    })
}

/// The cgroup limit, from /proc/self/cgroup's text and a file reader (a fake in tests).
/// A finite v2 limit wins, then a finite v1 limit; None when neither hierarchy has the
/// memory files at all; `bytes: None` when they exist and say "no limit".
fn cgroup_limit(
    proc_self_cgroup: &str,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Option<MemoryLimit> {
    let v2 = cgroup_path(proc_self_cgroup, |controllers, hierarchy| {
        hierarchy == "0" && controllers.is_empty()
    })
    .and_then(|path| lowest_limit(Path::new(CGROUP_ROOT), path, "memory.max", read))
    .map(|bytes| MemoryLimit {
        bytes,
        source: CGROUP2_SOURCE.to_owned(),
    });
    if let Some(MemoryLimit { bytes: Some(_), .. }) = v2 {
        return v2;
    }
    let v1 = cgroup_path(proc_self_cgroup, |controllers, _| {
        controllers.split(',').any(|c| c == "memory")
    })
    .and_then(|path| {
        let mount = Path::new(CGROUP_ROOT).join("memory");
        lowest_limit(&mount, path, "memory.limit_in_bytes", read)
    })
    .map(|bytes| MemoryLimit {
        bytes,
        source: CGROUP1_SOURCE.to_owned(),
    });
    match v1 {
        Some(MemoryLimit { bytes: Some(_), .. }) => v1,
        _ => v2.or(v1),
    }
}

/// The path of the first `hierarchy:controllers:path` line of /proc/self/cgroup that
/// `wanted(controllers, hierarchy)` accepts.
fn cgroup_path(text: &str, wanted: impl Fn(&str, &str) -> bool) -> Option<&str> {
    text.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let hierarchy = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        wanted(controllers, hierarchy).then_some(path)
    })
}

/// The lowest limit in `file` of the cgroup at `path` under `mount` and of its ancestors
/// up to the mount's root (a parent's limit binds its children too). Outer None when no
/// such file could be read; inner None when every one read says "no limit".
///
/// In a cgroup namespace `path` is "/" and the mount's root *is* the container's cgroup,
/// so its own file is read. A path that does not exist under the mount (a hierarchy
/// mounted from another namespace) falls back, through the walk, to the mount's root.
fn lowest_limit(
    mount: &Path,
    path: &str,
    file: &str,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Option<Option<u64>> {
    let mut found = None;
    for dir in ancestors(path) {
        let Some(text) = read(&mount.join(dir.trim_start_matches('/')).join(file)) else {
            continue;
        };
        let here = parse_limit(&text);
        found = Some(match (found.flatten(), here) {
            (Some(a), Some(b)) => Some(u64::min(a, b)),
            (a, b) => a.or(b),
        });
    }
    found
}

/// "/a/b" → "/a/b", "/a", "/" (anything not absolute is taken as "/").
fn ancestors(path: &str) -> Vec<String> {
    let path = Path::new(if path.starts_with('/') { path } else { "/" });
    path.ancestors()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// A limit file's value: "max" (v2) or a number of at least 2^60 (v1) is no limit.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes < UNLIMITED_FROM)
}

/// MemTotal of /proc/meminfo, in bytes ("MemTotal:       24684072 kB").
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;

    fn fake(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
            .collect();
        move |path: &Path| files.get(path).cloned()
    }

    fn limit(bytes: Option<u64>, source: &str) -> Option<MemoryLimit> {
        Some(MemoryLimit {
            bytes,
            source: source.to_owned(),
        })
    }

    #[test]
    fn cgroup2_limit_is_read_from_the_own_cgroup() {
        let read = fake(&[("/sys/fs/cgroup/ctr/a/memory.max", "67108864\n")]);
        assert_eq!(
            cgroup_limit("0::/ctr/a\n", &read),
            limit(Some(64 << 20), CGROUP2_SOURCE)
        );
    }

    #[test]
    fn cgroup2_namespace_root_reads_the_mount_root_directly() {
        let read = fake(&[("/sys/fs/cgroup/memory.max", "33554432\n")]);
        assert_eq!(
            cgroup_limit("0::/\n", &read),
            limit(Some(32 << 20), CGROUP2_SOURCE)
        );
    }

    #[test]
    fn a_parent_cgroup_limit_binds_the_child() {
        let read = fake(&[
            ("/sys/fs/cgroup/slice/memory.max", "1048576\n"),
            ("/sys/fs/cgroup/slice/ctr/memory.max", "max\n"),
        ]);
        assert_eq!(
            cgroup_limit("0::/slice/ctr\n", &read),
            limit(Some(1 << 20), CGROUP2_SOURCE)
        );
    }

    #[test]
    fn cgroup2_max_everywhere_is_no_limit() {
        let read = fake(&[("/sys/fs/cgroup/ctr/memory.max", "max\n")]);
        assert_eq!(
            cgroup_limit("0::/ctr\n", &read),
            limit(None, CGROUP2_SOURCE)
        );
    }

    #[test]
    fn hybrid_host_without_v2_memory_files_uses_the_v1_memory_controller() {
        let own = "5:devices:/\n4:memory:/process_api/x\n3:cpu,cpuacct:/\n0::/\n";
        let read = fake(&[
            (
                "/sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes",
                "268435456\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        assert_eq!(
            cgroup_limit(own, &read),
            limit(Some(256 << 20), CGROUP1_SOURCE)
        );
    }

    #[test]
    fn cgroup1_limits_of_2_pow_60_or_more_are_no_limit() {
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit(&format!("{}", 1u64 << 60)), None);
        assert_eq!(
            parse_limit(&format!("{}", (1u64 << 60) - 1)),
            Some((1 << 60) - 1)
        );
        assert_eq!(parse_limit("max\n"), None);
    }

    #[test]
    fn no_memory_files_is_no_cgroup_limit_at_all() {
        assert_eq!(cgroup_limit("0::/\n", &fake(&[])), None);
        assert_eq!(cgroup_limit("", &fake(&[])), None);
    }

    #[test]
    fn cgroup1_memory_is_found_among_combined_controllers() {
        let own = "7:cpu,memory:/box\n";
        let read = fake(&[("/sys/fs/cgroup/memory/box/memory.limit_in_bytes", "4096\n")]);
        assert_eq!(cgroup_limit(own, &read), limit(Some(4096), CGROUP1_SOURCE));
    }

    #[test]
    fn mem_total_is_converted_from_kib() {
        let meminfo = "MemTotal:       24684072 kB\nMemFree:        1 kB\n";
        assert_eq!(mem_total(meminfo), Some(24684072 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }
}
