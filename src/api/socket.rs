//! The API socket's path: a socket left behind by a VMM that is gone is removed, anything
//! else there (a live socket, a file, a directory) is refused rather than replaced.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Listens on `path`, removing a stale socket there first.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // Something still answering there is another VMM's API: not ours to take.
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "--api-sock {shown}: another process is listening on this socket"
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("--api-sock {shown}: cannot remove the stale socket: {e}"))?;
        }
        Ok(meta) => {
            let kind = if meta.is_dir() {
                "a directory"
            } else if meta.file_type().is_symlink() {
                "a symbolic link"
            } else if meta.file_type().is_fifo() {
                "a FIFO"
            } else {
                "a file"
            };
            return Err(format!(
                "--api-sock {shown}: exists and is {kind}, not a socket; refusing to replace it"
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("--api-sock {shown}: {e}")),
    }
    UnixListener::bind(path).map_err(|e| format!("--api-sock {shown}: cannot listen there: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("vmm-api-sock-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let d = dir("stale");
        let path = d.join("api.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(bind(&path).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_regular_file_or_a_live_socket_is_refused_and_left_alone() {
        let d = dir("refuse");
        let file = d.join("file");
        std::fs::write(&file, "keep me").unwrap();
        let err = bind(&file).unwrap_err();
        assert!(err.contains("is a file, not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
        let live = d.join("live.sock");
        let _listener = UnixListener::bind(&live).unwrap();
        let err = bind(&live).unwrap_err();
        assert!(err.contains("another process is listening"), "{err}");
        let err = bind(&d).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
