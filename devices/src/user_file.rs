//! Opening a file the user named (a kernel, an initrd, a config file, a disk image)
//! without hanging on what is not a file.
//!
//! A plain `open(2)` of a FIFO for reading waits for a writer, for ever, and a directory
//! opens read-only without complaint (a disk image of 2^54 sectors). So the file is opened
//! with O_NONBLOCK, which makes opening a FIFO return at once, its type is read from the
//! open descriptor (no window in which the path could be swapped), anything the caller
//! does not accept is refused with a message saying what it is, and O_NONBLOCK is cleared
//! again so that the file reads like any other. Here rather than in the VMM because the
//! disk is opened by its device model; the VMM uses the same helper for its own files.

use std::fs::{File, FileType, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a user-named file may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// A regular file: a kernel, an initrd, a config file.
    RegularFile,
    /// A regular file or a host block device: a disk image.
    RegularFileOrBlockDevice,
    /// A regular file or a pipe (a FIFO): what one program hands another, written in
    /// full and closed by the time it is read (`vmm run --exec-process` from vmm-runc).
    /// A FIFO without a writer reads as empty rather than blocking.
    RegularFileOrPipe,
}

impl Allowed {
    fn admits(self, kind: FileType) -> bool {
        match self {
            Allowed::RegularFile => kind.is_file(),
            Allowed::RegularFileOrBlockDevice => kind.is_file() || kind.is_block_device(),
            Allowed::RegularFileOrPipe => kind.is_file() || kind.is_fifo(),
        }
    }

    fn wanted(self) -> &'static str {
        match self {
            Allowed::RegularFile => "a regular file",
            Allowed::RegularFileOrBlockDevice => "a regular file or a block device",
            Allowed::RegularFileOrPipe => "a regular file or a pipe",
        }
    }
}

/// Why a user-named file was not opened. The text starts with the path, so a caller
/// prefixes the file's role: "kernel image" + " \"/tmp/k\" is a FIFO, not a regular file".
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path:?} is {kind}, not {wanted}")]
    WrongKind {
        path: PathBuf,
        kind: &'static str,
        wanted: &'static str,
    },
}

/// Opens `path` for reading (and writing, when `write`), if it is what `allowed` admits.
/// Never blocks on a FIFO or a device that waits in `open`.
pub fn open(path: &Path, write: bool, allowed: Allowed) -> Result<File, OpenError> {
    let io_err = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let wrong_kind = |kind| OpenError::WrongKind {
        path: path.to_path_buf(),
        kind: describe(kind),
        wanted: allowed.wanted(),
    };
    // O_NOCTTY: a terminal named by mistake must not become the VMM's controlling one.
    let opened = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        // A directory opened for writing (EISDIR) or a socket (ENXIO) fails to open: say
        // what it is rather than pass on the errno's text. stat does not block.
        Err(e) => {
            return Err(match std::fs::metadata(path) {
                Ok(meta) if !allowed.admits(meta.file_type()) => wrong_kind(meta.file_type()),
                _ => io_err(e),
            })
        }
    };
    let kind = file.metadata().map_err(io_err)?.file_type();
    if !allowed.admits(kind) {
        return Err(wrong_kind(kind));
    }
    clear_nonblock(&file).map_err(io_err)?;
    Ok(file)
}

/// The kind of file `kind` is, for messages.
fn describe(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a file"
    }
}

/// Clears O_NONBLOCK, so that reads of the file wait as they would after a plain open.
fn clear_nonblock(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL takes no argument and only reads the flags of `fd`, which `file`
    // keeps open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL takes an int and touches no memory; `fd` is open (see above).
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;

    use vmm_sys_util::tempdir::TempDir;

    use super::*;

    fn mkfifo(path: &Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn fifo_is_refused_without_waiting_for_a_writer() {
        let dir = TempDir::new().unwrap();
        let fifo = dir.as_path().join("fifo");
        mkfifo(&fifo);
        for write in [false, true] {
            let err = open(&fifo, write, Allowed::RegularFile).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("{fifo:?} is a FIFO, not a regular file")
            );
        }
    }

    #[test]
    fn directory_is_refused_for_reading_and_for_writing() {
        let dir = TempDir::new().unwrap();
        for write in [false, true] {
            let err = open(dir.as_path(), write, Allowed::RegularFileOrBlockDevice).unwrap_err();
            assert!(
                err.to_string()
                    .ends_with("is a directory, not a regular file or a block device"),
                "{err}"
            );
        }
    }

    #[test]
    fn character_device_is_refused() {
        let err = open(Path::new("/dev/zero"), false, Allowed::RegularFile).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::WrongKind {
                    kind: "a character device",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_file_keeps_the_os_error_as_source() {
        let err = open(Path::new("/nonexistent/k"), false, Allowed::RegularFile).unwrap_err();
        let OpenError::Io { source, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(source.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn regular_file_opens_blocking_and_readable() {
        let dir = TempDir::new().unwrap();
        let path = dir.as_path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(b"abc")
            .unwrap();
        let mut file = open(&path, false, Allowed::RegularFile).unwrap();
        // SAFETY: F_GETFL on an open fd touches no memory.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "abc");
    }
}
