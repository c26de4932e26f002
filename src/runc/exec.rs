//! `exec`: another process in a running container, from `--process FILE` (config.json's
//! `process` object, what Podman and containerd pass) or from the command line.

use std::path::Path;
use std::process::ExitCode;

use runtime::exec::{self, ExecRequest};
use runtime::launch;

use super::cli::ExecArgs;
use super::create::write_pid_file;
use super::error::RuncError;
use super::state::{self, Record, Status};

pub fn exec(root: &Path, args: &ExecArgs) -> Result<ExitCode, RuncError> {
    let locked = state::open(root, &args.id)?;
    let saved = locked.load()?;
    let status = saved.status(locked.dir());
    if status != Status::Running {
        return Err(RuncError::WrongStatus {
            id: args.id.clone(),
            op: "exec in",
            status: status.as_str(),
        });
    }
    let (process, terminal, console_size) = match &args.process {
        Some(path) => {
            let text = std::fs::read(path)
                .map_err(|e| RuncError::io(format!("read the process file {path:?}"), e))?;
            let process: oci_spec::runtime::Process =
                serde_json::from_slice(&text).map_err(|e| {
                    RuncError::Unsupported(format!("process file {path:?} does not parse: {e}"))
                })?;
            let terminal = process.terminal().unwrap_or(false);
            let size = process
                .console_size()
                .as_ref()
                .map(runtime::spec::console_size);
            (runtime::spec::process_from_oci(&process)?, terminal, size)
        }
        None => (
            from_command_line(&saved.config.process, args)?,
            args.tty,
            None,
        ),
    };
    if let Some(level) = saved
        .annotations
        .get(super::create::ISOLATION_ANNOTATION)
        .filter(|l| l.starts_with("vm"))
    {
        // Its pid is the VMM's: the process must reach the guest's agent instead.
        let level = level.clone();
        return super::in_vm::exec(locked, &saved, args, &level, process, terminal);
    }
    let console_socket = match &args.console_socket {
        Some(path) => Some(super::console::connect(path)?),
        None => None,
    };
    // Blocked before the fork, so a signal meant for the process is passed on.
    let mut set = launch::signal_set(&launch::FORWARDED_SIGNALS);
    if !args.detach {
        // SAFETY: `set` is a valid sigset and SIGCHLD a valid signal.
        unsafe { libc::sigaddset(&mut set, libc::SIGCHLD) };
        // SAFETY: a valid set; this process ends after the exec'd one.
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    }
    let pid = exec::exec(
        &saved.config,
        saved.pid,
        &saved.cgroup_dirs,
        ExecRequest {
            process,
            terminal,
            console_size,
            detach: args.detach,
            stdio: launch::Stdio {
                console_socket,
                ..Default::default()
            },
        },
    )?;
    if let Some(path) = &args.pid_file {
        write_pid_file(path, pid)?;
    }
    drop(locked);
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let status = launch::wait_forwarding(pid, &set)?;
    Ok(ExitCode::from(
        launch::Outcome::from_wait_status(status, false).status,
    ))
}

/// The container's own process settings with the command, and `--cwd`, `--env` and
/// `--user` from the command line.
fn from_command_line(
    base: &runtime::config::ProcessConfig,
    args: &ExecArgs,
) -> Result<runtime::config::ProcessConfig, RuncError> {
    if args.command.is_empty() {
        return Err(RuncError::Unsupported(
            "exec needs --process FILE or a command".into(),
        ));
    }
    let mut process = base.clone();
    process.args = args.command.clone();
    if let Some(cwd) = &args.cwd {
        process.cwd = cwd.clone();
    }
    process.env.extend(args.env.iter().cloned());
    if let Some(user) = &args.user {
        let bad = || RuncError::Unsupported(format!("--user {user:?}: use UID[:GID]"));
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        process.uid = uid.parse().map_err(|_| bad())?;
        process.gid = gid.parse().map_err(|_| bad())?;
    }
    Ok(process)
}
