//! The warm snapshots of `vmm run --from-snapshot`: a guest booted once, paused while its
//! agent waits for a connection, and kept under `${XDG_CACHE_HOME:-$HOME/.cache}/vmm/snapshots`:
//!
//! - `<key>/state`, `<key>/mem`: one snapshot, published complete by renaming its directory;
//! - `<key>.lock`: flock'ed by whoever looks up, makes or removes that key (the rootfs
//!   image cache's lock, [`KeyLock`]);
//! - `.tmp-<key>-<pid>/`: a snapshot being made by the holder of `<key>.lock`;
//! - `stub.img`: the placeholder disk of every snapshot's VM, which a restored VM swaps
//!   for the workload's image (as firecracker-containerd's stub drives are swapped).
//!
//! The key covers everything the snapshot depends on: this vmm binary (its state format),
//! the kernel and the agent initramfs, the VM's size and command line.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::file_identity::file_identity;

pub(super) use super::rootfs_image::cache::KeyLock;

/// Bump when what a warm snapshot holds changes (the VM's devices, the agent's state at
/// the pause), so that snapshots made the old way are not restored.
const RECIPE: u32 = 1;
/// The most snapshots kept: each holds a guest's RAM (sparse, but up to --vm-mem).
const KEEP: usize = 4;
/// The placeholder disk's size: one page of zeros, no file system.
pub const STUB_BYTES: u64 = 4096;
const STUB_NAME: &str = "stub.img";
const TEMP_PREFIX: &str = ".tmp-";

/// What a warm snapshot is made of.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub vmm: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub mem_mib: u64,
    pub cpus: u16,
    pub cmdline: &'a str,
    /// The VM has a NIC (`--net link`).
    pub nic: bool,
}

/// One snapshot's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dir: PathBuf,
    pub state: PathBuf,
    pub mem: PathBuf,
}

impl Entry {
    fn in_dir(dir: PathBuf) -> Self {
        Entry {
            state: dir.join("state"),
            mem: dir.join("mem"),
            dir,
        }
    }

    pub fn exists(&self) -> bool {
        self.state.is_file() && self.mem.is_file()
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/vmm/snapshots`.
pub fn cache_dir() -> PathBuf {
    super::images::vmm_cache_root().join("snapshots")
}

/// Creates the cache directory (private: a snapshot holds a guest's memory).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The key of a snapshot made of `inputs`: a hash of each file's identity (path, size,
/// modification time, inode: a rebuilt kernel is another kernel) and of the VM's shape.
pub fn key(inputs: &Inputs<'_>) -> io::Result<String> {
    let mut hash = Sha256::new();
    hash.update(format!("recipe {RECIPE}\n"));
    for (what, path) in [
        ("vmm", inputs.vmm),
        ("kernel", inputs.kernel),
        ("initrd", inputs.initrd),
    ] {
        hash.update(format!("{what} {}\n", file_identity(path)?));
    }
    hash.update(format!(
        "mem {} cpus {} cmdline {} nic {}\n",
        inputs.mem_mib, inputs.cpus, inputs.cmdline, inputs.nic
    ));
    let digest = hash.finalize();
    Ok(digest[..12].iter().map(|b| format!("{b:02x}")).collect())
}

/// Where the snapshot of `key` is, once made.
pub fn entry(dir: &Path, key: &str) -> Entry {
    Entry::in_dir(dir.join(key))
}

/// Where the holder of `key`'s lock makes its snapshot: a new, empty directory.
pub fn temp_entry(dir: &Path, key: &str) -> io::Result<Entry> {
    let temp = dir.join(format!("{TEMP_PREFIX}{key}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&temp);
    fs::DirBuilder::new().mode(0o700).create(&temp)?;
    Ok(Entry::in_dir(temp))
}

/// Publishes the snapshot made in `temp` as `key`'s (the caller holds its lock).
pub fn publish(dir: &Path, key: &str, temp: &Entry) -> io::Result<Entry> {
    let entry = entry(dir, key);
    let _ = fs::remove_dir_all(&entry.dir);
    fs::rename(&temp.dir, &entry.dir)?;
    Ok(entry)
}

/// Removes `key`'s snapshot (one that would not restore; the caller holds its lock).
pub fn discard(dir: &Path, key: &str) {
    let _ = fs::remove_dir_all(entry(dir, key).dir);
}

/// Marks `key`'s snapshot as just used: eviction goes by modification time.
pub fn touch(entry: &Entry) {
    if let Ok(file) = fs::File::open(&entry.state) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// The placeholder disk: [`STUB_BYTES`] of zeros, made once (by a rename, so a reader
/// never sees it short).
pub fn stub(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join(STUB_NAME);
    if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == STUB_BYTES) {
        return Ok(path);
    }
    let temp = dir.join(format!("{TEMP_PREFIX}{STUB_NAME}-{}", std::process::id()));
    fs::write(&temp, [0u8; STUB_BYTES as usize])?;
    fs::rename(&temp, &path)?;
    Ok(path)
}

/// Keeps the [`KEEP`] most recently used snapshots (and `spare`, the one in use); older
/// ones go unless someone holds their lock. Returns the removed keys.
pub fn evict(dir: &Path, spare: &str) -> Vec<String> {
    let mut snapshots: Vec<(SystemTime, String)> = keys(dir)
        .into_iter()
        .filter(|key| key != spare)
        .filter_map(|key| {
            let state = entry(dir, &key).state;
            Some((fs::metadata(state).ok()?.modified().ok()?, key))
        })
        .collect();
    // Newest first; equal times by key, so that the order does not depend on readdir.
    snapshots.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut removed = Vec::new();
    for (_, key) in snapshots.into_iter().skip(KEEP.saturating_sub(1)) {
        if let Ok(Some(_lock)) = KeyLock::try_acquire(dir, &key) {
            discard(dir, &key);
            let _ = fs::remove_file(dir.join(format!("{key}.lock")));
            removed.push(key);
        }
    }
    removed
}

/// Removes snapshots left half made by runs that died: temp directories whose key nobody
/// holds locked.
pub fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for name in entries.flatten().map(|e| e.file_name()) {
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let Some((key, _pid)) = rest.rsplit_once('-') else {
            continue;
        };
        if key == STUB_NAME {
            continue;
        }
        if let Ok(Some(_lock)) = KeyLock::try_acquire(dir, key) {
            let _ = fs::remove_dir_all(dir.join(&name));
        }
    }
}

/// The keys of the published snapshots in `dir`.
fn keys(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with(TEMP_PREFIX))
        .collect()
}

#[cfg(test)]
#[path = "warm_snapshot_tests.rs"]
mod tests;
