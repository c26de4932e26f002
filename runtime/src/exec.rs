//! Another process in a running container (an OCI runtime's `exec`, which `podman exec`
//! and containerd's `ctr task exec` call): it joins the container's namespaces (the pid
//! namespace through this process, before the fork; the others in the child, the mount
//! namespace last, which also makes the container's root its root), joins its cgroup, and
//! then takes the same last steps as the container's first process: limits, seccomp,
//! capabilities and identity, working directory, exec.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::ptr;

use super::config::{ContainerConfig, ProcessConfig};
use super::error::{error_chain, ContainerError, Result};
use super::init::{exec_workload, Extras};
use super::launch::{close_inherited, pipe};
use super::seccomp;
use super::sys::linux::LinuxSyscall;
use super::sys::Syscall;

/// The namespaces an exec joins in its child, in order (mount last: it changes the root).
const CHILD_NAMESPACES: [(&str, i32); 5] = [
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("mnt", libc::CLONE_NEWNS),
];

/// What to run, and how.
pub struct ExecRequest {
    pub process: ProcessConfig,
    /// Give the process a pty, its primary end sent to `console_socket`.
    pub terminal: bool,
    pub console_socket: Option<OwnedFd>,
    /// The process outlives this one (its caller reaps it): no parent-death signal.
    pub detach: bool,
}

/// Starts `request` in the container whose first process is `init_pid` and whose cgroup
/// directories are `cgroup_dirs`; returns the new process's pid once it is about to exec
/// (or the error that stopped it). Call it while this process has a single thread.
pub fn exec(
    container: &ContainerConfig,
    init_pid: i32,
    cgroup_dirs: &[PathBuf],
    request: ExecRequest,
) -> Result<i32> {
    if container.namespaces.user {
        return Err(ContainerError::Unsupported(
            "exec in a container with a user namespace".into(),
        ));
    }
    let mut cfg = container.clone();
    cfg.process = request.process;
    cfg.terminal = request.terminal;
    let filters = match &cfg.seccomp {
        Some(profile) => seccomp::compile(profile)?,
        None => Vec::new(),
    };
    let mut joins: Vec<(File, i32)> = Vec::new();
    for (name, flag) in CHILD_NAMESPACES {
        if let Some(ns) = foreign_namespace(init_pid, name)? {
            joins.push((ns, flag));
        }
    }
    if let Some(pid_ns) = foreign_namespace(init_pid, "pid")? {
        // Takes effect for this process's next child, which is the exec'd process.
        // SAFETY: setns on a descriptor we own; this process is single-threaded.
        if unsafe { libc::setns(pid_ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
            return Err(ContainerError::sys(
                "join the container's pid namespace",
                std::io::Error::last_os_error(),
            ));
        }
    }
    let (mut sync_r, mut sync_w) = pipe()?;
    let (mut err_r, err_w) = pipe()?;
    // SAFETY: a fork (no CLONE_VM, NULL stack) of this single-threaded process.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as u64,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(ContainerError::sys(
            "fork the exec'd process",
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        drop(sync_w);
        drop(err_r);
        let console = request.console_socket.as_ref().map(AsRawFd::as_raw_fd);
        child(
            &cfg,
            &joins,
            &filters,
            &mut sync_r,
            err_w,
            console,
            request.detach,
        );
    }
    let pid = pid as i32;
    drop(sync_r);
    drop(err_w);
    let kill = || {
        // SAFETY: `pid` is our unreaped child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, ptr::null_mut(), 0);
        }
    };
    for dir in cgroup_dirs {
        if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
            kill();
            return Err(ContainerError::sys(format!("join the cgroup {dir:?}"), e));
        }
    }
    if let Err(e) = sync_w.write_all(&[1]) {
        kill();
        return Err(ContainerError::sys("release the exec'd process", e));
    }
    drop(sync_w);
    let mut report = Vec::new();
    let _ = err_r.read_to_end(&mut report);
    if let Some((&kind, message)) = report.split_first() {
        // SAFETY: `pid` is our unreaped child; it exits after its report.
        unsafe { libc::waitpid(pid, ptr::null_mut(), 0) };
        return Err(ContainerError::Child {
            message: String::from_utf8_lossy(message).into_owned(),
            bad_input: kind == 2,
        });
    }
    Ok(pid)
}

/// The container's namespace `name` when it is not this process's own.
fn foreign_namespace(init_pid: i32, name: &str) -> Result<Option<File>> {
    let theirs = format!("/proc/{init_pid}/ns/{name}");
    let file = File::open(&theirs).map_err(|e| {
        ContainerError::sys(format!("open {theirs} (is the container running?)"), e)
    })?;
    let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).ok();
    let same = match (file.metadata().ok(), ours) {
        (Some(a), Some(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    Ok((!same).then_some(file))
}

/// The exec'd process: wait for the release, join, set up, exec. Never returns.
fn child(
    cfg: &ContainerConfig,
    joins: &[(File, i32)],
    filters: &[Vec<super::sys::BpfInstruction>],
    sync_r: &mut File,
    mut err_w: File,
    console: Option<RawFd>,
    detach: bool,
) -> ! {
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
    if detach {
        // Released: from here it outlives the runtime, which its caller reaps it for.
        // SAFETY: integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    }
    let mut keep: Vec<RawFd> = vec![sync_r.as_raw_fd(), err_w.as_raw_fd()];
    keep.extend(console);
    keep.extend(joins.iter().map(|(f, _)| f.as_raw_fd()));
    let result = (|| -> Result<std::convert::Infallible> {
        close_inherited(keep)?;
        for (ns, flag) in joins {
            // SAFETY: setns on a descriptor we own, with its CLONE_NEW* flag.
            if unsafe { libc::setns(ns.as_raw_fd(), *flag) } != 0 {
                return Err(ContainerError::sys(
                    "join the container's namespaces",
                    std::io::Error::last_os_error(),
                ));
            }
        }
        // SAFETY: sigset_t is plain data; sigprocmask fills it.
        let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: a NULL new set only reads the current mask.
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, ptr::null(), &mut mask) };
        let sys = LinuxSyscall::new(mask);
        sys.umask(0);
        if cfg.terminal {
            let socket = console.ok_or_else(|| {
                ContainerError::Unsupported("a terminal without a console socket".into())
            })?;
            sys.attach_console(socket).map_err(|e| {
                ContainerError::sys("make the terminal and send it to the console socket", e)
            })?;
        }
        exec_workload(
            &sys,
            cfg,
            Extras {
                seccomp: filters,
                console_socket: None,
                gate: None,
                before_root_switch: None,
                outlives_runtime: detach,
            },
        )
    })();
    let err = match result {
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
