//! Thin wrappers over the system calls the agent makes, each returning `io::Result` so the
//! caller can name what failed. Every descriptor the agent opens is close-on-exec: the
//! runtime clones workloads from this process, and they must inherit nothing of it but
//! the stdio they are given.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use agent_protocol::protocol::SEED_BYTES;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
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

/// Owns a descriptor a system call just returned.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: the system call returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `read(2)` once; `Ok(0)` is end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes for the duration of the call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `write(2)` once. SIGPIPE is ignored by the agent, so a vanished reader is `EPIPE`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for `buf.len()` bytes for the duration of the call.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an open descriptor; integer arguments only.
    unsafe {
        let flags = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        check(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            flags | libc::O_NONBLOCK,
        ))?;
    }
    Ok(())
}

/// A close-on-exec pipe: (read end, write end), both blocking (the caller makes its own
/// end non-blocking; the workload's end must stay blocking, as programs expect).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2 expects.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Opens `path` close-on-exec with `flags` (`O_RDWR`, ...).
pub fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c_path = cstring(path)?;
    // SAFETY: `c_path` is NUL-terminated and outlives the call.
    owned(unsafe { libc::open(c_path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// Shuts down the sending side of a socket: the peer reads end of file.
pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown(2) on an open descriptor; integer arguments only.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) }).map(drop)
}

/// A new close-on-exec socket.
pub fn socket(domain: libc::c_int, kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with integer arguments only.
    owned(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) })
}

/// `bind(2)` of a socket to `addr`, a `sockaddr_*` of the socket's family.
pub fn bind<T>(fd: BorrowedFd<'_>, addr: &T) -> io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `addr` is a live sockaddr of `len` bytes; bind only reads it.
    check(unsafe { libc::bind(fd.as_raw_fd(), (addr as *const T).cast(), len) }).map(drop)
}

pub fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: listen(2) on an open descriptor; integer arguments only.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// Accepts one connection, non-blocking and close-on-exec.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: no peer address is asked for, so the null pointers are allowed.
    owned(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            ptr::null_mut(),
            ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    })
}

/// `mount(2)`; `data` is the file system's option string.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let invalid = |_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in a mount argument",
        )
    };
    let source = CString::new(source).map_err(invalid)?;
    let fstype = CString::new(fstype).map_err(invalid)?;
    let data = data.map(CString::new).transpose().map_err(invalid)?;
    let target = cstring(target)?;
    let data_ptr = data.as_ref().map_or(ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is a NUL-terminated string (or null for no data) that lives
    // for the call; mount only reads them.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_ptr,
        )
    })
    .map(drop)
}

/// Detaches the mount at `target` (lazily, so a busy mount does not stop the cleanup).
pub fn unmount_detach(target: &Path) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: `target` is NUL-terminated and outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// Writes back and drops the kernel's cached blocks of the block device `fd` (BLKFLSBUF).
pub fn flush_block_device(fd: &OwnedFd) -> io::Result<()> {
    // _IO(0x12, 97), from <linux/fs.h>; the libc crate does not export it.
    const BLKFLSBUF: libc::c_ulong = 0x1261;
    // SAFETY: BLKFLSBUF takes no argument; `fd` is an open descriptor owned by the caller.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), BLKFLSBUF as _, 0) }).map(drop)
}

/// Mixes `seed` into the kernel's random number generator, credited as entropy
/// (RNDADDENTROPY), and makes it rekey from its pool at once (RNDRESEEDCRNG, Linux 4.17):
/// its output from then on depends on `seed`. Both need CAP_SYS_ADMIN.
pub fn seed_kernel_random(seed: &[u8; SEED_BYTES]) -> io::Result<()> {
    // From <linux/random.h>; the libc crate exports neither. RNDADDENTROPY is
    // _IOW('R', 0x03, int[2]), RNDRESEEDCRNG is _IO('R', 0x07).
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    /// `struct rand_pool_info` with its flexible array member sized for one seed.
    #[repr(C)]
    struct PoolInfo {
        entropy_count: libc::c_int,
        buf_size: libc::c_int,
        buf: [u8; SEED_BYTES],
    }
    // 32 bytes, 256 bits: both fit an int.
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    let info = PoolInfo {
        entropy_count: (SEED_BYTES * 8) as libc::c_int,
        buf_size: SEED_BYTES as libc::c_int,
        buf: *seed,
    };
    let random = open(Path::new("/dev/urandom"), libc::O_WRONLY | libc::O_CLOEXEC)?;
    // SAFETY: RNDADDENTROPY reads a rand_pool_info and `buf_size` bytes after its two
    // ints; `info` is laid out so (repr(C)) and lives across the call.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY as _, &info) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument; `random` is an open descriptor.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG as _, 0) }).map(drop)
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: `name` is readable for `name.len()` bytes; no NUL terminator is needed.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// The kernel's release (`uname -r`), or "unknown".
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; an all-zero value is valid and uname overwrites it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Writes `text` to descriptor 1 (in a guest the kernel opened it on /dev/console).
/// Errors are ignored: there is nowhere else to report them, and `print!` would panic.
pub fn say(text: &str) {
    write_all_ignoring_errors(1, text.as_bytes());
}

/// Writes `text` to descriptor 2, errors ignored (as [`say`]).
pub fn complain(text: &str) {
    write_all_ignoring_errors(2, text.as_bytes());
}

fn write_all_ignoring_errors(fd: libc::c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is readable for its length; a closed `fd` is just EBADF.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Moves the mount at `source` to `target` (`mount --move`).
pub fn move_mount(source: &Path, target: &Path) -> io::Result<()> {
    let source = cstring(source)?;
    let target = cstring(target)?;
    // SAFETY: both paths are NUL-terminated and live for the call; MS_MOVE needs no file
    // system type or data, so those pointers are null.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            ptr::null(),
            libc::MS_MOVE,
            ptr::null(),
        )
    })
    .map(drop)
}

pub fn chdir(path: &Path) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub fn chroot(path: &Path) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// The file system type (`statfs.f_type`) of `path`.
// `f_type` is signed on glibc and unsigned on musl; the magic numbers fit either way.
#[allow(clippy::unnecessary_cast)]
pub fn fs_magic(path: &Path) -> io::Result<u64> {
    let path = cstring(path)?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` a writable statfs, both live for the call.
    check(unsafe { libc::statfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_type as u64)
}
