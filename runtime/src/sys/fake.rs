//! A [`Syscall`] that records calls instead of making them, for unit tests of the setup
//! order. Paths listed in `existing` exist (as directories unless they end in a file name
//! given in `files`); everything else is missing.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::super::config::{CapabilitySets, ConsoleSize, Rlimit};
use super::{BpfInstruction, FileKind, Syscall};

#[derive(Default)]
pub struct FakeSyscall {
    pub calls: RefCell<Vec<String>>,
    pub dirs: RefCell<BTreeSet<PathBuf>>,
    pub files: RefCell<BTreeSet<PathBuf>>,
    /// A call (by its recorded text prefix) that fails, with `fail_errno` (else EPERM).
    pub fail_on: Option<String>,
    pub fail_errno: Option<i32>,
}

impl FakeSyscall {
    pub fn with_paths(dirs: &[&str], files: &[&str]) -> Self {
        let fake = Self::default();
        fake.dirs
            .borrow_mut()
            .extend(dirs.iter().map(PathBuf::from));
        fake.files
            .borrow_mut()
            .extend(files.iter().map(PathBuf::from));
        fake
    }

    fn record(&self, call: String) -> io::Result<()> {
        let fail = self.fail_on.as_ref().is_some_and(|f| call.starts_with(f));
        self.calls.borrow_mut().push(call);
        if fail {
            Err(io::Error::from_raw_os_error(
                self.fail_errno.unwrap_or(libc::EPERM),
            ))
        } else {
            Ok(())
        }
    }

    /// Index of the first recorded call starting with `prefix`.
    pub fn position(&self, prefix: &str) -> Option<usize> {
        self.calls
            .borrow()
            .iter()
            .position(|c| c.starts_with(prefix))
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

impl Syscall for FakeSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(format!(
            "mount {} {} {} {flags:#x} {}",
            source.map_or("-".into(), p),
            p(target),
            fstype.unwrap_or("-"),
            data.unwrap_or("")
        ))
    }
    fn umount2(&self, target: &Path, flags: i32) -> io::Result<()> {
        self.record(format!("umount2 {} {flags}", p(target)))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(format!("pivot_root {} {}", p(new_root), p(put_old)))
    }
    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chroot {}", p(path)))
    }
    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(format!("chdir {}", p(path)))
    }
    fn mkdir_all(&self, path: &Path) -> io::Result<()> {
        self.dirs.borrow_mut().insert(path.to_owned());
        self.record(format!("mkdir {}", p(path)))
    }
    fn create_file(&self, path: &Path) -> io::Result<()> {
        self.files.borrow_mut().insert(path.to_owned());
        self.record(format!("create {}", p(path)))
    }
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(format!("symlink {} {}", p(target), p(link)))
    }
    fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()> {
        self.record(format!("mknod {} {mode:#o} {dev}", p(path)))
    }
    fn kind(&self, path: &Path) -> Option<FileKind> {
        if self.files.borrow().contains(path) {
            Some(FileKind::File)
        } else if self.dirs.borrow().contains(path) {
            Some(FileKind::Dir)
        } else {
            None
        }
    }
    fn is_executable(&self, path: &Path) -> bool {
        self.files.borrow().contains(path)
    }
    fn locked_mount_flags(&self, _path: &Path) -> io::Result<u64> {
        Ok(libc::MS_NOSUID)
    }
    fn unshare(&self, flags: i32) -> io::Result<()> {
        self.record(format!("unshare {flags:#x}"))
    }
    fn setns(&self, path: &Path, flag: i32) -> io::Result<()> {
        self.record(format!("setns {} {flag:#x}", p(path)))
    }
    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"))
    }
    fn loopback_up(&self) -> io::Result<()> {
        self.record("loopback_up".into())
    }
    fn set_ipv4(&self, interface: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        self.record(format!("set_ipv4 {interface} {addr}/{prefix_len}"))
    }
    fn link_up(&self, interface: &str) -> io::Result<()> {
        self.record(format!("link_up {interface}"))
    }
    fn add_default_route(&self, gateway: Ipv4Addr) -> io::Result<()> {
        self.record(format!("default_route {gateway}"))
    }
    fn setrlimit(&self, limit: &Rlimit) -> io::Result<()> {
        self.record(format!(
            "setrlimit {} {} {}",
            limit.resource, limit.soft, limit.hard
        ))
    }
    fn set_no_new_privs(&self) -> io::Result<()> {
        self.record("no_new_privs".into())
    }
    fn set_keep_caps(&self, keep: bool) -> io::Result<()> {
        self.record(format!("keep_caps {keep}"))
    }
    fn drop_bounding_cap(&self, cap: u32) -> io::Result<()> {
        self.record(format!("capbset_drop {cap}"))
    }
    fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
        self.record(format!("setgroups {gids:?}"))
    }
    fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()> {
        self.record(format!("set_ids {uid} {gid}"))
    }
    fn set_capabilities(&self, caps: &CapabilitySets) -> io::Result<()> {
        self.record(format!("capset {:#x}", caps.effective))
    }
    fn set_parent_death_signal(&self, signal: i32) -> io::Result<()> {
        self.record(format!("pdeathsig {signal}"))
    }
    fn umask(&self, mask: u32) {
        let _ = self.record(format!("umask {mask:#o}"));
    }
    fn apply_seccomp(&self, program: &[BpfInstruction]) -> io::Result<()> {
        self.record(format!("seccomp {}", program.len()))
    }
    fn close_on_exec_from(&self, first: u32) -> io::Result<()> {
        self.record(format!("cloexec_from {first}"))
    }
    fn restore_signals(&self) -> io::Result<()> {
        self.record("restore_signals".into())
    }
    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()> {
        self.record(format!("write {} {contents}", p(path)))
    }

    fn attach_console(&self, socket: i32, size: Option<ConsoleSize>) -> io::Result<()> {
        match size {
            Some(s) => self.record(format!("console {socket} {}x{}", s.rows, s.cols)),
            None => self.record(format!("console {socket}")),
        }
    }

    fn execve(&self, path: &CString, argv: &[CString], _envp: &[CString]) -> io::Error {
        let _ = self.record(format!("execve {} {argv:?}", path.to_string_lossy()));
        io::Error::from_raw_os_error(libc::ENOEXEC)
    }
}
