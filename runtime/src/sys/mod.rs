//! The system calls container setup makes, behind a trait (as youki's `Syscall`), so the
//! order of the setup steps is checked by unit tests with [`fake::FakeSyscall`] and run for
//! real with [`linux::LinuxSyscall`].

pub mod linux;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use super::config::{CapabilitySets, ConsoleSize, Rlimit};

/// What is at a path (not following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One seccomp BPF instruction, as the kernel reads it.
pub type BpfInstruction = seccompiler::sock_filter;

pub trait Syscall {
    /// `mount(2)`; `None` passes NULL.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn umount2(&self, target: &Path, flags: i32) -> io::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    fn chroot(&self, path: &Path) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// `mkdir -p`, mode 0755.
    fn mkdir_all(&self, path: &Path) -> io::Result<()>;
    /// Create an empty file (a bind-mount target) if it does not exist.
    fn create_file(&self, path: &Path) -> io::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()>;
    fn kind(&self, path: &Path) -> Option<FileKind>;
    /// True when the caller may execute `path`.
    fn is_executable(&self, path: &Path) -> bool;
    /// The `MS_*` flags (nosuid, nodev, noexec, atime) of the mount holding `path`: a
    /// remount must keep them or the kernel refuses it inside a user namespace.
    fn locked_mount_flags(&self, path: &Path) -> io::Result<u64>;
    fn unshare(&self, flags: i32) -> io::Result<()>;
    /// Join the namespace at `path` (`setns(2)` with `flag`, a `CLONE_NEW*`).
    fn setns(&self, path: &Path, flag: i32) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Bring the loopback interface of the current network namespace up.
    fn loopback_up(&self) -> io::Result<()>;
    /// `ip addr add ADDR/PREFIX dev INTERFACE` in the current network namespace.
    fn set_ipv4(&self, interface: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()>;
    /// `ip link set INTERFACE up` in the current network namespace.
    fn link_up(&self, interface: &str) -> io::Result<()>;
    /// `ip route add default via GATEWAY` in the current network namespace.
    fn add_default_route(&self, gateway: Ipv4Addr) -> io::Result<()>;
    fn setrlimit(&self, limit: &Rlimit) -> io::Result<()>;
    fn set_no_new_privs(&self) -> io::Result<()>;
    fn set_keep_caps(&self, keep: bool) -> io::Result<()>;
    /// Remove one capability from the bounding set.
    fn drop_bounding_cap(&self, cap: u32) -> io::Result<()>;
    fn setgroups(&self, gids: &[u32]) -> io::Result<()>;
    /// `setresgid` then `setresuid`.
    fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()>;
    /// Effective, permitted and inheritable sets (`capset`), then the ambient set.
    fn set_capabilities(&self, caps: &CapabilitySets) -> io::Result<()>;
    fn set_parent_death_signal(&self, signal: i32) -> io::Result<()>;
    fn umask(&self, mask: u32);
    fn apply_seccomp(&self, program: &[BpfInstruction]) -> io::Result<()>;
    /// Mark every descriptor from `first` on close-on-exec.
    fn close_on_exec_from(&self, first: u32) -> io::Result<()>;
    /// Put the signal mask and dispositions back the way a new program expects them.
    fn restore_signals(&self) -> io::Result<()>;
    /// Write `contents` to the existing file `path` (a /proc or /sys knob).
    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()>;
    /// Make a pty from /dev/ptmx, send its primary end through the connected unix socket
    /// `socket` (SCM_RIGHTS), and make its secondary end the controlling terminal and
    /// stdin, stdout and stderr of a new session; with `size`, the terminal has that size
    /// before anything reads it.
    fn attach_console(&self, socket: i32, size: Option<ConsoleSize>) -> io::Result<()>;
    /// `execve(2)`: returns only on failure.
    fn execve(&self, path: &CString, argv: &[CString], envp: &[CString]) -> io::Error;
}
