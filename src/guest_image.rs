//! The built-in test guest (tests/guest/), compiled by build.rs and embedded in the binary.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

pub static TEST_GUEST_ELF: &[u8] = include_bytes!(env!("VMM_TEST_GUEST"));

/// The guest in an anonymous in-memory file, reachable through /proc/self/fd, so it is
/// loaded exactly like a user's vmlinux without leaving a file behind.
pub struct GuestFile {
    file: File,
}

impl GuestFile {
    pub fn create() -> std::io::Result<Self> {
        // SAFETY: the name is a valid NUL-terminated string; memfd_create returns a new fd
        // or -1, which is checked before use.
        let fd = unsafe { libc::memfd_create(c"vmm-test-guest".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let mut file = unsafe { File::from_raw_fd(fd) };
        file.write_all(TEST_GUEST_ELF)?;
        Ok(Self { file })
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}
