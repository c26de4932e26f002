//! How the host mounts cgroups, detected as youki and crun do: by the file system types of
//! /sys/fs/cgroup and /sys/fs/cgroup/unified. The one detection of the project: the runtime
//! creates its groups by it, and `vmm doctor` reports it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::CGROUP_ROOT;

/// `CGROUP2_SUPER_MAGIC` from linux/magic.h.
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// `TMPFS_MAGIC` from linux/magic.h.
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Which cgroup hierarchy the host mounts at /sys/fs/cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v1 controllers only, on a tmpfs.
    V1,
    /// cgroup v1 controllers, plus an (often empty) v2 hierarchy at /sys/fs/cgroup/unified.
    /// The limits live in the v1 controllers, so the runtime handles it as v1.
    Hybrid,
    /// The unified cgroup v2 hierarchy (what the guest agent mounts).
    V2,
    /// No cgroup file system at /sys/fs/cgroup.
    None,
}

impl CgroupMode {
    /// A short lowercase name, as used in `vmm doctor --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
            CgroupMode::None => "none",
        }
    }
}

impl std::fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cgroup mode of this host.
pub fn detect_mode() -> CgroupMode {
    let root = Path::new(CGROUP_ROOT);
    classify_mode(fs_magic(root), fs_magic(&root.join("unified")))
}

/// The mode for the file system types (`statfs.f_type`) of /sys/fs/cgroup and
/// /sys/fs/cgroup/unified; `None` where a path cannot be stat'ed.
pub fn classify_mode(root: Option<u64>, unified: Option<u64>) -> CgroupMode {
    match root {
        Some(CGROUP2_SUPER_MAGIC) => CgroupMode::V2,
        Some(TMPFS_MAGIC) if unified == Some(CGROUP2_SUPER_MAGIC) => CgroupMode::Hybrid,
        Some(TMPFS_MAGIC) => CgroupMode::V1,
        _ => CgroupMode::None,
    }
}

/// The file system type of `path`, or None if it cannot be stat'ed.
// `f_type` is signed on glibc and unsigned on musl; the magic numbers fit either way.
#[allow(clippy::unnecessary_cast)]
fn fs_magic(path: &Path) -> Option<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `st` a writable `statfs`, both live
    // for the call; statfs writes only within `st`.
    let ret = unsafe { libc::statfs(c_path.as_ptr(), &mut st) };
    (ret == 0).then_some(st.f_type as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_root_is_v2() {
        assert_eq!(
            classify_mode(Some(CGROUP2_SUPER_MAGIC), None),
            CgroupMode::V2
        );
    }

    #[test]
    fn tmpfs_root_with_cgroup2_unified_is_hybrid() {
        assert_eq!(
            classify_mode(Some(TMPFS_MAGIC), Some(CGROUP2_SUPER_MAGIC)),
            CgroupMode::Hybrid
        );
    }

    #[test]
    fn tmpfs_root_without_unified_is_v1() {
        assert_eq!(classify_mode(Some(TMPFS_MAGIC), None), CgroupMode::V1);
    }

    #[test]
    fn missing_or_other_root_is_none() {
        assert_eq!(classify_mode(None, None), CgroupMode::None);
        assert_eq!(classify_mode(Some(0xef53), None), CgroupMode::None);
    }
}
