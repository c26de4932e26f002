//! `vmm-runc`: the OCI runtime command line (runc's), so Podman, Docker and containerd run
//! containers with vmm's runtime. The `vmm` binary becomes it when called as `vmm-runc`
//! (the small `vmm-runc` binary cargo builds executes `vmm` under that name).
//!
//! Lifecycle, as runc's: `create` sets the container up and leaves its first process
//! waiting on an exec FIFO in the container's state directory; `start` opens the FIFO,
//! which lets the process run the workload; the caller (conmon, containerd's shim) reaps
//! it; `delete` removes the cgroup and the state. `state` tells created from running by
//! whether the FIFO is still there, and running from stopped by the process (pid and
//! start time).

mod cli;
mod console;
mod create;
mod error;
mod exec;
mod features;
mod in_vm;
mod lifecycle;
mod log;
mod signals;
mod state;

use std::process::ExitCode;

use clap::Parser;
use edge::{error_chain, exit_code};
use runtime::launch;

use cli::{Cli, Command};
use error::RuncError;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = log::Log::new(cli.log.clone(), cli.log_format, cli.debug);
    log.debug(&format!("{:?}", std::env::args().collect::<Vec<_>>()));
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            log.error(&error_chain(&e));
            ExitCode::from(exit_code::of_error(e.is_bad_input()))
        }
    }
}

fn dispatch(cli: &Cli) -> Result<ExitCode, RuncError> {
    if cli.systemd_cgroup {
        return Err(RuncError::Unsupported(
            "--systemd-cgroup: vmm-runc manages cgroups itself (cgroupfs); configure the \
             client for cgroupfs (Podman: cgroup_manager = \"cgroupfs\")"
                .into(),
        ));
    }
    let root = &cli.root;
    match &cli.command {
        Command::Create(args) => create::create(root, args).map(|_| ExitCode::SUCCESS),
        Command::Start { id } => lifecycle::start(root, id).map(|()| ExitCode::SUCCESS),
        Command::State { id } => out(&(lifecycle::state(root, id)? + "\n")),
        Command::Kill { all, id, signal } => {
            lifecycle::kill(root, id, signal, *all).map(|()| ExitCode::SUCCESS)
        }
        Command::Delete { force, id } => {
            lifecycle::delete(root, id, *force).map(|()| ExitCode::SUCCESS)
        }
        Command::Run(args) => run(root, args),
        Command::Exec(args) => exec::exec(root, args),
        Command::List { format, quiet } => out(&lifecycle::list(root, *format, *quiet)?),
        Command::Ps { format, id } => out(&lifecycle::ps(root, id, *format)?),
        Command::Features => out(&format!("{:#}\n", features::json())),
    }
}

/// Prints `text`; a reader that went away (`| head`) is not an error of ours.
fn out(text: &str) -> Result<ExitCode, RuncError> {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `run`: create and start; unless detached, wait for the workload (passing signals on),
/// delete the container and exit with the workload's status.
fn run(root: &std::path::Path, args: &cli::RunArgs) -> Result<ExitCode, RuncError> {
    let made = create::create(root, &args.create)?;
    // Blocked before start, so a signal sent once the workload runs is passed on.
    let mut set = launch::signal_set(&launch::FORWARDED_SIGNALS);
    // SAFETY: `set` is a valid sigset and SIGCHLD a valid signal.
    unsafe { libc::sigaddset(&mut set, libc::SIGCHLD) };
    // SAFETY: a valid set; the old mask is not needed (this process ends after the run).
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    lifecycle::start_locked(&made.locked, &made.saved)?;
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let status = launch::wait_forwarding(made.saved.pid, &set)?;
    let outcome = launch::Outcome::from_wait_status(status, false);
    lifecycle::delete_locked(made.locked, &made.saved, true)?;
    Ok(ExitCode::from(outcome.status))
}

/// Now as RFC 3339 in UTC (second precision), without a date-time crate for one format.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_300_000), "2026-12-03T12:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
