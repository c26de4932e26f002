//! The workload's rootfs directory as a read-only ext4 image, for a microVM's virtio-blk
//! disk. `mkfs.ext4 -d` packs it without mounting anything or needing root; the image is
//! cached under a key of everything that shapes it (the tree's metadata, the mke2fs
//! version, our options), so an unchanged rootfs boots its next VM without packing again.
//!
//! The cache is safe to share between concurrent `vmm run`s: one per key packs while the
//! others wait on `<key>.lock` (flock), images appear by an atomic rename, a killed run's
//! half-written temp file is swept by the next run, and the cache is bounded by evicting
//! the least recently used images that nobody holds locked.

pub(super) mod cache;
mod mkfs;
mod size;
mod tree;

#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use cache::{Bound, KeyLock};
use mkfs::Mkfs;

/// Bump when the packing recipe changes (mkfs options, what the fingerprint covers, the
/// size estimate), so images made the old way are not reused.
const RECIPE: u32 = 1;

/// The cache keeps at most this many images, and at most this many bytes on disk.
const CACHE_BOUND: Bound = Bound {
    images: 8,
    bytes: 4 << 30,
};

/// How many times the tree is keyed before giving up on one that keeps changing (while
/// mkfs reads it, or too recently to key it).
const PACK_ATTEMPTS: u32 = 3;

/// How long a tree must have been left alone before it is packed. The kernel stamps
/// mtime and ctime from a clock that ticks once a jiffy (1-10 ms): a file written twice
/// within one tick looks unchanged, so a tree is keyed only once its last change is older
/// than a few ticks, and any later write then shows as a later ctime.
const SETTLE: Duration = Duration::from_millis(30);

#[derive(Debug, thiserror::Error)]
pub enum RootfsImageError {
    #[error("rootfs {0:?} does not exist")]
    MissingRootfs(PathBuf),
    #[error("rootfs {0:?} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot read rootfs {path:?}")]
    ReadRootfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "mkfs.ext4 not found (looked in PATH, /usr/sbin and /sbin): apt-get install e2fsprogs"
    )]
    MkfsNotFound,
    #[error("mkfs.ext4 ({mkfs:?}) failed {doing}: {output}")]
    MkfsFailed {
        mkfs: PathBuf,
        doing: String,
        output: String,
    },
    #[error(
        "no space left in {dir:?} for the image of {rootfs:?} (up to {mib} MiB): free some, \
         or point XDG_CACHE_HOME at a roomier place"
    )]
    CacheFull {
        dir: PathBuf,
        rootfs: PathBuf,
        mib: u64,
    },
    #[error("rootfs {0:?} kept changing while it was being packed; retry when it is quiet")]
    RootfsChanging(PathBuf),
    #[error("image cache {path:?}: {action}")]
    Cache {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl RootfsImageError {
    /// True when the caller gave a rootfs that cannot work (exit status 2); the rest are
    /// failures of the host (exit status 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::MissingRootfs(_) | Self::NotADirectory(_))
    }

    fn cache(path: &Path, action: &'static str, source: io::Error) -> Self {
        Self::Cache {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

/// Where the images live: `${XDG_CACHE_HOME:-$HOME/.cache}/vmm/rootfs`.
pub fn cache_dir() -> PathBuf {
    super::images::vmm_cache_root().join("rootfs")
}

/// The read-only ext4 image of `rootfs` (a directory), from the cache or packed now.
/// `progress` hears when packing starts and ends; a cache hit is silent.
pub fn image_for(rootfs: &Path, progress: &dyn Fn(&str)) -> Result<PathBuf, RootfsImageError> {
    image_in(&cache_dir(), rootfs, progress)
}

/// [`image_for`] with the cache in `cache`: tests give each their own.
fn image_in(
    cache: &Path,
    rootfs: &Path,
    progress: &dyn Fn(&str),
) -> Result<PathBuf, RootfsImageError> {
    let root = canonical_dir(rootfs)?;
    let mkfs = Mkfs::find()?;
    // 0700: the images hold copies of files that may be readable only by their owner.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache)
        .map_err(|e| RootfsImageError::cache(cache, "cannot create the directory", e))?;
    let packer = Packer {
        cache,
        mkfs_version: mkfs.version_in(cache)?,
        mkfs,
        root,
    };
    cache::sweep(cache);

    for _ in 0..PACK_ATTEMPTS {
        let tree = tree::scan(&packer.root)?;
        let key = packer.key(&tree);
        let image = cache::image_path(cache, &key);
        let lock = KeyLock::acquire(cache, &key)
            .map_err(|e| RootfsImageError::cache(cache, "cannot lock an image", e))?;
        if image.exists() {
            cache::touch(&image)
                .map_err(|e| RootfsImageError::cache(&image, "cannot mark as used", e))?;
            return Ok(image);
        }
        if let Some(wait) = unsettled_for(tree.last_change) {
            drop(lock);
            std::thread::sleep(wait);
            continue;
        }
        if packer.pack(&tree, &key, &image, progress)? {
            cache::evict(cache, &image, CACHE_BOUND);
            return Ok(image);
        }
    }
    Err(RootfsImageError::RootfsChanging(packer.root))
}

/// What packing one rootfs into one cache needs.
struct Packer<'a> {
    cache: &'a Path,
    /// The rootfs, canonical.
    root: PathBuf,
    mkfs: Mkfs,
    mkfs_version: String,
}

impl Packer<'_> {
    fn key(&self, tree: &tree::Tree) -> String {
        key_of(&self.root, &self.mkfs_version, tree)
    }

    /// Packs `tree`, keyed `key`, into `image`; the caller holds the key's lock. False
    /// when the tree changed while mkfs read it: then nothing is cached.
    fn pack(
        &self,
        tree: &tree::Tree,
        key: &str,
        image: &Path,
        progress: &dyn Fn(&str),
    ) -> Result<bool, RootfsImageError> {
        let files = tree.entries.saturating_sub(1);
        progress(&format!(
            "packing {} ({}, {files} file{}) into an ext4 image…",
            self.root.display(),
            mib_text(tree.bytes),
            if files == 1 { "" } else { "s" },
        ));
        let started = Instant::now();
        let temp = cache::temp_path(self.cache, key);
        // A temp file of this name is a dead run's: its key's lock is ours now.
        let _ = fs::remove_file(&temp);
        let geometry = size::geometry(&tree.usage);
        let packed = self
            .mkfs
            .pack(&self.root, tree.owner, &geometry, &temp)
            .and_then(|()| self.publish_if_unchanged(key, &temp, image));
        if let Ok(true) = packed {
            progress(&format!(
                "packed {} in {:.1} s ({} image)",
                self.root.display(),
                started.elapsed().as_secs_f64(),
                mib_text(geometry.bytes),
            ));
        } else {
            let _ = fs::remove_file(&temp);
        }
        packed
    }

    /// Renames `temp` to `image` if the tree still has `key`: an image is kept only under
    /// a key the tree had both before and after mkfs read it, or a file changed mid-pack
    /// would hide behind the old key for good.
    fn publish_if_unchanged(
        &self,
        key: &str,
        temp: &Path,
        image: &Path,
    ) -> Result<bool, RootfsImageError> {
        if self.key(&tree::scan(&self.root)?) != key {
            return Ok(false);
        }
        fs::rename(temp, image).map_err(|e| {
            RootfsImageError::cache(image, "cannot move the packed image into place", e)
        })?;
        Ok(true)
    }
}

/// The cache key: SHA-256 (the `sha2` crate) rather than std's hashers, whose output is
/// not promised to stay the same across Rust releases, and a key must outlive the binary
/// that made it. 128 bits of it, in hex, name the image.
fn key_of(root: &Path, mkfs_version: &str, tree: &tree::Tree) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE.to_le_bytes());
    tree::put_bytes(&mut h, mkfs_version.as_bytes());
    tree::put_bytes(&mut h, root.as_os_str().as_encoded_bytes());
    h.update(tree.fingerprint);
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How much longer a tree last changed at `last_change` must be left alone, if at all. A
/// change in the future (the clock was set back since) shows anyway when made again.
fn unsettled_for(last_change: SystemTime) -> Option<Duration> {
    let age = SystemTime::now().duration_since(last_change).ok()?;
    SETTLE.checked_sub(age).filter(|wait| !wait.is_zero())
}

/// `rootfs` as a canonical absolute path, when it is a directory.
fn canonical_dir(rootfs: &Path) -> Result<PathBuf, RootfsImageError> {
    let root = fs::canonicalize(rootfs).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => RootfsImageError::MissingRootfs(rootfs.to_path_buf()),
        _ => RootfsImageError::ReadRootfs {
            path: rootfs.to_path_buf(),
            source: e,
        },
    })?;
    let meta = fs::metadata(&root).map_err(|e| RootfsImageError::ReadRootfs {
        path: root.clone(),
        source: e,
    })?;
    if !meta.is_dir() {
        return Err(RootfsImageError::NotADirectory(rootfs.to_path_buf()));
    }
    Ok(root)
}

fn mib_text(bytes: u64) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    if mib < 10.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{mib:.0} MiB")
    }
}
