//! The runtime's side of a container run: create the cgroup, clone the container's first
//! process into its new namespaces, write its id maps, put it in the cgroup, let it go, then
//! forward signals to it until it exits and clean up.
//!
//! Call from a single-threaded process (the `vmm` binary, or a guest agent before it
//! starts threads): the child of the raw `clone` runs Rust code until it execs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use super::cgroup::{self, Cgroup, CgroupMode};
use super::config::{ContainerConfig, IdMapping};
use super::error::{error_chain, ContainerError, Result};
use super::init::setup_and_exec;
use super::rootfs::HostInfo;
use super::seccomp;
use super::sys::linux::LinuxSyscall;
use super::sys::BpfInstruction;

/// Signals forwarded to the workload (SIGCHLD tells the runtime it exited).
const FORWARDED: [i32; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

/// How the workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status as a shell reports it: the code, or 128 + the signal number.
    pub status: u8,
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

fn pipe() -> Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2 expects.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ContainerError::sys(
            "create a pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

/// Blocks the forwarded signals and SIGCHLD for the runtime; restores the mask on drop.
struct SignalMask {
    set: libc::sigset_t,
    saved: libc::sigset_t,
}

impl SignalMask {
    fn block() -> Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above, overwritten by sigprocmask.
        let mut saved: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset and every number a valid signal.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            for sig in FORWARDED {
                libc::sigaddset(&mut set, sig);
            }
        }
        // An ignored SIGCHLD would make the kernel reap the workload before we see it.
        // SAFETY: SIG_DFL is a valid disposition for SIGCHLD; no handler is involved.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGCHLD, ptr::null(), &mut old);
            if old.sa_sigaction == libc::SIG_IGN {
                libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            }
        }
        // SAFETY: both sigsets are valid; `saved` receives the current mask.
        if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, &mut saved) } != 0 {
            return Err(ContainerError::sys(
                "block signals",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self { set, saved })
    }
}

impl Drop for SignalMask {
    fn drop(&mut self) {
        // SAFETY: `saved` is the mask sigprocmask gave us.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.saved, ptr::null_mut()) };
    }
}

/// The container's first process until it is reaped: killed and reaped on early return.
struct Child {
    pid: i32,
    reaped: bool,
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: `pid` is our unreaped child, so the id cannot have been reused.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, ptr::null_mut(), 0);
            }
        }
    }
}

/// Run the container to completion.
pub fn run(cfg: &ContainerConfig) -> Result<Outcome> {
    let filter = cfg.seccomp.as_ref().map(seccomp::compile).transpose()?;
    let mode = cgroup::detect_mode()?;
    let host = HostInfo {
        cgroup2: mode == CgroupMode::Unified,
    };
    let cgroup = Cgroup::create(mode, &cfg.id, &cfg.resources)?;
    let restricted;
    let cfg = if cgroup.restricts_devices() {
        cfg
    } else {
        // Without a device allowlist, a node made with CAP_MKNOD would open any host
        // device (a disk, say): withhold the capability instead.
        let mut c = cfg.clone();
        let caps = &mut c.process.capabilities;
        let mknod = !(1u64 << super::caps::number("CAP_MKNOD").unwrap_or(27));
        caps.bounding &= mknod;
        caps.effective &= mknod;
        caps.permitted &= mknod;
        caps.inheritable &= mknod;
        caps.ambient &= mknod;
        restricted = c;
        &restricted
    };
    let (sync_r, mut sync_w) = pipe()?;
    let (mut err_r, err_w) = pipe()?;
    let mask = SignalMask::block()?;

    let flags = cfg.namespaces.clone_flags() | libc::SIGCHLD as u64;
    // SAFETY: a clone without CLONE_VM and with a NULL stack is a fork: the child gets a
    // copy of this single-threaded process and continues on its own copy of the stack.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(ContainerError::sys(
            "clone the container process",
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        child_main(
            cfg,
            host,
            filter.as_deref(),
            sync_r,
            err_w,
            &mask,
            [sync_w.as_raw_fd(), err_r.as_raw_fd()],
        );
    }
    let mut child = Child {
        pid: pid as i32,
        reaped: false,
    };
    drop(sync_r);
    drop(err_w);

    if cfg.namespaces.user {
        write_id_map(child.pid, "uid_map", &cfg.uid_mappings)?;
        write_id_map(child.pid, "gid_map", &cfg.gid_mappings)?;
    }
    cgroup.add_process(child.pid)?;
    sync_w
        .write_all(&[1])
        .map_err(|e| ContainerError::sys("release the container process", e))?;
    drop(sync_w);

    let mut report = Vec::new();
    let _ = err_r.read_to_end(&mut report);
    if let Some((&kind, message)) = report.split_first() {
        return Err(ContainerError::Child {
            message: String::from_utf8_lossy(message).into_owned(),
            bad_input: kind == 2,
        });
    }

    let status = wait_forwarding(child.pid, &mask.set)?;
    child.reaped = true;
    let oom_killed = cgroup.oom_killed();
    drop(cgroup);
    let (status, signal) = if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128u8.saturating_add(sig as u8), Some(sig))
    } else {
        (libc::WEXITSTATUS(status) as u8, None)
    };
    Ok(Outcome {
        status,
        signal,
        oom_killed,
    })
}

fn write_id_map(pid: i32, file: &str, maps: &[IdMapping]) -> Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, text).map_err(|e| ContainerError::sys(format!("write {path}"), e))
}

/// Wait for `pid`, passing on every forwarded signal the runtime receives meanwhile.
fn wait_forwarding(pid: i32, set: &libc::sigset_t) -> Result<libc::c_int> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int for waitpid to fill.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(status);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(ContainerError::sys("wait for the container", e));
            }
        }
        // SAFETY: `set` is a valid sigset; no siginfo is requested.
        let sig = unsafe { libc::sigwaitinfo(set, ptr::null_mut()) };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: `pid` is our unreaped child.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

/// The container's first process: wait for the runtime, set up, exec. Never returns.
fn child_main(
    cfg: &ContainerConfig,
    host: HostInfo,
    filter: Option<&[BpfInstruction]>,
    mut sync_r: File,
    mut err_w: File,
    mask: &SignalMask,
    parent_ends: [i32; 2],
) -> ! {
    for fd in parent_ends {
        // SAFETY: these are the runtime's ends of the pipes, duplicated into this process
        // by clone; this process never uses them, and never returns to code that would.
        unsafe { libc::close(fd) };
    }
    // SAFETY: integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let mut go = [0u8; 1];
    if sync_r.read_exact(&mut go).is_err() {
        // SAFETY: _exit ends this process without running the parent's destructors.
        unsafe { libc::_exit(1) };
    }
    drop(sync_r);
    let sys = LinuxSyscall::new(mask.saved);
    let err = match setup_and_exec(&sys, cfg, host, filter) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let kind = if err.is_bad_input() { 2u8 } else { 1u8 };
    let mut report = vec![kind];
    report.extend_from_slice(error_chain(&err).as_bytes());
    let _ = err_w.write_all(&report);
    // SAFETY: as above.
    unsafe { libc::_exit(1) }
}
