//! The few system-call wrappers the probe shares between modules, each returning
//! `io::Result` so the caller decides what an error means (for an isolation probe an error
//! is often the observation itself).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// -1 → the thread's errno, anything else → the value.
pub fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The parts of uname(2) the probe reports.
pub struct Uname {
    pub release: String,
    pub nodename: String,
}

pub fn uname() -> io::Result<Uname> {
    // SAFETY: utsname is plain old data; all-zero bytes are a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a writable utsname for the duration of the call.
    check(unsafe { libc::uname(&mut uts) }.into())?;
    Ok(Uname {
        release: field(&uts.release),
        nodename: field(&uts.nodename),
    })
}

/// A NUL-terminated field of utsname (the kernel always terminates them).
fn field(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// waitpid(2) for one child, retried on EINTR: its wait status.
pub fn wait_child(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a writable int; waitpid only writes it.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
