//! `vmm container`: the command line of the container runtime (the `runtime` crate, which
//! the guest agent links too).

pub mod bench;
pub mod cli;

use std::process::ExitCode;

use edge::{error_chain, exit_code};
use runtime::error::ContainerError;
use runtime::{defaults, options, run_state, spec};

pub fn run(cmd: cli::ContainerCommand) -> ExitCode {
    match cmd {
        cli::ContainerCommand::Run(args) => run_container(&args),
        cli::ContainerCommand::Delete { state, id } => match run_state::delete(&state.dir, &id) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(&e),
        },
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
        None => options::config_from_options(&args.to_options()),
    };
    let outcome = config.and_then(|mut c| {
        if let Some(name) = &args.name {
            options::check_id(name)?;
            c.id = name.clone();
        }
        Ok((run_state::run(&args.state.dir, &c)?, c))
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
    ExitCode::from(exit_code::of_error(e.is_bad_input()))
}
