//! The rootfs the probe runs in. By default a minimal one, holding only the probe binary
//! and the mount points the levels need, made once per probe binary and cached, so
//! `vmm compare` needs no set-up. With `--rootfs DIR`, a copy of DIR with the probe added
//! (the user's tree is never written to), removed when the comparison ends.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::runner::PROBE_IN_ROOTFS;

/// Mount points the runtime and the agent bind or mount over.
const MOUNT_POINTS: [&str; 6] = ["dev", "proc", "sys", "tmp", "run", "etc"];

/// The rootfs of one comparison; a copied `--rootfs` is removed on drop.
pub struct ProbeRootfs {
    pub path: PathBuf,
    remove_on_drop: bool,
}

impl Drop for ProbeRootfs {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// `${XDG_CACHE_HOME:-~/.cache}/vmm/compare`.
pub fn cache_dir() -> PathBuf {
    crate::run::images::vmm_cache_root().join("compare")
}

/// The minimal rootfs for `probe`, from the cache or made now.
pub fn minimal(probe: &Path, cache: &Path) -> io::Result<ProbeRootfs> {
    let bytes = fs::read(probe)?;
    let key: String = Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = cache.join(format!("rootfs-{key}"));
    if !path.join(probe_name()).is_file() {
        fs::create_dir_all(cache)?;
        let temp = cache.join(format!(".tmp-rootfs-{key}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&temp);
        fs::create_dir_all(&temp)?;
        populate(&temp, &bytes)?;
        // A concurrent comparison may have published the same tree: theirs is as good.
        if fs::rename(&temp, &path).is_err() {
            fs::remove_dir_all(&temp)?;
        }
    }
    Ok(ProbeRootfs {
        path,
        remove_on_drop: false,
    })
}

/// A copy of the user's `dir` with the probe added, under `cache`.
pub fn copy_of(dir: &Path, probe: &Path, cache: &Path) -> io::Result<ProbeRootfs> {
    fs::create_dir_all(cache)?;
    let path = cache.join(format!("user-rootfs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    let rootfs = ProbeRootfs {
        path: path.clone(),
        remove_on_drop: true,
    };
    // cp -a keeps devices, links, owners and modes; std has no tree copy that does.
    let status = Command::new("cp").arg("-a").arg(dir).arg(&path).status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "cp -a {} {} failed ({status})",
            dir.display(),
            path.display()
        )));
    }
    populate(&path, &fs::read(probe)?)?;
    Ok(rootfs)
}

fn probe_name() -> &'static str {
    PROBE_IN_ROOTFS.trim_start_matches('/')
}

fn populate(root: &Path, probe: &[u8]) -> io::Result<()> {
    for dir in MOUNT_POINTS {
        fs::create_dir_all(root.join(dir))?;
    }
    let target = root.join(probe_name());
    fs::write(&target, probe)?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmm-compare-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn minimal_rootfs_holds_the_probe_and_the_mount_points_and_is_reused() {
        let dir = scratch("minimal");
        let probe = dir.join("probe-bin");
        fs::write(&probe, b"\x7fELF not really").unwrap();
        let first = minimal(&probe, &dir.join("cache")).unwrap();
        assert_eq!(
            fs::read(first.path.join("vmm-probe")).unwrap(),
            b"\x7fELF not really"
        );
        for m in MOUNT_POINTS {
            assert!(first.path.join(m).is_dir(), "{m}");
        }
        let second = minimal(&probe, &dir.join("cache")).unwrap();
        assert_eq!(first.path, second.path, "one tree per probe binary");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_user_rootfs_is_copied_not_written_and_the_copy_goes_away() {
        let dir = scratch("copy");
        let user = dir.join("user");
        fs::create_dir_all(user.join("bin")).unwrap();
        fs::write(user.join("bin/tool"), b"x").unwrap();
        let probe = dir.join("probe-bin");
        fs::write(&probe, b"p").unwrap();
        let copy = copy_of(&user, &probe, &dir.join("cache")).unwrap();
        let copied = copy.path.clone();
        assert!(copied.join("bin/tool").is_file());
        assert!(copied.join("vmm-probe").is_file());
        assert!(
            !user.join("vmm-probe").exists(),
            "the user's tree was written to"
        );
        drop(copy);
        assert!(!copied.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
