//! The real [`Syscall`]: thin wrappers over libc. Identity changes use the raw system calls
//! rather than glibc's wrappers, which broadcast to every thread glibc knows of — in a
//! process made by a raw `clone` that list is the parent's.

use std::ffi::CString;
use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::ptr;

use super::super::config::{CapabilitySets, ConsoleSize, Rlimit};
use super::super::netif;
use super::{BpfInstruction, FileKind, Syscall};

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// `CLOSE_RANGE_CLOEXEC` from linux/close_range.h.
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The host's system calls. `saved_mask` is the signal mask to restore before `execve`.
pub struct LinuxSyscall {
    saved_mask: libc::sigset_t,
}

impl LinuxSyscall {
    pub fn new(saved_mask: libc::sigset_t) -> Self {
        Self { saved_mask }
    }
}

pub(crate) fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_long(rc: libc::c_long) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the prctl options used here take integer arguments only; no memory is passed.
    check(unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
    ) -> io::Result<()> {
        let source = source.map(cstring).transpose()?;
        let target = cstring(target)?;
        let fstype = fstype.map(|f| CString::new(f).unwrap_or_default());
        let data = data
            .filter(|d| !d.is_empty())
            .map(|d| CString::new(d).unwrap_or_default());
        let ptr_of = |c: &Option<CString>| c.as_ref().map_or(ptr::null(), |c| c.as_ptr());
        // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
        check(unsafe {
            libc::mount(
                ptr_of(&source),
                target.as_ptr(),
                ptr_of(&fstype),
                flags as libc::c_ulong,
                ptr_of(&data).cast(),
            )
        })
    }

    fn umount2(&self, target: &Path, flags: i32) -> io::Result<()> {
        let target = cstring(target)?;
        // SAFETY: `target` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::umount2(target.as_ptr(), flags) })
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        let (new_root, put_old) = (cstring(new_root)?, cstring(put_old)?);
        // SAFETY: both arguments are NUL-terminated strings that outlive the call.
        check_long(unsafe {
            libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr())
        })
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        let path = cstring(path)?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::chroot(path.as_ptr()) })
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn mkdir_all(&self, path: &Path) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o755).create(path)
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(path)
            .map(drop)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn mknod(&self, path: &Path, mode: u32, dev: u64) -> io::Result<()> {
        let path = cstring(path)?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::mknod(path.as_ptr(), mode, dev) })
    }

    fn kind(&self, path: &Path) -> Option<FileKind> {
        let t = std::fs::symlink_metadata(path).ok()?.file_type();
        Some(if t.is_dir() {
            FileKind::Dir
        } else if t.is_file() {
            FileKind::File
        } else if t.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        })
    }

    fn is_executable(&self, path: &Path) -> bool {
        let Ok(c) = cstring(path) else { return false };
        let is_file = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        // SAFETY: `c` is a NUL-terminated string that outlives the call.
        is_file
            && unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) }
                == 0
    }

    fn locked_mount_flags(&self, path: &Path) -> io::Result<u64> {
        let c = cstring(path)?;
        // SAFETY: statvfs is plain data; all-zero is a valid value the call overwrites.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statvfs.
        check(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
        let mut flags = 0u64;
        for (st_flag, ms_flag) in [
            (libc::ST_NOSUID, libc::MS_NOSUID),
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
        ] {
            if st.f_flag & st_flag != 0 {
                flags |= ms_flag;
            }
        }
        Ok(flags)
    }

    fn unshare(&self, flags: i32) -> io::Result<()> {
        // SAFETY: unshare takes an integer and touches no memory of ours.
        check(unsafe { libc::unshare(flags) })
    }

    fn setns(&self, path: &Path, flag: i32) -> io::Result<()> {
        let ns = std::fs::File::open(path)?;
        // SAFETY: setns on a descriptor we own, with a CLONE_NEW* flag; no memory passed.
        check(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), flag) })
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        // SAFETY: the kernel reads `name.len()` bytes from a live &str.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn loopback_up(&self) -> io::Result<()> {
        netif::set_up("lo")
    }

    fn set_ipv4(&self, interface: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        netif::set_ipv4(interface, addr, prefix_len)
    }

    fn link_up(&self, interface: &str) -> io::Result<()> {
        netif::set_up(interface)
    }

    fn add_default_route(&self, gateway: Ipv4Addr) -> io::Result<()> {
        netif::add_default_route(gateway)
    }

    fn setrlimit(&self, limit: &Rlimit) -> io::Result<()> {
        let value = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: `value` is a valid rlimit the kernel only reads.
        check(unsafe { libc::setrlimit(limit.resource as _, &value) })
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)
    }

    fn set_keep_caps(&self, keep: bool) -> io::Result<()> {
        prctl(libc::PR_SET_KEEPCAPS, keep as libc::c_ulong, 0)
    }

    fn drop_bounding_cap(&self, cap: u32) -> io::Result<()> {
        match prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0) {
            // A capability this kernel does not know is not in its bounding set either.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            other => other,
        }
    }

    fn setgroups(&self, gids: &[u32]) -> io::Result<()> {
        // SAFETY: the kernel reads `gids.len()` gid_t values from a live slice.
        check_long(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) })
    }

    fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: integer arguments only.
        check_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
        // SAFETY: integer arguments only.
        check_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
    }

    fn set_capabilities(&self, caps: &CapabilitySets) -> io::Result<()> {
        let header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let word = |mask: u64, i: usize| (mask >> (32 * i)) as u32;
        let data: [CapData; 2] = std::array::from_fn(|i| CapData {
            effective: word(caps.effective, i),
            permitted: word(caps.permitted, i),
            inheritable: word(caps.inheritable, i),
        });
        // SAFETY: `header` and the two-element `data` array are the layout capset(2) reads
        // for version 3; both outlive the call.
        check_long(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) })?;
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        )?;
        // The kernel raises an ambient capability only when it is also permitted and
        // inheritable; runc (and so the bundles written for it) treats the others as a
        // no-op with a warning, and so does this runtime, without the warning.
        let raisable = caps.ambient & caps.permitted & caps.inheritable;
        for cap in 0..64u32 {
            if raisable & (1u64 << cap) != 0 {
                prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                )?;
            }
        }
        Ok(())
    }

    fn set_parent_death_signal(&self, signal: i32) -> io::Result<()> {
        prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0)
    }

    fn umask(&self, mask: u32) {
        // SAFETY: umask cannot fail and touches no memory.
        unsafe { libc::umask(mask) };
    }

    fn apply_seccomp(&self, program: &[BpfInstruction]) -> io::Result<()> {
        let len = u16::try_from(program.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seccomp filter too long"))?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: seccompiler's sock_filter has the kernel's layout; the kernel copies the
        // `len` instructions during the call and keeps no pointer to them.
        check_long(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_ulong,
                &prog,
            )
        })
    }

    fn close_on_exec_from(&self, first: u32) -> io::Result<()> {
        // SAFETY: close_range with CLOEXEC only sets flags on descriptors; no memory is passed.
        check_long(unsafe {
            libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC)
        })
    }

    fn restore_signals(&self) -> io::Result<()> {
        for sig in 1..32 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // Handlers are reset by execve itself; an ignored signal (Rust ignores SIGPIPE)
            // would stay ignored in the workload.
            // SAFETY: SIG_DFL is a valid disposition for every catchable signal.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
        // SAFETY: `saved_mask` is a valid sigset taken by sigprocmask in the parent.
        check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.saved_mask, ptr::null_mut()) })
    }

    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()> {
        use std::io::Write;
        OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(contents.as_bytes())
    }

    fn attach_console(&self, socket: i32, size: Option<ConsoleSize>) -> io::Result<()> {
        let ptmx = cstring(Path::new("/dev/ptmx"))?;
        // SAFETY: a NUL-terminated path and integer flags.
        let primary = unsafe {
            libc::open(
                ptmx.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        check(primary)?;
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads one int from the pointer, which outlives the call.
        check(unsafe { libc::ioctl(primary, libc::TIOCSPTLCK, &unlock) })?;
        if let Some(size) = size {
            set_window_size(primary, size)?;
        }
        // TIOCGPTPEER (Linux 4.13) opens the secondary without a path lookup in /dev/pts.
        // SAFETY: integer arguments only; the result is a new descriptor or -1.
        let secondary =
            unsafe { libc::ioctl(primary, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) };
        check(secondary)?;
        let sent = send_fd(socket, primary, b"/dev/ptmx");
        // SAFETY: `primary` is ours; the receiver has its own copy once sent.
        unsafe { libc::close(primary) };
        sent?;
        // SAFETY: setsid takes no arguments; it fails only for a process-group leader,
        // which a freshly cloned process is not.
        if unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: integer arguments only.
        check(unsafe { libc::ioctl(secondary, libc::TIOCSCTTY, 0) })?;
        for target in 0..3 {
            // SAFETY: both are open descriptor numbers.
            check(unsafe { libc::dup2(secondary, target) })?;
        }
        if secondary > 2 {
            // SAFETY: `secondary` is ours and now duplicated onto 0-2.
            unsafe { libc::close(secondary) };
        }
        Ok(())
    }

    fn execve(&self, path: &CString, argv: &[CString], envp: &[CString]) -> io::Error {
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(ptr::null());
        // SAFETY: `path` and every element are NUL-terminated strings, and both arrays are
        // NULL-terminated; all outlive the call, which returns only on failure.
        unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// Sets the size of the terminal `fd` (either end of a pty); the kernel sends SIGWINCH to
/// its foreground process group when the size changes.
pub fn set_window_size(fd: i32, size: ConsoleSize) -> io::Result<()> {
    let winsize = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &winsize) })
}

/// The size of the terminal `fd`, or None when it is not a terminal.
pub fn window_size(fd: i32) -> Option<ConsoleSize> {
    // SAFETY: winsize is plain data; all-zero is a valid value.
    let mut winsize: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut winsize) };
    (r == 0).then_some(ConsoleSize {
        rows: winsize.ws_row,
        cols: winsize.ws_col,
    })
}

/// Receives one descriptor sent with SCM_RIGHTS on the connected unix socket `socket`
/// (close-on-exec here). `flags` go to recvmsg: MSG_DONTWAIT for a descriptor that must
/// already be there.
pub fn recv_fd(socket: i32, flags: libc::c_int) -> io::Result<OwnedFd> {
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation on a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every field used is set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: `msg` and every buffer it points to outlive the call.
    let n = unsafe { libc::recvmsg(socket, &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `msg`; CMSG_FIRSTHDR checks msg_controllen.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    // SAFETY: a non-null header lies inside `control`, which the kernel filled.
    let is_rights = !cmsg.is_null()
        && unsafe {
            (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        };
    if !is_rights {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no descriptor came with the message",
        ));
    }
    // SAFETY: an SCM_RIGHTS header with room for one int (the buffer holds no more).
    let fd = unsafe { ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32) };
    // SAFETY: the received descriptor is new, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends descriptor `fd` over the unix socket `socket` with SCM_RIGHTS, `data` as the
/// message (runc sends the terminal's name; receivers only need one byte).
pub fn send_fd(socket: i32, fd: i32, data: &[u8]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation on a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every field used is set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes, room for one header with one int, so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA lies inside the buffer.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut i32, fd);
    }
    // SAFETY: `msg` and everything it points to outlive the call.
    let sent = unsafe { libc::sendmsg(socket, &msg, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
