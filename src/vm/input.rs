//! Opening the user's input files with errors that name the file and the problem.

use std::fs::File;
use std::path::Path;

use super::error::VmError;

/// Opens `path` for reading and checks that it is a non-empty regular file.
/// `what` names the file's role in messages ("kernel image", "initrd").
pub fn open_nonempty_file(what: &'static str, path: &Path) -> Result<(File, u64), VmError> {
    let open_err = |source| VmError::OpenFile {
        what,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.is_dir() {
        return Err(VmError::IsDirectory {
            what,
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(open_err)?;
    if meta.len() == 0 {
        return Err(VmError::EmptyFile {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok((file, meta.len()))
}
