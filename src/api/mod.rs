//! Firecracker's API on a unix socket (`vmm --api-sock PATH`): HTTP/1.1 with JSON bodies
//! as Firecracker's swagger defines them, for what its clients call (docs/api.md).
//!
//! Two threads. `vmm-api` serves the socket (`server`, one epoll, under its own seccomp
//! filter) and keeps the state machine (`controller`): the configuration before the VM
//! starts (`preboot`), the running VM's actions after (`runtime`). The main thread runs
//! the VM: InstanceStart hands it a [`controller::Launch`], and the API answers once the
//! VM runs or has failed to start (then the client may fix the configuration and try
//! again). As with Firecracker, the process exits when the VM ends, with the VM's status.
//!
//! With `--kernel` or `--config-file` as well, the VM boots at once and the API serves
//! alongside it (Firecracker's `--config-file` with `--api-sock`).

mod bodies;
mod control;
mod controller;
mod http;
mod logger;
mod metrics;
mod preboot;
mod routes;
mod runtime;
mod server;
mod sink;
mod socket;

use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use crate::cli::VmArgs;
use crate::vm::running::RunningVm;
use crate::vm::seccomp::{self, ThreadKind};
use crate::vm::{self, RunOptions, VmControl};
use controller::{Controller, Launch};
use logger::Logger;
use metrics::Metrics;

/// Serves the API on `path` and runs the VM it (or the command line) describes; the exit
/// status is the VM's, or 2 for bad input before any VM could start.
pub fn run(path: &Path, args: &VmArgs, started: Instant) -> ExitCode {
    if args.jail.jail.is_some() {
        return bad_input("--api-sock cannot be combined with --jail yet");
    }
    // The VM the command line describes, if it describes one: it boots at once.
    let at_once = match (&args.kernel, &args.config_file) {
        (None, None) => None,
        _ => match crate::vm_config_from(args, started) {
            Ok(config) => Some(config),
            Err(e) => return crate::report_vm_error(&e),
        },
    };
    let listener = match socket::bind(path) {
        Ok(listener) => listener,
        Err(e) => return bad_input(&e),
    };
    let filter = match args.no_seccomp {
        true => None,
        false => match seccomp::program(ThreadKind::Api) {
            Ok(filter) => Some(filter),
            Err(e) => return failed(&edge::error_chain(&e)),
        },
    };

    let running = RunningVm::new();
    let vm_control = VmControl::new();
    let logger = Arc::new(Logger::default());
    let metrics = Arc::new(Metrics::new(running.clone()));
    let (launcher, launches) = mpsc::channel::<Launch>();
    let mut controller = Controller::new(
        preboot::Preboot::new(args.cpus, args.mem, &args.cmdline),
        running.clone(),
        launcher.clone(),
        logger.clone(),
        metrics.clone(),
        control::Control::new(vm_control.clone()),
        args.boot_timer.then_some(started),
    );
    if let Some(config) = &at_once {
        controller.started_elsewhere(config);
    }
    let api = std::thread::Builder::new()
        .name(ThreadKind::Api.name().into())
        .spawn(move || {
            if let Some(filter) = &filter {
                seccomp::confine_or_exit(ThreadKind::Api, filter);
            }
            if let Err(e) = server::serve(listener, &mut controller) {
                eprintln!("vmm: error: the API server stopped: {e}");
            }
        });
    if let Err(e) = api {
        return failed(&format!("starting the API thread: {e}"));
    }
    if let Some(config) = at_once {
        let boot: Launch = Box::new(move |options| vm::run_with(&config, options));
        // The receiver is ours, below: the send cannot fail.
        let _ = launcher.send(boot);
    }
    drop(launcher);

    let options = base_options(args, &running, &vm_control);
    let from_command_line = args.kernel.is_some() || args.config_file.is_some();
    // Each launch the API sends: a failure before the VM ran goes back to the client,
    // which may try again; once a VM ran, its end is the process's.
    for launch in launches {
        let result = launch(options.clone());
        if running.has_started() || from_command_line {
            if let Err(e) = metrics.flush() {
                eprintln!("vmm: {e}");
            }
            let _ = std::fs::remove_file(path);
            return crate::exit_code_of(result);
        }
        let why = match &result {
            Err(e) => edge::error_chain(e),
            Ok(outcome) => format!("the VM ended before it ran ({outcome:?})"),
        };
        running.failed_to_start(why);
    }
    // Every sender is gone: the API thread ended without a VM.
    failed("the API server stopped before a VM ran")
}

/// What every launch runs with: the terminal console, the handle the API reads the VM
/// through, the control that pauses, resumes and snapshots it, and the user's debugging
/// options.
fn base_options(args: &VmArgs, running: &Arc<RunningVm>, control: &Arc<VmControl>) -> RunOptions {
    RunOptions {
        control: Some(control.clone()),
        trace_exits: args.trace_exits,
        no_seccomp: args.no_seccomp,
        running: Some(running.clone()),
        ..Default::default()
    }
}

fn bad_input(message: &str) -> ExitCode {
    eprintln!("vmm: error: {message}");
    ExitCode::from(edge::exit_code::BAD_INPUT)
}

fn failed(message: &str) -> ExitCode {
    eprintln!("vmm: error: {message}");
    ExitCode::from(edge::exit_code::FAILED)
}
