//! One walk over the rootfs tree, as `mkfs.ext4 -d` will read it (symlinks not followed):
//! the fingerprint of every entry's metadata, for the cache key, and the space the image
//! needs. File contents are not read: a changed file shows in its size, mtime or ctime.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::size::Usage;
use super::RootfsImageError;

pub struct Tree {
    /// SHA-256 over every entry's relative path and metadata, in a fixed order.
    pub fingerprint: [u8; 32],
    /// Names in the tree, the root included.
    pub entries: u64,
    /// The sizes of its regular files, a hard-linked file once.
    pub bytes: u64,
    /// The owner of the root directory.
    pub owner: (u32, u32),
    /// The latest ctime in the tree: when it last changed.
    pub last_change: SystemTime,
    pub usage: Usage,
}

/// Walks `root` (a canonical directory path) depth first, each directory's entries sorted
/// by name, so the same tree always hashes the same.
pub fn scan(root: &Path) -> Result<Tree, RootfsImageError> {
    let root_meta = lstat(root)?;
    let mut walk = Walk {
        hasher: Sha256::new(),
        usage: Usage::default(),
        links: HashMap::new(),
        entries: 0,
        bytes: 0,
        last_change: SystemTime::UNIX_EPOCH,
    };
    walk.record(Path::new(""), root, &root_meta)?;
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let abs = root.join(&rel);
        let mut names: Vec<OsString> = fs::read_dir(&abs)
            .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
            .map_err(|e| read_error(&abs, e))?;
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        walk.usage.add_dir(names.iter().map(|n| n.len()));
        let mut subdirs = Vec::new();
        for name in names {
            let child_rel = rel.join(&name);
            let child_abs = abs.join(&name);
            let meta = lstat(&child_abs)?;
            walk.record(&child_rel, &child_abs, &meta)?;
            if meta.is_dir() {
                subdirs.push(child_rel);
            }
        }
        // Reversed onto the stack, so they are visited in name order.
        dirs.extend(subdirs.into_iter().rev());
    }
    Ok(Tree {
        fingerprint: walk.hasher.finalize().into(),
        entries: walk.entries,
        bytes: walk.bytes,
        owner: (root_meta.uid(), root_meta.gid()),
        last_change: walk.last_change,
        usage: walk.usage,
    })
}

struct Walk {
    hasher: Sha256,
    usage: Usage,
    /// (dev, ino) of multiply linked files seen so far, with the first name seen.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
    bytes: u64,
    last_change: SystemTime,
}

impl Walk {
    /// Hashes one entry and accounts for the space its inode takes in the image.
    fn record(
        &mut self,
        rel: &Path,
        abs: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), RootfsImageError> {
        let h = &mut self.hasher;
        self.entries += 1;
        put_bytes(h, rel.as_os_str().as_bytes());
        for value in [
            u64::from(meta.mode()),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            // ctime cannot be set from user space: it catches a rewrite whose mtime was
            // put back (cp -p, rsync -a, tar), and xattr changes.
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ] {
            h.update(value.to_le_bytes());
        }

        if let Ok(secs) = u64::try_from(meta.ctime()) {
            let ctime = SystemTime::UNIX_EPOCH + Duration::new(secs, meta.ctime_nsec() as u32);
            self.last_change = self.last_change.max(ctime);
        }

        let kind = meta.file_type();
        // Another name of an inode already recorded: mkfs -d links it too (one inode).
        if !kind.is_dir() && meta.nlink() > 1 {
            let id = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&id) {
                h.update(b"L");
                put_bytes(h, first.as_os_str().as_bytes());
                return Ok(());
            }
            self.links.insert(id, rel.to_path_buf());
        }

        if kind.is_file() {
            self.usage.add_file(meta.size());
            self.bytes += meta.size();
        } else if kind.is_symlink() {
            let target = fs::read_link(abs).map_err(|e| read_error(abs, e))?;
            put_bytes(h, target.as_os_str().as_bytes());
            self.usage.add_symlink(target.as_os_str().len());
        } else if kind.is_char_device() || kind.is_block_device() {
            h.update(meta.rdev().to_le_bytes());
            self.usage.add_special();
        } else if !kind.is_dir() {
            // FIFOs and sockets: an inode and nothing else. A directory is accounted for
            // when its entries are read (`Usage::add_dir`).
            self.usage.add_special();
        }
        if has_xattrs(abs) {
            self.usage.add_xattr_block();
        }
        Ok(())
    }
}

/// Length-prefixed, so that consecutive fields cannot run into each other.
pub fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn lstat(path: &Path) -> Result<fs::Metadata, RootfsImageError> {
    fs::symlink_metadata(path).map_err(|e| read_error(path, e))
}

fn read_error(path: &Path, source: std::io::Error) -> RootfsImageError {
    RootfsImageError::ReadRootfs {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `path` (not followed) has extended attributes, which mkfs -d copies and which
/// may need a block of their own when they do not fit in the inode.
fn has_xattrs(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string; with a null buffer of size 0,
    // llistxattr only returns the size the list would need and writes nothing.
    let len = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    // -1 (e.g. ENOTSUP: a filesystem without xattrs) counts as none.
    len > 0
}
