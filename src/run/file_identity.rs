//! What the run's caches key a file by without reading it: its identity.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The file at `path` as the caches know it: canonical path, size, modification time
/// (to the nanosecond), device and inode. Replacing or rewriting the file changes it;
/// reading a kernel or mkfs.ext4 to hash it would cost more than what the cache saves.
pub fn file_identity(path: &Path) -> io::Result<String> {
    let path = fs::canonicalize(path)?;
    let meta = fs::metadata(&path)?;
    Ok(format!(
        "{} {} {}.{} {}:{}",
        path.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.dev(),
        meta.ino()
    ))
}
