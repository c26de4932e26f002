//! `create` at the microVM levels (annotation `io.vmm.isolation: vm` or `vm+container`):
//! the container's process is a `vmm run` of the bundle at that level, which boots the
//! microVM, has the guest agent create the workload, says so on a pipe, and holds it
//! until `start` opens the exec FIFO. That process is the container's pid for the
//! caller (conmon, containerd's shim): signals sent to it reach the workload in the guest
//! (SIGKILL ends the VM), and its exit status is the workload's. `exec` is another
//! `vmm run` that has the agent run the process in that workload (`--exec-in`). With a
//! terminal, `vmm run`'s stdio is a host pty that the caller holds the other end of (see
//! [`console`]).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use oci_spec::runtime::Spec;
use runtime::config::{ContainerConfig, ProcessConfig};

use super::cli::{CreateArgs, ExecArgs};
use super::console;
use super::create::{make_exec_fifo, write_pid_file, Made};
use super::error::RuncError;
use super::state::{self, Locked, Record, Saved};

/// The longest failure message taken from `vmm run` (one error chain).
const READY_MESSAGE_MAX: u64 = 64 << 10;

pub fn set_up(
    locked: Locked,
    args: &CreateArgs,
    bundle: PathBuf,
    spec: &Spec,
    config: ContainerConfig,
    level: &'static str,
) -> Result<Made, (PathBuf, RuncError)> {
    let dir = locked.dir().to_path_buf();
    let fail = |e: RuncError| (dir.clone(), e);
    let terminal = host_terminal(config.terminal, args.console_socket.as_deref()).map_err(fail)?;
    let fifo = make_exec_fifo(&locked).map_err(fail)?;
    let (ready_r, ready_w) = pipe_to_child(ChildEnd::Write).map_err(fail)?;
    let vmm = std::env::current_exe().map_err(|e| fail(RuncError::io("find the vmm binary", e)))?;
    let mut command = Command::new(&vmm);
    command
        .arg0("vmm")
        .args(["run", "--isolation", level, "--name", &args.id])
        .arg("--bundle")
        .arg(&bundle)
        .arg("--hold-until")
        .arg(&fifo)
        .arg("--ready-fd")
        .arg(ready_w.as_raw_fd().to_string());
    // The container's stdio is the runtime's, as at the container level, or the terminal.
    on_terminal(&mut command, terminal).map_err(fail)?;
    let mut child = command
        .spawn()
        .map_err(|e| fail(RuncError::io(format!("run {vmm:?} run"), e)))?;
    drop(ready_w);
    // One byte 1 when the workload is created; otherwise why it failed, if vmm run could
    // say (it closes the pipe either way, or dies).
    let mut said = Vec::new();
    let _ = std::fs::File::from(ready_r)
        .take(READY_MESSAGE_MAX)
        .read_to_end(&mut said);
    if said != [1] {
        let status = child.wait().ok();
        let why = String::from_utf8_lossy(&said).trim().to_owned();
        let why = match why.is_empty() {
            true => format!(
                "vmm run: {}",
                status.map_or("no status".into(), |s| s.to_string())
            ),
            false => why,
        };
        return Err(fail(RuncError::Unsupported(format!(
            "the {level} level failed before the workload was created in the microVM: {why}"
        ))));
    }
    let pid = child.id() as i32;
    let saved = Saved {
        id: args.id.clone(),
        bundle,
        pid,
        pid_start: state::proc_stat(pid).map_or(0, |(start, _)| start),
        created: super::now_rfc3339(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        // The VMM's own; the workload's cgroup is in the guest.
        cgroup_dirs: Vec::new(),
        config,
        vm_socket: Some(crate::run::vm_socket_of_run(child.id())),
    };
    locked.save(&saved).map_err(fail)?;
    if let Some(path) = &args.pid_file {
        write_pid_file(path, pid).map_err(fail)?;
    }
    // The child is not waited for here: the caller's subreaper reaps it.
    Ok(Made { locked, saved })
}

/// Which end of a pipe `vmm run` inherits; the other stays here, close-on-exec.
#[derive(Clone, Copy)]
enum ChildEnd {
    /// It writes (the ready pipe: it says when the workload is created).
    Write,
    /// It reads (the process of an `exec`).
    Read,
}

/// A pipe (read end, write end) whose `child` end `vmm run` inherits.
fn pipe_to_child(child: ChildEnd) -> Result<(OwnedFd, OwnedFd), RuncError> {
    let mut fds = [0; 2];
    // SAFETY: a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), 0) } != 0 {
        return Err(RuncError::io(
            "create a pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: pipe2 made both; nothing else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let ours = match child {
        ChildEnd::Write => &r,
        ChildEnd::Read => &w,
    };
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((r, w))
}

/// The secondary end of the host's pty for a workload with a terminal (its primary end
/// sent to the console socket), or none for one without.
fn host_terminal(
    terminal: bool,
    console_socket: Option<&std::path::Path>,
) -> Result<Option<OwnedFd>, RuncError> {
    if !terminal {
        return Ok(None);
    }
    let path = console_socket.ok_or_else(|| {
        RuncError::Unsupported(
            "process.terminal=true without a console socket (--console-socket)".into(),
        )
    })?;
    console::host_pty_for(&console::connect(path)?).map(Some)
}

/// Gives `vmm run` the host's pty as its stdio and controlling terminal, when there is
/// one; otherwise it keeps this process's stdio.
fn on_terminal(command: &mut Command, terminal: Option<OwnedFd>) -> Result<(), RuncError> {
    let Some(pty) = terminal else {
        command.stdin(Stdio::inherit());
        return Ok(());
    };
    let copy = || {
        pty.try_clone()
            .map_err(|e| RuncError::io("copy the terminal's descriptor", e))
    };
    command.stdin(copy()?).stdout(copy()?).stderr(pty);
    // SAFETY: the hook calls only async-signal-safe functions (setsid, ioctl), as a
    // pre_exec hook must.
    unsafe { command.pre_exec(console::take_as_controlling_terminal) };
    Ok(())
}

/// `exec` at the VM levels: `vmm run --vm-socket <the container's VM> --exec-in ID`, whose
/// streams, signals and exit status are the process's. Without `--detach` this process
/// becomes it (same pid, for `--pid-file`); with it, it is a child the caller reaps.
pub fn exec(
    locked: Locked,
    saved: &Saved,
    args: &ExecArgs,
    level: &str,
    process: ProcessConfig,
    terminal: bool,
) -> Result<ExitCode, RuncError> {
    let Some(socket) = &saved.vm_socket else {
        return Err(RuncError::Unsupported(format!(
            "exec in {:?}: its state has no VM socket (made by an older vmm-runc?)",
            saved.id
        )));
    };
    let json = serde_json::to_vec(&process)
        .map_err(|e| RuncError::Unsupported(format!("encode the process: {e}")))?;
    if json.len() > PROCESS_PIPE_MAX {
        return Err(RuncError::Unsupported(format!(
            "the process is {} bytes as JSON; at most {PROCESS_PIPE_MAX} at the {level} level",
            json.len()
        )));
    }
    // Passed on a pipe the child inherits: nothing to clean up, whoever ends first.
    let (process_r, process_w) = pipe_to_child(ChildEnd::Read)?;
    std::fs::File::from(process_w)
        .write_all(&json)
        .map_err(|e| RuncError::io("pass the process to vmm run", e))?;
    let vmm = std::env::current_exe().map_err(|e| RuncError::io("find the vmm binary", e))?;
    let mut command = Command::new(&vmm);
    command
        .arg0("vmm")
        .args(["run", "--isolation", level, "--exec-in", &saved.id])
        .arg("--vm-socket")
        .arg(socket)
        .arg("--exec-process")
        .arg(format!("/proc/self/fd/{}", process_r.as_raw_fd()));
    if terminal {
        command.arg("--exec-terminal");
    }
    on_terminal(
        &mut command,
        host_terminal(terminal, args.console_socket.as_deref())?,
    )?;
    drop(locked);
    if args.detach {
        let child = command
            .spawn()
            .map_err(|e| RuncError::io(format!("run {vmm:?} run"), e))?;
        if let Some(path) = &args.pid_file {
            write_pid_file(path, child.id() as i32)?;
        }
        // The caller reaps it.
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.pid_file {
        write_pid_file(path, std::process::id() as i32)?;
    }
    let e = command.exec();
    Err(RuncError::io(format!("run {vmm:?} run"), e))
}

/// The most process JSON passed on a pipe: written before the reader runs, it must fit
/// the pipe's buffer (64 KiB on Linux).
const PROCESS_PIPE_MAX: usize = 60 << 10;
