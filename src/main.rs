//! `vmm`: a micro-VM monitor on KVM. The binary's edge: parse the command line, run, and
//! map the outcome to an exit status: the guest's own (debug exit), 0 on reset, 1 when the
//! VM fails, 2 for bad input, 128 + N when stopped by signal N.

mod bench;
mod cli;
mod container;
mod demo;
mod doctor;
mod guest_image;
mod host;
mod terminal;
mod vm;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

const EXIT_VM_FAILED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Doctor { json }) => doctor::run(json),
        Some(cli::Command::Demo(args)) => demo::run(&args, started),
        Some(cli::Command::Container { command }) => container::run(command),
        Some(cli::Command::Bench {
            what: cli::BenchCommand::Start { runs, mem },
        }) => bench::start(runs, u64::from(mem)),
        None => run_vm(&cli.vm, started),
    }
}

fn run_vm(args: &cli::VmArgs, started: Instant) -> ExitCode {
    let Some(kernel) = args.kernel.clone() else {
        eprintln!("vmm: error: --kernel is required");
        return ExitCode::from(EXIT_BAD_INPUT);
    };
    let config = vm::VmConfig {
        kernel,
        mem_mib: args.mem,
        cpus: args.cpus,
        cmdline: args.cmdline.clone(),
        initrd: args.initrd.clone(),
        boot_timer: args.boot_timer.then_some(started),
        report_resident: false,
        console_capture: None,
    };
    exit_code_of(vm::run(&config))
}

fn exit_code_of(result: Result<vm::VmOutcome, vm::VmError>) -> ExitCode {
    match result {
        Ok(vm::VmOutcome::Reset) => ExitCode::SUCCESS,
        Ok(vm::VmOutcome::DebugExit(code)) => ExitCode::from(code),
        Ok(vm::VmOutcome::Failed(msg)) => {
            eprintln!("vmm: the VM failed: {msg}");
            ExitCode::from(EXIT_VM_FAILED)
        }
        Ok(vm::VmOutcome::Terminated(sig)) => ExitCode::from(128u8.saturating_add(sig as u8)),
        Err(e) => {
            eprintln!("vmm: error: {}", error_chain(&e));
            if e.is_bad_input() {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::from(EXIT_VM_FAILED)
            }
        }
    }
}

/// The error and its sources on one line, each said once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
