//! Mount option strings (`nosuid`, `ro`, `mode=755`, `rbind`, `rprivate`, ...) split into
//! `mount(2)` flags, propagation flags and filesystem data, as runc's `parseMountOptions`.

use std::path::PathBuf;

use super::config::MountSpec;

/// (option, clears the flag, flag)
const FLAGS: &[(&str, bool, u64)] = &[
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("nosuid", false, libc::MS_NOSUID),
    ("suid", true, libc::MS_NOSUID),
    ("nodev", false, libc::MS_NODEV),
    ("dev", true, libc::MS_NODEV),
    ("noexec", false, libc::MS_NOEXEC),
    ("exec", true, libc::MS_NOEXEC),
    ("sync", false, libc::MS_SYNCHRONOUS),
    ("async", true, libc::MS_SYNCHRONOUS),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("remount", false, libc::MS_REMOUNT),
    ("mand", false, libc::MS_MANDLOCK),
    ("nomand", true, libc::MS_MANDLOCK),
    ("atime", true, libc::MS_NOATIME),
    ("noatime", false, libc::MS_NOATIME),
    ("diratime", true, libc::MS_NODIRATIME),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("bind", false, libc::MS_BIND),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
    ("relatime", false, libc::MS_RELATIME),
    ("norelatime", true, libc::MS_RELATIME),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
];

const PROPAGATION: &[(&str, u64)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// Build a mount from its OCI-style parts.
/// Every option name [`mount_spec`] understands (the rest goes to the file system as data).
pub fn known_options() -> Vec<&'static str> {
    FLAGS
        .iter()
        .map(|(name, _, _)| *name)
        .chain(PROPAGATION.iter().map(|(name, _)| *name))
        .collect()
}

pub fn mount_spec<S: AsRef<str>>(
    destination: &str,
    fstype: &str,
    source: &str,
    options: &[S],
) -> MountSpec {
    let mut flags = 0u64;
    let mut propagation = 0u64;
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let opt = opt.as_ref();
        if let Some((_, clear, flag)) = FLAGS.iter().find(|(name, _, _)| *name == opt) {
            if *clear {
                flags &= !flag;
            } else {
                flags |= flag;
            }
        } else if let Some((_, flag)) = PROPAGATION.iter().find(|(name, _)| *name == opt) {
            propagation |= flag;
        } else {
            data.push(opt);
        }
    }
    if fstype == "bind" {
        flags |= libc::MS_BIND;
    }
    MountSpec {
        destination: PathBuf::from(destination),
        fstype: fstype.to_owned(),
        source: PathBuf::from(source),
        flags,
        propagation,
        data: data.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data_are_split() {
        let m = mount_spec(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "mode=755", "size=65536k"],
        );
        assert_eq!(m.flags, libc::MS_NOSUID);
        assert_eq!(m.data, "mode=755,size=65536k");
        assert_eq!(m.propagation, 0);
    }

    #[test]
    fn later_option_overrides_earlier() {
        let m = mount_spec("/x", "tmpfs", "tmpfs", &["ro", "rw"]);
        assert_eq!(m.flags & libc::MS_RDONLY, 0);
    }

    #[test]
    fn rbind_is_recursive_bind_and_propagation_is_separate() {
        let m = mount_spec("/x", "none", "/src", &["rbind", "rprivate", "ro"]);
        assert!(m.is_bind());
        assert_eq!(m.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(m.propagation, libc::MS_PRIVATE | libc::MS_REC);
    }
}
