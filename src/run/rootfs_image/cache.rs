//! The image cache directory, shared by concurrent `vmm run`s. Its files:
//!
//! - `<key>.ext4`: an image, published complete by a rename;
//! - `<key>.lock`: flock'ed, exclusively, by whoever looks up, packs or removes that key;
//! - `.tmp-<key>-<pid>.ext4`: an image being packed, by the holder of `<key>.lock`.
//!
//! So a temp file whose key nobody holds locked belongs to a run that died, and an image
//! whose key somebody holds locked is in use and must stay.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const IMAGE_SUFFIX: &str = ".ext4";
const LOCK_SUFFIX: &str = ".lock";
const TEMP_PREFIX: &str = ".tmp-";

/// The most the cache keeps: the most recently used images that fit both bounds stay.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub images: usize,
    /// Bytes on disk (allocated blocks: the images are sparse).
    pub bytes: u64,
}

/// The exclusive lock on one key, released when dropped (the file is closed).
pub struct KeyLock {
    _file: File,
}

impl KeyLock {
    /// Waits until no one else holds `key`.
    pub fn acquire(dir: &Path, key: &str) -> io::Result<Self> {
        // A blocking lock is taken or an error, so this returns on the first pass.
        loop {
            if let Some(lock) = Self::lock(dir, key, true)? {
                return Ok(lock);
            }
        }
    }

    /// `None` at once when someone else holds `key`.
    pub fn try_acquire(dir: &Path, key: &str) -> io::Result<Option<Self>> {
        Self::lock(dir, key, false)
    }

    fn lock(dir: &Path, key: &str, wait: bool) -> io::Result<Option<Self>> {
        let path = dir.join(format!("{key}{LOCK_SUFFIX}"));
        loop {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            if !lock_file(&file, wait)? {
                return Ok(None);
            }
            // Sweeping and eviction remove a lock file while holding it, and a lock won
            // on a removed file guards nothing: keep it only if the path still names it.
            let ours = file.metadata()?;
            match fs::metadata(&path) {
                Ok(now) if (now.dev(), now.ino()) == (ours.dev(), ours.ino()) => {
                    return Ok(Some(Self { _file: file }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// flock(LOCK_EX), blocking or not; false when `wait` is off and the lock is taken.
fn lock_file(file: &File, wait: bool) -> io::Result<bool> {
    loop {
        let result = if wait {
            file.lock()
        } else {
            match file.try_lock() {
                Ok(()) => Ok(()),
                Err(fs::TryLockError::WouldBlock) => return Ok(false),
                Err(fs::TryLockError::Error(e)) => Err(e),
            }
        };
        match result {
            Ok(()) => return Ok(true),
            // A signal handler installed without SA_RESTART interrupts a waiting flock.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Where the holder of `key`'s lock packs its image.
pub fn temp_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!(
        "{TEMP_PREFIX}{key}-{}{IMAGE_SUFFIX}",
        std::process::id()
    ))
}

/// Marks `image` as just used: eviction goes by modification time.
pub fn touch(image: &Path) -> io::Result<()> {
    File::open(image)?.set_modified(SystemTime::now())
}

/// Removes what runs that died left behind: temp files, and lock files without an image.
/// Best effort: a file that cannot be removed now is tried again by the next run.
pub fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for name in entries.flatten().map(|e| e.file_name()) {
        let Some(name) = name.to_str() else { continue };
        let (key, temp) = if let Some(rest) = name.strip_prefix(TEMP_PREFIX) {
            let Some((key, _pid)) = rest.split_once('-') else {
                continue;
            };
            (key, Some(dir.join(name)))
        } else if let Some(key) = name.strip_suffix(LOCK_SUFFIX) {
            (key, None)
        } else {
            continue;
        };
        if let Ok(Some(_lock)) = KeyLock::try_acquire(dir, key) {
            if let Some(temp) = temp {
                let _ = fs::remove_file(temp);
            }
            if !image_path(dir, key).exists() {
                let _ = fs::remove_file(dir.join(format!("{key}{LOCK_SUFFIX}")));
            }
        }
    }
}

/// Keeps the cache within `bound`: `spare` (the image just used) always stays, then the
/// most recently used ones while both bounds hold; the older ones are removed unless
/// someone holds their lock. Returns the removed images.
pub fn evict(dir: &Path, spare: &Path, bound: Bound) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut images: Vec<(SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(IMAGE_SUFFIX) && !name.starts_with(TEMP_PREFIX)
        })
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.blocks() * 512, e.path()))
        })
        .collect();
    // Newest first; equal times by name, so that the order does not depend on readdir.
    images.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));

    let mut kept = 1;
    let mut kept_bytes = fs::metadata(spare).map_or(0, |m| m.blocks() * 512);
    let mut full = false;
    let mut removed = Vec::new();
    for (_, bytes, path) in images.into_iter().filter(|(_, _, p)| p != spare) {
        if !full && kept < bound.images && kept_bytes + bytes <= bound.bytes {
            kept += 1;
            kept_bytes += bytes;
            continue;
        }
        // Past the first image that does not fit, every older one goes too.
        full = true;
        let Some(key) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(IMAGE_SUFFIX))
        else {
            continue;
        };
        if let Ok(Some(_lock)) = KeyLock::try_acquire(dir, key) {
            if fs::remove_file(&path).is_ok() {
                let _ = fs::remove_file(dir.join(format!("{key}{LOCK_SUFFIX}")));
                removed.push(path);
            }
        }
    }
    removed
}

/// Where the image of `key` is, once packed.
pub fn image_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}{IMAGE_SUFFIX}"))
}
