//! `vmm container`: a container runtime (namespaces, pivot_root, cgroups v1/v2, OCI
//! bundles) whose code the guest agent reuses unchanged inside a VM: nothing here depends
//! on the VM code.
//!
//! Flow: options or bundle → [`config::ContainerConfig`] → [`launch::run`] (cgroup, clone,
//! [`init::setup_and_exec`] in the child, wait) → exit status.

pub mod args;
pub mod bench;
pub mod caps;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod defaults;
pub mod error;
pub mod init;
pub mod launch;
pub mod mount_opts;
pub mod paths;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod sys;

#[cfg(test)]
mod init_tests;
#[cfg(test)]
mod spec_tests;

use std::process::ExitCode;

use error::{error_chain, ContainerError};

/// Exit status for a failure of the runtime or the host.
pub const EXIT_FAILED: u8 = 1;
/// Exit status for input that cannot work.
pub const EXIT_BAD_INPUT: u8 = 2;

pub fn run(cmd: cli::ContainerCommand) -> ExitCode {
    match cmd {
        cli::ContainerCommand::Run(args) => run_container(&args),
        cli::ContainerCommand::BenchStart { runs } => bench::bench_container_start(runs),
    }
}

fn run_container(args: &cli::RunArgs) -> ExitCode {
    let config = match &args.bundle {
        Some(bundle) => spec::config_from_bundle(bundle).map(|mut c| {
            if args.seccomp && c.seccomp.is_none() {
                c.seccomp = Some(defaults::seccomp_profile());
            }
            c
        }),
        None => args::config_from_args(args),
    };
    let outcome = config.and_then(|mut c| {
        if let Some(name) = &args.name {
            args::check_id(name)?;
            c.id = name.clone();
        }
        Ok((launch::run(&c)?, c))
    });
    match outcome {
        Ok((outcome, config)) => {
            if outcome.oom_killed {
                let limit = config
                    .resources
                    .memory
                    .map_or(String::new(), |m| format!(" (memory limit {m} bytes)"));
                eprintln!(
                    "vmm: container {}: killed by the OOM killer{limit}",
                    config.id
                );
            }
            ExitCode::from(outcome.status)
        }
        Err(e) => report(&e),
    }
}

fn report(e: &ContainerError) -> ExitCode {
    eprintln!("vmm: error: {}", error_chain(e));
    ExitCode::from(if e.is_bad_input() {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILED
    })
}
