//! Where the probe's "/" comes from: the host's disk (a chroot), an overlay or bind mount
//! (a container), a guest's virtio disk or initramfs (a microVM).

use std::fs;

/// The root mount as "<fstype> <source>", or "unknown" when mountinfo has no "/" entry.
pub fn root_source() -> String {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|text| root_of_mountinfo(&text))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The last mount whose mount point is "/" (the one on top, which the probe sees), as
/// "<fstype> <source>". A line reads
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
/// the mount point is the fifth field, fstype and source follow the " - " separator (the
/// optional fields before it vary in number).
fn root_of_mountinfo(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if mount.split(' ').nth(4)? != "/" {
            return None;
        }
        let mut fs = fs.split(' ');
        let fstype = fs.next()?;
        let source = fs.next()?;
        Some(format!("{fstype} {source}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_source_is_the_last_mount_on_slash() {
        let text = "\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 0:40 / / rw,relatime shared:5 master:2 - overlay overlay rw,lowerdir=/l
";
        assert_eq!(root_of_mountinfo(text).as_deref(), Some("overlay overlay"));
    }

    #[test]
    fn mount_points_under_root_are_not_root() {
        let text = "23 22 0:21 / /proc rw,nosuid - proc proc rw\n";
        assert_eq!(root_of_mountinfo(text), None);
    }

    #[test]
    fn a_root_entry_of_a_bind_mount_is_not_a_mount_on_slash() {
        // The fourth field is the root *within* the source filesystem, not the mount point.
        let text =
            "30 1 254:0 / /srv rw - ext4 /dev/vda rw\n31 1 254:0 /x /y rw - ext4 /dev/vdb rw\n";
        assert_eq!(root_of_mountinfo(text), None);
    }
}
