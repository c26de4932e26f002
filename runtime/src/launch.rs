//! The runtime's side of a container run: create the cgroup, clone the container's first
//! process into its new namespaces, write its id maps, put it in the cgroup, give it its
//! link to the host (`--net link`), let it go, then forward signals to it until it exits and
//! clean up.
//!
//! Call from a single-threaded process (the `vmm` binary, or a guest agent before it
//! starts threads): the child of the raw `clone` runs Rust code until it execs
//! (`launch/child.rs`). The link to the host is `launch/link.rs`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use edge::exit_code;

use super::cgroup::{self, Cgroup, CgroupMode};
use super::config::{ContainerConfig, IdMapping};
use super::error::{ContainerError, Result};
use super::hooks;
use super::rootfs::{HostInfo, V1Hierarchy};
use super::seccomp;

mod child;
mod link;

use child::{child_main, ChildGate, ChildPipes};
pub(crate) use child::{close_inherited, redirect_stdio};
use link::HostLink;

/// Signals a runtime passes on to its workload (SIGCHLD tells the runtime it exited).
pub const FORWARDED_SIGNALS: [i32; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

/// The signal set holding exactly `signals` (an empty one for `&[]`: the mask a workload
/// starts with).
pub fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable sigset; a number that is not a signal is refused by
    // sigaddset with EINVAL and leaves the set as it was.
    unsafe {
        libc::sigemptyset(&mut set);
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
    }
    set
}

/// How the workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status as a shell reports it: the code, or 128 + the signal number.
    pub status: u8,
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

pub(crate) fn pipe() -> Result<(File, File)> {
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
/// Public for `vmm --jail`, which waits for its jailed VMM the same way.
pub struct SignalMask {
    pub set: libc::sigset_t,
    pub saved: libc::sigset_t,
}

impl SignalMask {
    pub fn block() -> Result<Self> {
        let mut set = signal_set(&FORWARDED_SIGNALS);
        // SAFETY: `set` is a valid sigset and SIGCHLD a valid signal.
        unsafe { libc::sigaddset(&mut set, libc::SIGCHLD) };
        // SAFETY: sigset_t is plain data; overwritten by sigprocmask.
        let mut saved: libc::sigset_t = unsafe { std::mem::zeroed() };
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

/// Where the workload's standard streams go; `None` leaves the runtime's own in place.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// For a workload with a terminal (`terminal` in its config): a connected unix socket
    /// that takes the pty's primary end (SCM_RIGHTS), as runc's `--console-socket`. The
    /// secondary end then replaces all three streams.
    pub console_socket: Option<OwnedFd>,
}

/// A started container: its first process, its cgroup and its link to the host. Dropping
/// it before [`Running::finish`] kills the process and everything in its cgroup, reaps the
/// process, removes the cgroup and deletes the link, so no early return leaves anything
/// behind. (Fields drop in this order.)
pub struct Running {
    child: Child,
    cgroup: Option<Cgroup>,
    link: Option<HostLink>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("pid", &self.child.pid)
            .finish()
    }
}

impl Running {
    /// The container's first process, as this process sees it.
    pub fn pid(&self) -> i32 {
        self.child.pid
    }

    /// Sends `signal` to the container's first process.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        // SAFETY: the child is not reaped yet (finish consumes self), so the pid is ours.
        if unsafe { libc::kill(self.child.pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Kills every process left in the container's cgroup (the first process included);
    /// without a cgroup only the first process. For a workload that leaves children
    /// behind when it exits, or one whose caller went away.
    pub fn kill_all(&self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        let _ = self.signal(libc::SIGKILL);
    }

    /// How the workload ended, from the wait status of its first process, which the
    /// caller reaped (an init's event loop reaps every child itself). Kills what is left
    /// in the cgroup, and removes the cgroup and the link to the host.
    pub fn finish(mut self, wait_status: libc::c_int) -> Outcome {
        self.child.reaped = true;
        let oom_killed = self.cgroup.as_ref().is_some_and(Cgroup::oom_killed);
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.kill_all();
            drop(cgroup);
        }
        drop(self.link.take());
        Outcome::from_wait_status(wait_status, oom_killed)
    }
}

impl Running {
    /// Another process of a running container (an exec, see [`crate::exec::spawn_in`]),
    /// this process's unreaped child: dropping it kills and reaps that process alone, and
    /// its end leaves the container's cgroup as it is.
    pub(crate) fn exec_of(pid: i32) -> Self {
        Self {
            child: Child { pid, reaped: false },
            cgroup: None,
            link: None,
        }
    }

    /// The container's cgroup directories (one per v1 hierarchy; one on v2), where an
    /// exec'd process joins it.
    pub fn cgroup_dirs(&self) -> Vec<std::path::PathBuf> {
        self.cgroup.as_ref().map(Cgroup::dirs).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        // Then `child` kills and reaps the first process, and `cgroup` removes the group.
    }
}

impl Outcome {
    /// The outcome of a wait status as waitpid(2) reports it.
    pub fn from_wait_status(status: libc::c_int, oom_killed: bool) -> Self {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            Self {
                status: exit_code::signalled(sig),
                signal: Some(sig),
                oom_killed,
            }
        } else {
            Self {
                status: libc::WEXITSTATUS(status) as u8,
                signal: None,
                oom_killed,
            }
        }
    }
}

/// Run the container to completion with the runtime's own stdio, passing on the signals
/// the runtime receives (SIGINT, SIGTERM, ...) to the workload.
pub fn run(cfg: &ContainerConfig) -> Result<Outcome> {
    run_recording(cfg, &mut |_| Ok(()))
}

/// [`run`], telling `record` the container's cgroup directories as soon as they exist,
/// before any process is in them: a caller that records them (in its state directory)
/// lets whoever comes after a killed runtime find and remove them. An error from
/// `record` ends the run before it starts.
pub fn run_recording(cfg: &ContainerConfig, record: CgroupRecorder<'_>) -> Result<Outcome> {
    let mask = SignalMask::block()?;
    let running = spawn_with(cfg, Stdio::default(), &mask.saved, None, Some(record))?.0;
    let status = wait_forwarding(running.pid(), &mask.set)?;
    Ok(running.finish(status))
}

/// What [`run_recording`] calls with the new cgroup's directories.
pub type CgroupRecorder<'a> = &'a mut dyn FnMut(&[std::path::PathBuf]) -> Result<()>;

/// Create the container and start its command; returns once the command is about to be
/// executed (or with the error that stopped the setup). `child_mask` is the signal mask
/// the workload starts with. Call it while this process has a single thread: the child of
/// the raw `clone` runs Rust code until it execs.
pub fn spawn(cfg: &ContainerConfig, stdio: Stdio, child_mask: &libc::sigset_t) -> Result<Running> {
    spawn_with(cfg, stdio, child_mask, None, None).map(|(running, _)| running)
}

/// What an OCI runtime's `create` gives the container's first process to wait on.
pub struct CreateOptions {
    /// The exec FIFO, opened `O_PATH`: once set up, the first process reopens it for
    /// writing (through /proc/self/fd, as the FIFO's path is gone after pivot_root),
    /// which blocks until `start` opens it for reading; then it runs the workload.
    pub exec_fifo: OwnedFd,
    /// The container's state JSON (runtime-spec `state`) for the hooks, status `created`,
    /// once the first process's pid is known: `state(pid)`.
    pub state: Box<dyn Fn(i32) -> Vec<u8>>,
}

/// A container made by [`create`]: its first process set up and waiting on the exec
/// FIFO. Dropping it before [`Created::commit`] kills the process and removes its cgroup.
#[derive(Debug)]
pub struct Created {
    running: Running,
    commit: File,
}

impl Created {
    pub fn pid(&self) -> i32 {
        self.running.pid()
    }

    /// The container's cgroup directories on the host (one per v1 hierarchy; one on v2).
    pub fn cgroup_dirs(&self) -> Vec<std::path::PathBuf> {
        self.running
            .cgroup
            .as_ref()
            .map(Cgroup::dirs)
            .unwrap_or_default()
    }

    /// Lets the container outlive this process, once the caller has recorded it: the
    /// first process stops watching for this process's death, and nothing is cleaned up
    /// here any more (the caller's `delete` does that).
    pub fn commit(mut self) -> Result<()> {
        self.commit
            .write_all(&[1])
            .map_err(|e| ContainerError::sys("let the container outlive `create`", e))?;
        if let Some(cgroup) = self.running.cgroup.take() {
            cgroup.keep();
        }
        self.running.child.reaped = true;
        if let Some(link) = self.running.link.take() {
            link.keep();
        }
        Ok(())
    }
}

/// Create the container as an OCI runtime's `create` does: set up, then hold the first
/// process before its workload until `start` opens the exec FIFO. Returns once the process
/// waits there (or with the error that stopped the setup). The prestart and createRuntime
/// hooks run here, the createContainer hooks in the first process before this returns.
/// Call it while this process has a single thread.
pub fn create(cfg: &ContainerConfig, stdio: Stdio, options: CreateOptions) -> Result<Created> {
    // The workload starts with this process's signal mask (nothing is blocked here).
    // SAFETY: sigset_t is plain data; sigprocmask fills it.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a NULL new set only reads the current mask into `mask`.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, ptr::null(), &mut mask) };
    let (running, commit) = spawn_with(cfg, stdio, &mask, Some(options), None)?;
    let commit = commit.ok_or_else(|| ContainerError::Setup("no commit pipe".into()))?;
    Ok(Created { running, commit })
}

fn spawn_with(
    cfg: &ContainerConfig,
    stdio: Stdio,
    child_mask: &libc::sigset_t,
    create: Option<CreateOptions>,
    record: Option<CgroupRecorder<'_>>,
) -> Result<(Running, Option<File>)> {
    if cfg.net_link.is_some() && !cfg.namespaces.net {
        return Err(ContainerError::Unsupported(
            "a link to the host without a network namespace of its own".into(),
        ));
    }
    let filters = match &cfg.seccomp {
        Some(profile) => seccomp::compile(profile)?,
        None => Vec::new(),
    };
    let mode = cgroup::detect_mode();
    let cgroup = if cfg.cgroup {
        Some(Cgroup::create(
            mode,
            &cfg.id,
            cfg.cgroup_path.as_deref(),
            &cfg.resources,
            &cfg.device_rules,
        )?)
    } else {
        None
    };
    if let (Some(record), Some(cgroup)) = (record, &cgroup) {
        record(&cgroup.dirs())?;
    }
    let host = HostInfo {
        cgroup2: mode == CgroupMode::V2,
        cgroup_v1: match &cgroup {
            Some(Cgroup::V1(c)) => {
                // Unreadable, the container's /sys/fs/cgroup is just empty.
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
                V1Hierarchy::of_groups(&cgroup::v1::hierarchies(&mountinfo), c.dirs())
            }
            _ => Vec::new(),
        },
    };
    let restricted;
    let devices_restricted = cgroup.as_ref().is_some_and(Cgroup::restricts_devices);
    let cfg = if !cfg.default_devices || devices_restricted {
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
            &filters,
            ChildPipes {
                sync_r,
                err_w,
                parent_ends: [sync_w.as_raw_fd(), err_r.as_raw_fd()],
            },
            stdio,
            child_mask,
            create.as_ref().map(|c| ChildGate {
                exec_fifo: c.exec_fifo.as_raw_fd(),
            }),
        );
    }
    drop(stdio);
    let mut running = Running {
        child: Child {
            pid: pid as i32,
            reaped: false,
        },
        cgroup,
        link: None,
    };
    drop(sync_r);
    drop(err_w);

    if cfg.namespaces.user {
        write_id_map(running.pid(), "uid_map", &cfg.uid_mappings)?;
        write_id_map(running.pid(), "gid_map", &cfg.gid_mappings)?;
    }
    if let Some(cgroup) = &running.cgroup {
        cgroup.add_process(running.pid())?;
    }
    // The child waits for the release below, in its new network namespace: its end of the
    // link is there before it configures it.
    if let Some(link) = &cfg.net_link {
        running.link = link::set_up(link, running.pid())?;
    }
    // The release carries the state the first process hands to its hooks.
    let state = match &create {
        Some(c) => {
            let state = (c.state)(running.pid());
            hooks::run("prestart", &cfg.hooks.prestart, &state)?;
            hooks::run("createRuntime", &cfg.hooks.create_runtime, &state)?;
            state
        }
        None => Vec::new(),
    };
    let mut release = vec![1u8];
    release.extend_from_slice(&(state.len() as u32).to_le_bytes());
    release.extend_from_slice(&state);
    sync_w
        .write_all(&release)
        .map_err(|e| ContainerError::sys("release the container process", e))?;
    drop(create);

    let mut report = Vec::new();
    let _ = err_r.read_to_end(&mut report);
    let gated = !state.is_empty();
    if gated {
        // Set up and waiting for the commit: a report of one 0 byte.
        if report == [0] {
            return Ok((running, Some(sync_w)));
        }
        if report.is_empty() {
            return Err(ContainerError::Setup(
                "the container's first process ended before it was ready".into(),
            ));
        }
    }
    drop(sync_w);
    if let Some((&kind, message)) = report.split_first() {
        // The child has exited after writing its report: reap it here.
        // SAFETY: `pid` is our unreaped child.
        unsafe { libc::waitpid(running.pid(), ptr::null_mut(), 0) };
        running.child.reaped = true;
        return Err(ContainerError::Child {
            message: String::from_utf8_lossy(message).into_owned(),
            bad_input: kind == 2,
        });
    }
    Ok((running, None))
}

fn write_id_map(pid: i32, file: &str, maps: &[IdMapping]) -> Result<()> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, text).map_err(|e| ContainerError::sys(format!("write {path}"), e))
}

/// Wait for `pid`, passing on every forwarded signal the runtime receives meanwhile
/// (block them and SIGCHLD first).
pub fn wait_forwarding(pid: i32, set: &libc::sigset_t) -> Result<libc::c_int> {
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
