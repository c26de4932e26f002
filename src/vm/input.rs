//! Opening the user's input files with errors that name the file and the problem. Every
//! file goes through [`devices::user_file::open`], which refuses a FIFO, a directory or a
//! device instead of hanging on it or reading it as a file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use devices::user_file::{self, Allowed};

use super::error::VmError;

/// Opens `path` for reading and checks that it is a non-empty regular file.
/// `what` names the file's role in messages ("kernel image", "initrd").
pub fn open_nonempty_file(what: &'static str, path: &Path) -> Result<(File, u64), VmError> {
    let file = open_regular_file(what, path)?;
    let len = file
        .metadata()
        .map_err(|source| VmError::ReadFile {
            what,
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if len == 0 {
        return Err(VmError::EmptyFile {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok((file, len))
}

/// Reads the regular file `path` as text, refusing it when it holds more than
/// `limit_mib` MiB: a config file is small, and `/dev/zero` or a huge file must not be
/// read into memory whole.
pub fn read_small_text_file(
    what: &'static str,
    path: &Path,
    limit_mib: u64,
) -> Result<String, VmError> {
    let file = open_regular_file(what, path)?;
    let limit = limit_mib << 20;
    let mut text = String::new();
    // One byte past the limit tells a file at the limit from a larger one, however the
    // file's size changes while it is read.
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|source| VmError::ReadFile {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if text.len() as u64 > limit {
        return Err(VmError::FileTooLarge {
            what,
            path: path.to_path_buf(),
            limit_mib,
        });
    }
    Ok(text)
}

fn open_regular_file(what: &'static str, path: &Path) -> Result<File, VmError> {
    user_file::open(path, false, Allowed::RegularFile)
        .map_err(|source| VmError::OpenFile { what, source })
}
