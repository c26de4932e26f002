//! What the probe's namespaces are and what they show: the namespace inodes (equal to the
//! host's exactly when a namespace is shared, on a shared kernel), the processes in /proc,
//! the hostname and the network interfaces.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::sys;

/// The namespace types of /proc/self/ns the report lists, in its order.
pub const TYPES: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// Type → inode of /proc/self/ns/<type> (stat follows the magic link to the nsfs inode,
/// the number `readlink` shows as `net:[4026531840]`); None when it cannot be read.
pub fn inodes() -> BTreeMap<String, Option<u64>> {
    TYPES
        .iter()
        .map(|ty| {
            let inode = fs::metadata(format!("/proc/self/ns/{ty}"))
                .ok()
                .map(|m| m.ino());
            ((*ty).to_owned(), inode)
        })
        .collect()
}

/// PIDs of the processes the probe can see: the numeric entries of /proc.
pub fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// How many processes the probe can see (0 without /proc).
pub fn visible_pids() -> u32 {
    pids().len().try_into().unwrap_or(u32::MAX)
}

/// The hostname of the probe's UTS namespace ("" if uname fails).
pub fn hostname() -> String {
    sys::uname().map(|u| u.nodename).unwrap_or_default()
}

/// Names of the network interfaces, sorted: /sys/class/net, or /proc/net/dev where no
/// sysfs is mounted (a minimal container).
pub fn net_interfaces() -> Vec<String> {
    let mut names = match fs::read_dir("/sys/class/net") {
        Ok(entries) => entries
            .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
            .collect(),
        Err(_) => fs::read_to_string("/proc/net/dev")
            .map(|text| proc_net_dev_names(&text))
            .unwrap_or_default(),
    };
    names.sort();
    names
}

/// Interface names of /proc/net/dev: two header lines, then `  name: counters...`.
fn proc_net_dev_names(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim().to_owned()))
        .filter(|name| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_dev_names_skip_the_headers() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets
    lo:  123 4 0 0 0 0 0 0 123 4 0 0 0 0 0 0
  eth0: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0
";
        assert_eq!(proc_net_dev_names(text), ["lo", "eth0"]);
    }
}
