//! `vmm`: a micro-VM monitor on KVM. The binary's edge: parse the command line, run, and
//! map the outcome to an exit status: the guest's own (debug exit), 0 on reset, 1 when the
//! VM fails, 2 for bad input, 128 + N when stopped by signal N ([`edge::exit_code`]).

mod api;
mod bench;
mod bench_blk;
mod bench_hardening;
mod bench_net;
mod bench_restore;
mod bench_run;
mod bench_soak;
mod cli;
mod compare;
mod container;
mod demo;
mod doctor;
mod guest_image;
mod host;
mod jail;
mod lab;
mod run;
mod runc;
mod terminal;
mod vm;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use edge::{error_chain, exit_code};

fn main() -> ExitCode {
    let started = Instant::now();
    // Called as `vmm-runc` (through the `vmm-runc` binary, or a link): the OCI runtime.
    if std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n == "vmm-runc")
        })
        .unwrap_or(false)
    {
        return runc::main();
    }
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Doctor { json }) => doctor::run(json),
        Some(cli::Command::Demo(args)) => demo::run(&args, started),
        Some(cli::Command::Container { command }) => container::run(command),
        Some(cli::Command::Run(args)) => run::run(&args, started),
        Some(cli::Command::Compare(args)) => compare::run(&args),
        Some(cli::Command::Lab(args)) => lab::run(&args),
        Some(cli::Command::Bench {
            what:
                cli::BenchCommand::Start {
                    runs,
                    mem,
                    hardening,
                },
        }) => match hardening {
            true => bench_hardening::run(runs, u64::from(mem)),
            false => bench::start(runs, u64::from(mem)),
        },
        Some(cli::Command::Bench {
            what:
                cli::BenchCommand::Blk {
                    requests,
                    file,
                    bw,
                    seconds,
                },
        }) => bench_blk::run(
            requests,
            file.as_deref(),
            bw.map(|bytes_per_s| bench_blk::Limit {
                bytes_per_s,
                seconds,
            }),
        ),
        Some(cli::Command::Bench {
            what: cli::BenchCommand::Net { frames },
        }) => bench_net::run(frames),
        Some(cli::Command::Bench {
            what:
                cli::BenchCommand::Restore {
                    runs,
                    mem,
                    snapshot_to,
                },
        }) => bench_restore::run(runs, u64::from(mem), snapshot_to.as_deref()),
        Some(cli::Command::Bench {
            what: cli::BenchCommand::Run(args),
        }) => bench_run::run(&args),
        Some(cli::Command::Bench {
            what: cli::BenchCommand::Soak(args),
        }) => bench_soak::run(&args),
        Some(cli::Command::Bench {
            what: cli::BenchCommand::ContainerStart { runs },
        }) => container::bench::bench_container_start(runs),
        None => run_vm(&cli.vm, started),
    }
}

fn run_vm(args: &cli::VmArgs, started: Instant) -> ExitCode {
    if args.no_seccomp {
        eprintln!("vmm: warning: --no-seccomp: the VMM's threads run without seccomp filters");
    }
    if let Some(path) = &args.api_sock {
        return api::run(path, args, started);
    }
    let options = vm::RunOptions {
        trace_exits: args.trace_exits,
        no_seccomp: args.no_seccomp,
        ..Default::default()
    };
    let jail = match jail::JailSpec::from_args(&args.jail) {
        Ok(jail) => jail,
        Err(e) => return report_jail_error(&e),
    };
    if let (Some(state), Some(mem_file)) = (&args.restore, &args.mem_file) {
        if jail.is_some() {
            return report_vm_error(&vm::VmError::RestoreJailed);
        }
        let restore = vm::RestoreConfig {
            state: state.clone(),
            mem_file: mem_file.clone(),
            resume: true,
            started,
            report_first_exit: args.bench_first_exit,
            vsock_uds: None,
            tap: None,
        };
        return exit_code_of(vm::restore_with(&restore, options));
    }
    let config = match vm_config_from(args, started) {
        Ok(config) => config,
        Err(e) => return exit_code_of(Err(e)),
    };
    let Some(jail) = jail else {
        return exit_code_of(vm::run_with(&config, options));
    };
    match jail::enter(&jail, &config) {
        Ok(jail::Entered::Parent(code)) => code,
        Ok(jail::Entered::Jailed(config)) => {
            let code = exit_code_of(vm::run_with(&config, options));
            jail::phases::mark("VM ended (child)");
            code
        }
        Err(e) => report_jail_error(&e),
    }
}

/// Prints a jail error on one line; 2 when the input was at fault, else 1.
fn report_jail_error(e: &jail::JailError) -> ExitCode {
    eprintln!("vmm: error: {}", error_chain(e));
    ExitCode::from(exit_code::of_error(e.is_bad_input()))
}

/// The VM to build, from the command line or from a Firecracker config file.
pub(crate) fn vm_config_from(
    args: &cli::VmArgs,
    started: Instant,
) -> Result<vm::VmConfig, vm::VmError> {
    let boot_timer = args.boot_timer.then_some(started);
    if let Some(path) = &args.config_file {
        let file = vm::config_file::load(path)?;
        for setting in &file.ignored {
            eprintln!(
                "vmm: warning: {}: {setting} is not supported and is ignored",
                path.display()
            );
        }
        return Ok(vm::VmConfig {
            kernel: file.kernel,
            mem_mib: file.mem_mib.unwrap_or(args.mem),
            cpus: file.cpus.unwrap_or(args.cpus),
            cmdline: file.cmdline.unwrap_or_else(|| args.cmdline.clone()),
            initrd: file.initrd,
            devices: file.devices,
            boot_timer,
        });
    }
    let devices = vm::device_specs::DeviceSpecs {
        rootfs: args.rootfs.clone().map(|path| vm::device_specs::DiskSpec {
            path,
            read_only: false,
            id: Some("rootfs".into()),
            rate_limiter: None,
        }),
        disks: args.disk.clone(),
        nets: args.net.clone(),
        vsock: args.vsock.clone(),
        rng: args.rng.clone(),
        balloon: args.balloon.clone(),
    };
    Ok(vm::VmConfig {
        // clap requires --kernel unless --config-file is given.
        kernel: args.kernel.clone().unwrap_or_default(),
        mem_mib: args.mem,
        cpus: args.cpus,
        cmdline: args.cmdline.clone(),
        initrd: args.initrd.clone(),
        devices,
        boot_timer,
    })
}

pub(crate) fn exit_code_of(result: Result<vm::VmOutcome, vm::VmError>) -> ExitCode {
    match result {
        Ok(vm::VmOutcome::Reset | vm::VmOutcome::Stopped) => ExitCode::SUCCESS,
        Ok(vm::VmOutcome::DebugExit(code)) => ExitCode::from(code),
        Ok(vm::VmOutcome::Failed(failure)) => {
            eprintln!("vmm: the VM failed: {}", error_chain(&failure));
            ExitCode::from(exit_code::FAILED)
        }
        Ok(vm::VmOutcome::Terminated(sig)) => ExitCode::from(exit_code::signalled(sig)),
        Err(e) => report_vm_error(&e),
    }
}

/// Prints a VM error with its causes on one line; 2 when the input was at fault, else 1.
pub(crate) fn report_vm_error(e: &vm::VmError) -> ExitCode {
    eprintln!("vmm: error: {}", error_chain(e));
    ExitCode::from(exit_code::of_error(e.is_bad_input()))
}
