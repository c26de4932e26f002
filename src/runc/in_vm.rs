//! `create` at the microVM levels (annotation `io.vmm.isolation: vm` or `vm+container`):
//! the container's process is a `vmm run` of the bundle at that level, which boots the
//! microVM, has the guest agent create the workload, says so on a pipe, and holds it
//! until `start` opens the exec FIFO. That process is the container's pid for the
//! caller (conmon, containerd's shim): signals sent to it reach the workload in the guest
//! (SIGKILL ends the VM), and its exit status is the workload's.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use oci_spec::runtime::Spec;
use runtime::config::ContainerConfig;

use super::cli::CreateArgs;
use super::create::{make_exec_fifo, write_pid_file, Made};
use super::error::RuncError;
use super::state::{self, Locked, Saved};

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
    let dir = locked.dir.clone();
    let fail = |e: RuncError| (dir.clone(), e);
    if args.console_socket.is_some() {
        return Err(fail(RuncError::Unsupported(format!(
            "a terminal (--console-socket) at the {level} level"
        ))));
    }
    let fifo = make_exec_fifo(&locked).map_err(fail)?;
    let (ready_r, ready_w) = ready_pipe().map_err(fail)?;
    let vmm = std::env::current_exe().map_err(|e| fail(RuncError::io("find the vmm binary", e)))?;
    let mut child = Command::new(&vmm)
        .arg0("vmm")
        .args(["run", "--isolation", level, "--name", &args.id])
        .arg("--bundle")
        .arg(&bundle)
        .arg("--hold-until")
        .arg(&fifo)
        .arg("--ready-fd")
        .arg(ready_w.as_raw_fd().to_string())
        // The container's stdio is the runtime's, as at the container level.
        .stdin(Stdio::inherit())
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
    };
    locked.save(&saved).map_err(fail)?;
    if let Some(path) = &args.pid_file {
        write_pid_file(path, pid).map_err(fail)?;
    }
    // The child is not waited for here: the caller's subreaper reaps it.
    Ok(Made { locked, saved })
}

/// The pipe on which `vmm run` says the workload is created: the write end is inherited
/// by it (no close-on-exec), the read end stays here.
fn ready_pipe() -> Result<(OwnedFd, OwnedFd), RuncError> {
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
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok((r, w))
}
