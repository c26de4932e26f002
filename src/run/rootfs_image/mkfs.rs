//! mkfs.ext4 (e2fsprogs): finding it, its version (part of the cache key) and the packing
//! of a directory into an image with `-d`, which needs neither root nor a mount.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use edge::exit_code;

use super::super::file_identity::file_identity;
use super::size::{Geometry, BLOCK_SIZE, INODE_SIZE};
use super::RootfsImageError;

/// Where mkfs.ext4 lives when PATH lacks it: Debian installs it in /usr/sbin, which a
/// non-root user's PATH does not include.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// The features, listed in full so that the host's /etc/mke2fs.conf cannot change the
/// image behind the cache key (which has mke2fs's version): Debian's ext4 defaults less the
/// journal (nothing writes to a read-only disk) and resize_inode (it is never grown). Linux
/// has supported all of them since 3.18.
const FEATURES: &str = "none,sparse_super,large_file,filetype,dir_index,ext_attr,extent,\
                        huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize";

const LABEL: &str = "vmm-rootfs";

/// The file in the image cache that remembers mkfs.ext4's version with the identity of the
/// binary that gave it: asking costs a process start on every `vmm run` (~40 ms of a run
/// in the nested tier, where a warm snapshot starts in a few hundred).
const VERSION_MEMO: &str = "mkfs-version";

pub struct Mkfs {
    path: PathBuf,
}

impl Mkfs {
    pub fn find() -> Result<Self, RootfsImageError> {
        let path_dirs = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path_dirs)
            .chain(SBIN_DIRS.iter().map(PathBuf::from))
            .map(|dir| dir.join("mkfs.ext4"))
            .find(|candidate| is_executable(candidate))
            .map(|path| Self { path })
            .ok_or(RootfsImageError::MkfsNotFound)
    }

    /// The first line of `mkfs.ext4 -V`, e.g. "mke2fs 1.47.0 (5-Feb-2023)".
    pub fn version(&self) -> Result<String, RootfsImageError> {
        let output = Command::new(&self.path)
            .arg("-V")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.failed("reporting its version", format!("cannot run it: {e}")))?;
        // mke2fs prints its version on stderr.
        let text = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        match text.lines().next().map(str::trim) {
            Some(line) if output.status.success() && !line.is_empty() => Ok(line.to_string()),
            _ => Err(self.failed("reporting its version", format!("{:?}", text.trim()))),
        }
    }

    /// [`Mkfs::version`], remembered in `cache` for as long as the binary is the same
    /// file: its path, size, modification time and inode (an upgrade replaces it).
    pub fn version_in(&self, cache: &Path) -> Result<String, RootfsImageError> {
        let identity = file_identity(&self.path).ok();
        let memo = cache.join(VERSION_MEMO);
        if let (Some(identity), Ok(text)) = (&identity, fs::read_to_string(&memo)) {
            if let Some((seen, version)) = text.split_once('\n') {
                if seen == identity && !version.trim().is_empty() {
                    return Ok(version.trim().to_owned());
                }
            }
        }
        let version = self.version()?;
        if let Some(identity) = identity {
            // Best effort: a memo that cannot be written is asked for again next time.
            let temp = cache.join(format!(".{VERSION_MEMO}-{}", std::process::id()));
            if fs::write(&temp, format!("{identity}\n{version}\n")).is_ok() {
                let _ = fs::rename(&temp, &memo);
            }
        }
        Ok(version)
    }

    /// Packs `rootfs` into a new file at `image` (which must not exist), durably on disk
    /// when this returns, so that the rename that publishes it never exposes a torn image.
    pub fn pack(
        &self,
        rootfs: &Path,
        owner: (u32, u32),
        geometry: &Geometry,
        image: &Path,
    ) -> Result<(), RootfsImageError> {
        let no_space = || RootfsImageError::CacheFull {
            dir: image.parent().unwrap_or(image).to_path_buf(),
            rootfs: rootfs.to_path_buf(),
            mib: geometry.bytes >> 20,
        };
        let cache_error = |action, e: io::Error| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                no_space()
            } else {
                RootfsImageError::Cache {
                    path: image.to_path_buf(),
                    action,
                    source: e,
                }
            }
        };
        // Created here, 0600, rather than by mkfs with the umask's mode: the image copies
        // files that may be readable only by their owner.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(image)
            .map_err(|e| cache_error("cannot create the image file", e))?;

        let mut command = Command::new(&self.path);
        dies_with_parent(&mut command);
        let output = command
            .args([
                "-q",
                "-F",
                "-b",
                &BLOCK_SIZE.to_string(),
                "-I",
                &INODE_SIZE.to_string(),
            ])
            // No blocks reserved for root: nothing will allocate any.
            .args(["-m", "0", "-L", LABEL, "-O", FEATURES])
            .arg("-N")
            .arg(geometry.inodes.to_string())
            // mkfs -d copies each entry's owner, mode and times from the tree, but gives the
            // root directory mode 0755 and `root_owner` (by default whoever runs mkfs): the
            // directory's own owner keeps the image what the tree is, as `vmm container
            // run` shows it.
            .arg("-E")
            .arg(format!("root_owner={}:{}", owner.0, owner.1))
            .arg("-d")
            .arg(rootfs)
            .arg(image)
            .arg(format!("{}k", geometry.bytes / 1024))
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.failed(&packing(rootfs), format!("cannot run it: {e}")))?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stderr).into_owned()
                + &String::from_utf8_lossy(&output.stdout);
            if text.contains("No space left on device") {
                return Err(no_space());
            }
            // One line: the error is printed as one.
            let said: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let output = format!("{} ({})", said.join("; "), output.status);
            return Err(self.failed(&packing(rootfs), output));
        }
        fs::File::open(image)
            .and_then(|f| f.sync_all())
            .map_err(|e| cache_error("cannot flush the image to disk", e))
    }

    fn failed(&self, doing: &str, output: String) -> RootfsImageError {
        RootfsImageError::MkfsFailed {
            mkfs: self.path.clone(),
            doing: doing.to_string(),
            output,
        }
    }
}

fn packing(rootfs: &Path) -> String {
    format!("packing {rootfs:?}")
}

/// A `vmm run` killed while packing takes mkfs with it, rather than leave it writing an
/// image nobody will use (which the next run sweeps away) for minutes.
fn dies_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, and only makes system
    // calls (prctl, getppid, _exit), which are async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the prctl: nobody will send the signal.
            if libc::getppid() as u32 != parent {
                libc::_exit(exit_code::FAILED.into());
            }
            Ok(())
        });
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_asked_once_per_binary_and_again_when_the_binary_changes() {
        let dir = std::env::temp_dir().join(format!("vmm-mkfs-memo-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let calls = dir.join("calls");
        let script = dir.join("mkfs.ext4");
        let write_script = |version: &str| {
            fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho run >>{}\necho '{version}' >&2\n",
                    calls.display()
                ),
            )
            .unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        };
        write_script("mke2fs 9.1 (fake)");
        let mkfs = Mkfs {
            path: script.clone(),
        };
        let runs = || {
            fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .count()
        };
        assert_eq!(mkfs.version_in(&dir).unwrap(), "mke2fs 9.1 (fake)");
        assert_eq!(mkfs.version_in(&dir).unwrap(), "mke2fs 9.1 (fake)");
        assert_eq!(runs(), 1, "the second lookup ran mkfs again");
        // An upgrade: a new file in its place (another inode, size and time).
        fs::remove_file(&script).unwrap();
        write_script("mke2fs 9.22 (fake, upgraded)");
        assert_eq!(
            mkfs.version_in(&dir).unwrap(),
            "mke2fs 9.22 (fake, upgraded)"
        );
        assert_eq!(runs(), 2);
        let _ = fs::remove_dir_all(&dir);
    }
}
