//! Where the logger and the metrics write: a file (created when missing, appended to) or
//! a named pipe, as Firecracker's clients pass. Opened non-blocking, so a pipe nobody reads
//! loses lines instead of stalling the API thread (Firecracker does the same).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` to append lines to; `what` names it in the error.
pub fn open(what: &str, path: &Path) -> Result<File, String> {
    // Read as well as write: opening a FIFO O_RDWR never waits for a reader.
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("{what}: cannot open {}: {e}", path.display()))
}

/// Writes one whole line, or fails: a pipe that is full drops it.
pub fn write_line(file: &mut File, line: &str) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    file.write_all(&bytes)
}
