//! `vmm-agent`: PID 1 of a guest's initramfs, serving `vmm` over vsock with the protocol of
//! [`agent_protocol::protocol`] (see docs/agent-protocol.md): it prepares, runs and reports
//! workloads with the same container runtime `vmm` uses on the host.
//!
//! As PID 1 (the default when its pid is 1) it sets the guest up ([`guest_init`]), serves
//! until `shutdown`, then powers the guest off; it never exits, which would panic the
//! kernel. With `--listen unix:PATH --rootfs-dir DIR` it runs on a host for tests: same
//! protocol, a Unix socket, no PID 1 duties, and `shutdown` makes it exit 0.

mod args;
mod connection;
mod event_loop;
mod files;
mod guest_init;
mod lifecycle;
mod link;
mod listener;
mod relay;
mod request_error;
mod requests;
mod rootfs;
mod signals;
mod sys;
mod terminal;
mod workload;

use std::ffi::OsString;
use std::path::Path;

use agent_protocol::protocol::AGENT_PORT;
use edge::{error_chain, exit_code};

use args::Command;
use event_loop::{Agent, Setting};
use listener::Listener;
use signals::Signals;

fn main() {
    if std::process::id() == 1 {
        guest_main();
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let status = match args::parse(&args) {
        Ok(Command::Help) => {
            sys::say(args::USAGE);
            exit_code::SUCCESS
        }
        Ok(Command::Test { socket, rootfs_dir }) => test_main(&socket, &rootfs_dir),
        Err(e) => {
            sys::complain(&format!("vmm-agent: {e}\n"));
            exit_code::BAD_INPUT
        }
    };
    // Only in test mode: PID 1 never gets here (`guest_main` powers off).
    std::process::exit(status.into());
}

/// PID 1 of a guest: set the guest up, serve, power off.
fn guest_main() -> ! {
    // A panic must not end PID 1 (the kernel would panic in turn): power off instead.
    std::panic::set_hook(Box::new(|info| {
        sys::complain(&format!("vmm-agent: {info}\n"));
        guest_init::power_off();
    }));
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => fail_as_pid1("take signals through a signalfd", &e),
    };
    for failure in guest_init::init() {
        sys::complain(&format!("vmm-agent: warning: {}\n", error_chain(&failure)));
    }
    let listener = match Listener::vsock() {
        Ok(listener) => listener,
        Err(e) => fail_as_pid1("listen", &e),
    };
    sys::say(&format!(
        "vmm-agent: listening on vsock port {AGENT_PORT}\n"
    ));
    let mut agent = Agent::new(Setting::Guest, listener, signals);
    if let Err(e) = agent.run() {
        sys::complain(&format!("vmm-agent: {}\n", error_chain(&e)));
    }
    agent.shut_down();
    guest_init::power_off()
}

fn fail_as_pid1(what: &str, e: &dyn std::error::Error) -> ! {
    sys::complain(&format!("vmm-agent: cannot {what}: {}\n", error_chain(e)));
    guest_init::power_off()
}

/// Test mode: serve on a Unix socket as the parent (and subreaper) of the workloads.
fn test_main(socket: &Path, rootfs_dir: &Path) -> u8 {
    if !rootfs_dir.is_dir() {
        sys::complain(&format!(
            "vmm-agent: --rootfs-dir {rootfs_dir:?} is not a directory\n"
        ));
        return exit_code::BAD_INPUT;
    }
    // Orphans of the workloads come to the agent, as they would to PID 1 in a guest.
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        sys::complain(&format!("vmm-agent: cannot become a subreaper: {e}\n"));
        return exit_code::FAILED;
    }
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            sys::complain(&format!("vmm-agent: cannot take signals: {e}\n"));
            return exit_code::FAILED;
        }
    };
    let listener = match Listener::unix(socket) {
        Ok(listener) => listener,
        Err(e) => {
            sys::complain(&format!("vmm-agent: {}\n", error_chain(&e)));
            return exit_code::FAILED;
        }
    };
    sys::say(&format!(
        "vmm-agent: listening on unix:{}\n",
        socket.display()
    ));
    let setting = Setting::Test {
        rootfs_dir: rootfs_dir.to_owned(),
    };
    let mut agent = Agent::new(setting, listener, signals);
    let status = match agent.run() {
        Ok(()) => exit_code::SUCCESS,
        Err(e) => {
            sys::complain(&format!("vmm-agent: {}\n", error_chain(&e)));
            exit_code::FAILED
        }
    };
    agent.shut_down();
    // Dropping the agent removes the socket file.
    drop(agent);
    status
}
