//! The guest kernel and the agent initramfs of `vmm run`. `--kernel`/`--initrd` win;
//! otherwise the defaults that `resources/build-images.sh` points at after building them:
//! `images_dir()/default/vmlinux` and `default/agent-initramfs.cpio.gz`, symlinks into its
//! cache of keyed builds.

use std::fs;
use std::path::{Path, PathBuf};

/// The defaults, relative to [`images_dir`]; build-images.sh makes the same names.
const DEFAULT_KERNEL: &str = "default/vmlinux";
const DEFAULT_INITRD: &str = "default/agent-initramfs.cpio.gz";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImages {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Every case is bad input (exit status 2): the message names the path and says what to
/// build or pass instead.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("--{option} {path:?} does not exist or is not a file")]
    GivenMissing { option: &'static str, path: PathBuf },
    // build-images.sh --kernel builds the agent initramfs too, so one command fixes both.
    #[error(
        "no microVM kernel at {path:?}: build it (~10-25 min on 2 cores) with \
         `resources/build-images.sh --kernel` in the vmm source tree, or pass --kernel"
    )]
    NoDefaultKernel { path: PathBuf },
    #[error(
        "no agent initramfs at {path:?}: build it (seconds) with `resources/build-images.sh` \
         in the vmm source tree, or pass --initrd"
    )]
    NoDefaultInitrd { path: PathBuf },
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/vmm`: the root of vmm's caches, computed as the shell
/// scripts do (an empty XDG_CACHE_HOME counts as unset).
pub fn vmm_cache_root() -> PathBuf {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::home_dir()
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(".cache"),
    };
    base.join("vmm")
}

/// Where build-images.sh caches the guest images: `${XDG_CACHE_HOME:-$HOME/.cache}/vmm/images`.
pub fn images_dir() -> PathBuf {
    vmm_cache_root().join("images")
}

/// --kernel/--initrd given win; otherwise the defaults under images_dir()/default/.
pub fn resolve(kernel: Option<&Path>, initrd: Option<&Path>) -> Result<GuestImages, ImagesError> {
    resolve_in(&images_dir(), kernel, initrd)
}

/// [`resolve`] with the images in `dir`. The kernel is looked at first: its build command
/// makes the initramfs as well.
fn resolve_in(
    dir: &Path,
    kernel: Option<&Path>,
    initrd: Option<&Path>,
) -> Result<GuestImages, ImagesError> {
    let kernel = match kernel {
        Some(path) => given(path, "kernel")?,
        None => default(dir, DEFAULT_KERNEL).ok_or_else(|| ImagesError::NoDefaultKernel {
            path: dir.join(DEFAULT_KERNEL),
        })?,
    };
    let initrd = match initrd {
        Some(path) => given(path, "initrd")?,
        None => default(dir, DEFAULT_INITRD).ok_or_else(|| ImagesError::NoDefaultInitrd {
            path: dir.join(DEFAULT_INITRD),
        })?,
    };
    Ok(GuestImages { kernel, initrd })
}

/// A path the user gave, as given, when it is a file (symlinks followed).
fn given(path: &Path, option: &'static str) -> Result<PathBuf, ImagesError> {
    if fs::metadata(path).is_ok_and(|m| m.is_file()) {
        Ok(path.to_path_buf())
    } else {
        Err(ImagesError::GivenMissing {
            option,
            path: path.to_path_buf(),
        })
    }
}

/// A default, resolved to the keyed build its symlink points at, so that a rebuild that
/// moves the link while the VM starts cannot mix two builds' files; `None` when the link
/// is missing or dangling.
fn default(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = fs::canonicalize(dir.join(name)).ok()?;
    fs::metadata(&path)
        .is_ok_and(|m| m.is_file())
        .then_some(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A fresh images directory, laid out as build-images.sh leaves it; removed on drop.
    struct Layout(PathBuf);

    impl std::ops::Deref for Layout {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Layout {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn layout(name: &str, kernel: bool, initrd: bool) -> Layout {
        let dir = std::env::temp_dir().join(format!("vmm-images-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("default")).unwrap();
        if kernel {
            fs::create_dir_all(dir.join("kernel-k1")).unwrap();
            fs::write(dir.join("kernel-k1/vmlinux"), b"ELF").unwrap();
            symlink("../kernel-k1/vmlinux", dir.join(DEFAULT_KERNEL)).unwrap();
        }
        if initrd {
            fs::create_dir_all(dir.join("agent-a1")).unwrap();
            fs::write(dir.join("agent-a1/initramfs.cpio.gz"), b"cpio").unwrap();
            symlink("../agent-a1/initramfs.cpio.gz", dir.join(DEFAULT_INITRD)).unwrap();
        }
        Layout(dir)
    }

    #[test]
    fn defaults_resolve_to_the_keyed_builds_they_point_at() {
        let dir = layout("defaults", true, true);
        let images = resolve_in(&dir, None, None).unwrap();
        let real = fs::canonicalize(&*dir).unwrap();
        assert_eq!(images.kernel, real.join("kernel-k1/vmlinux"));
        assert_eq!(images.initrd, real.join("agent-a1/initramfs.cpio.gz"));
    }

    #[test]
    fn given_paths_win_over_the_defaults() {
        let dir = layout("given", true, true);
        let mine = dir.join("my-vmlinux");
        fs::write(&mine, b"ELF").unwrap();
        let images = resolve_in(&dir, Some(&mine), None).unwrap();
        assert_eq!(images.kernel, mine);
        assert!(images.initrd.ends_with("agent-a1/initramfs.cpio.gz"));
    }

    #[test]
    fn missing_default_kernel_names_the_path_and_the_kernel_build_command() {
        let dir = layout("no-kernel", false, true);
        let err = resolve_in(&dir, None, None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.join(DEFAULT_KERNEL).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("resources/build-images.sh --kernel"), "{msg}");
    }

    #[test]
    fn missing_default_initrd_names_the_path_and_the_build_command() {
        let dir = layout("no-initrd", true, false);
        let err = resolve_in(&dir, None, None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.join(DEFAULT_INITRD).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("`resources/build-images.sh`"), "{msg}");
    }

    #[test]
    fn dangling_default_link_counts_as_missing() {
        let dir = layout("dangling", true, true);
        fs::remove_file(dir.join("agent-a1/initramfs.cpio.gz")).unwrap();
        let err = resolve_in(&dir, None, None).unwrap_err();
        assert!(matches!(err, ImagesError::NoDefaultInitrd { .. }), "{err}");
    }

    #[test]
    fn given_initrd_that_does_not_exist_is_bad_input_naming_it() {
        let dir = layout("given-missing", true, true);
        let absent = dir.join("absent.cpio.gz");
        let err = resolve_in(&dir, None, Some(&absent)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--initrd") && msg.contains("absent.cpio.gz"),
            "{msg}"
        );
    }

    #[test]
    fn given_kernel_that_is_a_directory_is_bad_input() {
        let dir = layout("given-dir", true, true);
        let err = resolve_in(&dir, Some(&dir), None).unwrap_err();
        assert!(
            matches!(
                err,
                ImagesError::GivenMissing {
                    option: "kernel",
                    ..
                }
            ),
            "{err}"
        );
    }
}
