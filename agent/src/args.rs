//! The command line of `vmm-agent` on a host (as PID 1 of a guest it takes no arguments:
//! whatever the kernel passes on is ignored).

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: vmm-agent                                     (as PID 1 of a guest: serve on vsock port 1024)
       vmm-agent --listen unix:PATH --rootfs-dir DIR (test mode on a host: serve on a Unix socket)
       vmm-agent --help

In test mode each connection starts with the vsock handshake of vmm (CONNECT 1024 / OK 1024),
a `disk` rootfs is DIR instead, and `shutdown` makes the agent exit 0.
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    /// Serve on the Unix socket `socket`; `disk` roots are `rootfs_dir`.
    Test {
        socket: PathBuf,
        rootfs_dir: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("not PID 1: to run on a host, give --listen unix:PATH --rootfs-dir DIR (see --help)")]
    NotPid1,
    #[error("unknown argument {0:?} (see --help)")]
    Unknown(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("--listen {0:?}: only unix:PATH is supported")]
    NotUnix(String),
    #[error("{0} is given twice")]
    Repeated(&'static str),
    #[error("{0} is required in test mode")]
    Required(&'static str),
}

/// Parses the arguments after the program name.
pub fn parse(args: &[OsString]) -> Result<Command, ArgsError> {
    if args.is_empty() {
        return Err(ArgsError::NotPid1);
    }
    let mut socket = None;
    let mut rootfs_dir = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value)),
            _ => (text.to_string(), None),
        };
        let (flag, slot): (&'static str, &mut Option<PathBuf>) = match name.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--listen" => ("--listen", &mut socket),
            "--rootfs-dir" => ("--rootfs-dir", &mut rootfs_dir),
            _ => return Err(ArgsError::Unknown(text.into_owned())),
        };
        let value: OsString = match inline {
            Some(value) => value.into(),
            None => args.next().cloned().ok_or(ArgsError::MissingValue(flag))?,
        };
        if slot.is_some() {
            return Err(ArgsError::Repeated(flag));
        }
        *slot = Some(if flag == "--listen" {
            unix_path(&value)?
        } else {
            PathBuf::from(value)
        });
    }
    Ok(Command::Test {
        socket: socket.ok_or(ArgsError::Required("--listen unix:PATH"))?,
        rootfs_dir: rootfs_dir.ok_or(ArgsError::Required("--rootfs-dir DIR"))?,
    })
}

fn unix_path(value: &OsString) -> Result<PathBuf, ArgsError> {
    let text = value.to_string_lossy();
    match text.strip_prefix("unix:") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(ArgsError::NotUnix(text.into_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, ArgsError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&args)
    }

    #[test]
    fn test_mode_takes_a_unix_socket_and_a_rootfs_dir() {
        let expected = Command::Test {
            socket: PathBuf::from("/tmp/a.sock"),
            rootfs_dir: PathBuf::from("/tmp/root"),
        };
        assert_eq!(
            parse_strs(&["--listen", "unix:/tmp/a.sock", "--rootfs-dir", "/tmp/root"]),
            Ok(expected.clone())
        );
        assert_eq!(
            parse_strs(&["--rootfs-dir=/tmp/root", "--listen=unix:/tmp/a.sock"]),
            Ok(expected)
        );
    }

    #[test]
    fn help_wins_over_everything_else() {
        assert_eq!(
            parse_strs(&["--listen", "unix:/x", "--help"]),
            Ok(Command::Help)
        );
        assert_eq!(parse_strs(&["-h"]), Ok(Command::Help));
    }

    #[test]
    fn no_arguments_off_pid_1_is_an_error() {
        assert_eq!(parse_strs(&[]), Err(ArgsError::NotPid1));
    }

    #[test]
    fn only_unix_listen_addresses_are_accepted() {
        assert_eq!(
            parse_strs(&["--listen", "vsock:1024", "--rootfs-dir", "/r"]),
            Err(ArgsError::NotUnix("vsock:1024".into()))
        );
        assert_eq!(
            parse_strs(&["--listen", "unix:", "--rootfs-dir", "/r"]),
            Err(ArgsError::NotUnix("unix:".into()))
        );
    }

    #[test]
    fn missing_repeated_and_unknown_arguments_are_errors() {
        assert_eq!(
            parse_strs(&["--listen"]),
            Err(ArgsError::MissingValue("--listen"))
        );
        assert_eq!(
            parse_strs(&["--listen", "unix:/a"]),
            Err(ArgsError::Required("--rootfs-dir DIR"))
        );
        assert_eq!(
            parse_strs(&["--rootfs-dir", "/r", "--rootfs-dir", "/s"]),
            Err(ArgsError::Repeated("--rootfs-dir"))
        );
        assert_eq!(
            parse_strs(&["--verbose"]),
            Err(ArgsError::Unknown("--verbose".into()))
        );
    }
}
