//! The operations on an existing container: `start`, `state`, `kill`, `delete`, `list`,
//! `ps`, each under the container's lock.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use runtime::cgroup::Cgroup;
use runtime::hooks;

use super::cli::ListFormat;
use super::error::RuncError;
use super::signals;
use super::state::{self, Locked, Record, Saved, Status};

/// How long `delete` waits for a killed container to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

pub fn start(root: &Path, id: &str) -> Result<(), RuncError> {
    let locked = state::open(root, id)?;
    let saved = locked.load()?;
    start_locked(&locked, &saved)
}

/// Lets the created container's process go: opens the exec FIFO, whose other end the
/// process opens when it is ready, and reads its byte; then the poststart hooks.
pub fn start_locked(locked: &Locked, saved: &Saved) -> Result<(), RuncError> {
    let status = saved.status(locked.dir());
    if status != Status::Created {
        return Err(RuncError::WrongStatus {
            id: saved.id.clone(),
            op: "start",
            status: status.as_str(),
        });
    }
    let fifo_path = locked.fifo();
    // Non-blocking: a process that died before opening its end would hang a blocking open.
    let mut fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo_path)
        .map_err(|e| RuncError::io(format!("open the exec FIFO {fifo_path:?}"), e))?;
    loop {
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call's duration.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready > 0 && pfd.revents & libc::POLLIN != 0 {
            let mut byte = [0u8; 1];
            if fifo.read(&mut byte).is_ok_and(|n| n == 1) {
                break;
            }
        }
        if !saved.alive() {
            return Err(RuncError::WrongStatus {
                id: saved.id.clone(),
                op: "start",
                status: "stopped (its process exited before start)",
            });
        }
    }
    let _ = std::fs::remove_file(&fifo_path);
    let state = saved.state_json(Status::Running).to_string();
    // The spec: a failing poststart hook is logged, and the container keeps running.
    if let Err(e) = hooks::run("poststart", &saved.config.hooks.poststart, state.as_bytes()) {
        eprintln!("vmm-runc: warning: {e}");
    }
    Ok(())
}

pub fn state(root: &Path, id: &str) -> Result<String, RuncError> {
    let locked = state::open(root, id)?;
    let saved = locked.load()?;
    let status = saved.status(locked.dir());
    // `{:#}` is serde_json's pretty printer, which cannot fail for a Value.
    Ok(format!("{:#}", saved.state_json(status)))
}

pub fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<(), RuncError> {
    let sig = signals::parse(signal)?;
    let locked = state::open(root, id)?;
    let saved = locked.load()?;
    if saved.status(locked.dir()) == Status::Stopped {
        return Err(RuncError::WrongStatus {
            id: id.to_owned(),
            op: "kill",
            status: "stopped",
        });
    }
    if all {
        for pid in procs(&saved) {
            // SAFETY: kill(2) with integers; a process that just exited is ESRCH.
            unsafe { libc::kill(pid, sig) };
        }
        return Ok(());
    }
    // SAFETY: as above; `alive` checked the pid is still the container's.
    if unsafe { libc::kill(saved.pid, sig) } != 0 {
        return Err(RuncError::io(
            format!("send signal {sig} to {}", saved.pid),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The container's processes, from its cgroup (its first process when it has none).
fn procs(saved: &Saved) -> Vec<i32> {
    match saved.cgroup_dirs.first() {
        Some(dir) => Cgroup::procs_of(dir),
        None if saved.alive() => vec![saved.pid],
        None => Vec::new(),
    }
}

pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), RuncError> {
    let locked = match state::open(root, id) {
        Ok(locked) => locked,
        // Like crun: deleting what is gone, forcefully, is done.
        Err(RuncError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let saved = match locked.load() {
        Ok(saved) => saved,
        // A `create` that died before recording: only the directory is left.
        Err(RuncError::NotFound(_)) => return Ok(locked.remove()?),
        Err(e) => return Err(e),
    };
    delete_locked(locked, &saved, force)
}

pub fn delete_locked(locked: Locked, saved: &Saved, force: bool) -> Result<(), RuncError> {
    let status = saved.status(locked.dir());
    if status == Status::Running && !force {
        return Err(RuncError::WrongStatus {
            id: saved.id.clone(),
            op: "delete",
            status: "running (stop it first, or use --force)",
        });
    }
    if status != Status::Stopped {
        // A created container is deleted by killing its waiting process, as runc does.
        kill_everything(saved);
    }
    for dir in &saved.cgroup_dirs {
        runtime::cgroup::remove_dir(dir);
    }
    let state = saved.state_json(Status::Stopped).to_string();
    if let Err(e) = hooks::run("poststop", &saved.config.hooks.poststop, state.as_bytes()) {
        eprintln!("vmm-runc: warning: {e}");
    }
    Ok(locked.remove()?)
}

/// SIGKILL to every process of the container, then wait (bounded) until none is left.
fn kill_everything(saved: &Saved) {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let mut left = procs(saved);
        if saved.alive() && !left.contains(&saved.pid) {
            left.push(saved.pid);
        }
        // Zombies are gone for our purpose: their parent (conmon, the shim) reaps them.
        left.retain(|&pid| state::proc_stat(pid).is_some_and(|(_, s)| s != 'Z'));
        if left.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in left {
            // SAFETY: kill(2) with integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn list(root: &Path, format: ListFormat, quiet: bool) -> Result<String, RuncError> {
    let mut rows = Vec::new();
    for id in state::ids(root) {
        let Ok(locked) = state::open(root, &id) else {
            continue;
        };
        let Ok(saved) = locked.load() else { continue };
        rows.push((saved.status(locked.dir()), saved));
    }
    if quiet {
        return Ok(rows.iter().map(|(_, s)| format!("{}\n", s.id)).collect());
    }
    Ok(match format {
        ListFormat::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|(status, s)| s.state_json(*status))
                .collect();
            serde_json::Value::from(list).to_string() + "\n"
        }
        ListFormat::Table => {
            let mut out = format!(
                "{:<20} {:<8} {:<8} {:<30} {}\n",
                "ID", "PID", "STATUS", "CREATED", "BUNDLE"
            );
            for (status, s) in &rows {
                let pid = if *status == Status::Stopped { 0 } else { s.pid };
                out += &format!(
                    "{:<20} {:<8} {:<8} {:<30} {}\n",
                    s.id,
                    pid,
                    status.as_str(),
                    s.created,
                    s.bundle.display()
                );
            }
            out
        }
    })
}

pub fn ps(root: &Path, id: &str, format: ListFormat) -> Result<String, RuncError> {
    let locked = state::open(root, id)?;
    let saved = locked.load()?;
    let pids = procs(&saved);
    Ok(match format {
        ListFormat::Json => serde_json::Value::from(pids).to_string() + "\n",
        ListFormat::Table => {
            let mut out = String::from("PID CMD\n");
            for pid in pids {
                let cmd = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                out += &format!("{pid} {}\n", cmd.trim());
            }
            out
        }
    })
}
