//! Another process in a running container (an OCI runtime's `exec`, which `podman exec`
//! and containerd's `ctr task exec` call): it joins the container's namespaces (the pid
//! namespace through this process, before the fork; the others in the child, the mount
//! namespace last, which also makes the container's root its root), joins its cgroup, and
//! then takes the same last steps as the container's first process: limits, seccomp,
//! capabilities and identity, working directory, exec.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr;

use edge::{error_chain, exit_code};

use super::config::{ConsoleSize, ContainerConfig, ProcessConfig, RootSwitch};
use super::error::{ContainerError, Result};
use super::init::{exec_workload, Extras};
use super::launch::{close_inherited, pipe, redirect_stdio, Running, Stdio};
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
    /// Give the process a pty, its primary end sent to `stdio.console_socket`.
    pub terminal: bool,
    /// The pty's size (none: the kernel's 0x0, until its owner sets one).
    pub console_size: Option<ConsoleSize>,
    /// The process outlives this one (its caller reaps it): no parent-death signal.
    pub detach: bool,
    /// Its standard streams; those left `None` are this process's own.
    pub stdio: Stdio,
}

/// Starts `process` in the running container `container` whose first process is
/// `init_pid`, with `stdio`, as a child of this process that it reaps: what an agent
/// that serves several workloads calls (see [`exec`] for the rest). `container`'s
/// `terminal` and `console_size` are the process's.
pub fn spawn_in(
    container: &ContainerConfig,
    init_pid: i32,
    cgroup_dirs: &[PathBuf],
    process: ProcessConfig,
    stdio: Stdio,
) -> Result<Running> {
    let request = ExecRequest {
        process,
        terminal: container.terminal,
        console_size: container.console_size,
        detach: false,
        stdio,
    };
    exec(container, init_pid, cgroup_dirs, request).map(Running::exec_of)
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
    cfg.console_size = request.console_size;
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
    // Joining the pid namespace changes where this process's later children go too: it
    // goes back to its own right after the fork (an agent execs more than once).
    let own_pid_ns = match foreign_namespace(init_pid, "pid")? {
        Some(pid_ns) => {
            let own = File::open("/proc/self/ns/pid")
                .map_err(|e| ContainerError::sys("open /proc/self/ns/pid", e))?;
            // Takes effect for this process's next child, which is the exec'd process.
            // SAFETY: setns on a descriptor we own; this process is single-threaded.
            if unsafe { libc::setns(pid_ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
                return Err(ContainerError::sys(
                    "join the container's pid namespace",
                    std::io::Error::last_os_error(),
                ));
            }
            Some(own)
        }
        None => None,
    };
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
    if pid != 0 {
        if let Some(own) = &own_pid_ns {
            // SAFETY: setns on a descriptor we own, back to this process's own (active)
            // pid namespace, which is always allowed.
            unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) };
        }
    }
    if pid < 0 {
        return Err(ContainerError::sys(
            "fork the exec'd process",
            std::io::Error::last_os_error(),
        ));
    }
    if pid == 0 {
        drop(sync_w);
        drop(err_r);
        let console = request
            .stdio
            .console_socket
            .as_ref()
            .map(AsRawFd::as_raw_fd);
        child(
            ChildPlan {
                cfg: &cfg,
                joins: &joins,
                filters: &filters,
                console,
                detach: request.detach,
                stdio: request.stdio,
            },
            &mut sync_r,
            err_w,
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

/// What the exec'd process is to become.
struct ChildPlan<'a> {
    cfg: &'a ContainerConfig,
    joins: &'a [(File, i32)],
    filters: &'a [Vec<super::sys::BpfInstruction>],
    console: Option<RawFd>,
    detach: bool,
    stdio: Stdio,
}

/// The exec'd process: wait for the release, join, set up, exec. Never returns.
fn child(plan: ChildPlan, sync_r: &mut File, mut err_w: File) -> ! {
    let ChildPlan {
        cfg,
        joins,
        filters,
        console,
        detach,
        stdio,
    } = plan;
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
        unsafe { libc::_exit(exit_code::FAILED.into()) };
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
        // Held open until the exec (close-on-exec) or the exit.
        let _console_socket = redirect_stdio(stdio)?;
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
        // A chrooted container (the `vm` level's baseline in a guest, `--no-pivot`): the
        // mount namespace joined (if any) has the host's root, so take the same chroot.
        if cfg.root_switch == RootSwitch::Chroot {
            sys.chroot(&cfg.rootfs)
                .and_then(|()| sys.chdir(Path::new("/")))
                .map_err(|e| ContainerError::sys(format!("chroot to {:?}", cfg.rootfs), e))?;
        }
        sys.umask(0);
        if cfg.terminal {
            let socket = console.ok_or_else(|| {
                ContainerError::Unsupported("a terminal without a console socket".into())
            })?;
            sys.attach_console(socket, cfg.console_size).map_err(|e| {
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
    unsafe { libc::_exit(exit_code::FAILED.into()) }
}
