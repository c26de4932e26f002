//! What the kernel tells the probe about itself: its log, its memory, its symbol addresses,
//! and whether it would load a module. Each is a way out of a container that shares the
//! kernel; in a microVM they reveal only the guest's own kernel.
//!
//! Every probe here only reads, and the module probe passes an empty image, which the
//! kernel rejects after its permission check: nothing is ever loaded.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;

use crate::report::Access;
use crate::sys;

/// syslog(2)'s SYSLOG_ACTION_READ_ALL: read the ring buffer without consuming it (dmesg).
const SYSLOG_ACTION_READ_ALL: libc::c_long = 3;

/// How many lines of /proc/kallsyms are enough to tell real addresses from zeroed ones.
const KALLSYMS_LINES: usize = 20;

/// syslog(SYSLOG_ACTION_READ_ALL) succeeds.
pub fn kernel_log() -> Access {
    let mut buf = [0u8; 1024];
    // SAFETY: `buf` is writable for `buf.len()` bytes; the kernel writes at most that many.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_syslog,
            SYSLOG_ACTION_READ_ALL,
            buf.as_mut_ptr(),
            buf.len() as libc::c_long,
        )
    };
    match sys::check(rc) {
        Ok(_) => Access::Allowed,
        Err(e) => refused_or_absent(&e),
    }
}

/// /dev/kmsg opens and yields a record. Non-blocking: with no record pending, EAGAIN after
/// a successful open still means the log is readable; EINVAL means the record was larger
/// than the buffer, which also took reading it.
pub fn dev_kmsg() -> Access {
    let mut file = match open("/dev/kmsg", libc::O_NONBLOCK) {
        Ok(file) => file,
        Err(e) => return refused_or_absent(&e),
    };
    let mut buf = [0u8; 8192];
    match file.read(&mut buf) {
        Ok(0) => Access::Denied, // /dev/null bound over it
        Ok(_) => Access::Allowed,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EAGAIN | libc::EINVAL | libc::EPIPE)
            ) =>
        {
            Access::Allowed
        }
        Err(_) => Access::Denied,
    }
}

/// /proc/kcore opens and reads. Container runtimes mask it by binding /dev/null over it,
/// which opens fine and reads nothing: that is Denied.
pub fn proc_kcore() -> Access {
    let mut file = match open("/proc/kcore", 0) {
        Ok(file) => file,
        Err(e) => return refused_or_absent(&e),
    };
    let mut buf = [0u8; 64];
    match file.read(&mut buf) {
        Ok(n) if n > 0 => Access::Allowed,
        _ => Access::Denied,
    }
}

/// /proc/kallsyms shows some non-zero address among its first lines (the kernel prints
/// zeros to readers without CAP_SYSLOG under kptr_restrict; a mask reads empty).
pub fn kallsyms_addresses() -> Access {
    let mut file = match open("/proc/kallsyms", 0) {
        Ok(file) => file,
        Err(e) => return refused_or_absent(&e),
    };
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // Read only until enough lines are in: the whole file is megabytes.
    while text.iter().filter(|&&b| b == b'\n').count() < KALLSYMS_LINES {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if shows_addresses(&String::from_utf8_lossy(&text)) {
        Access::Allowed
    } else {
        Access::Denied
    }
}

/// Some line of the first [`KALLSYMS_LINES`] starts with a non-zero hex address.
fn shows_addresses(kallsyms: &str) -> bool {
    kallsyms.lines().take(KALLSYMS_LINES).any(|line| {
        line.split_whitespace()
            .next()
            .and_then(|addr| u64::from_str_radix(addr, 16).ok())
            .is_some_and(|addr| addr != 0)
    })
}

/// init_module with an empty image: EPERM → Denied (no CAP_SYS_MODULE, modules disabled,
/// or a seccomp filter), ENOSYS → Absent, any other answer → Allowed (the permission check
/// passed and the image was then rejected).
pub fn module_loading() -> Access {
    let image = [0u8; 1];
    let params = c"";
    // SAFETY: a zero-length image at a valid address and a NUL-terminated parameter
    // string; the kernel rejects the image (ENOEXEC) before loading anything.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            0 as libc::c_ulong,
            params.as_ptr(),
        )
    };
    match sys::check(rc) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Access::Denied,
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Access::Absent,
        _ => Access::Allowed,
    }
}

/// Opens read-only, close-on-exec, with extra `flags`.
fn open(path: &str, flags: libc::c_int) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(path)
}

/// ENOENT/ENOSYS/ENODEV/ENXIO: the thing is not there; anything else: refused.
fn refused_or_absent(e: &io::Error) -> Access {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOSYS | libc::ENODEV | libc::ENXIO) => Access::Absent,
        _ => Access::Denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_with_real_addresses_shows_addresses() {
        let text = "0000000000000000 A fixed_percpu_data\nffffffff81000000 T _stext\n";
        assert!(shows_addresses(text));
    }

    #[test]
    fn kallsyms_with_zeroed_addresses_hides_them() {
        let text = "0000000000000000 A fixed_percpu_data\n0000000000000000 T _stext\n";
        assert!(!shows_addresses(text));
    }

    #[test]
    fn empty_kallsyms_hides_addresses() {
        assert!(!shows_addresses(""));
    }

    #[test]
    fn eperm_is_denied_and_enoent_absent() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let enoent = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(refused_or_absent(&eperm), Access::Denied);
        assert_eq!(refused_or_absent(&enoent), Access::Absent);
    }
}
