//! `vmm bench soak`: N starts and stops of the built-in test guest with every virtio device
//! attached, and N container runs, after which this process and the host must hold what
//! they held before: open fds, threads, memory, cgroups, mounts, taps, state directories.
//!
//! Both run in this process, as `vmm compare` runs its VMs and `vmm container run` its
//! containers: a VM or a container that leaves an fd, a thread or memory behind in the VMM
//! shows in this process's own numbers, which a child per run would take to its grave.
//! The containers come first: the runtime's clone needs a process with one thread
//! ([`runtime::launch::spawn`]), and the first VM starts the seccomp spawner thread, which
//! lives as long as the process (one per process by design, `src/vm/seccomp/spawner.rs`).

mod container_cycle;
mod error;
mod snapshot;
mod verdict;
mod vm_cycle;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use edge::{error_chain, exit_code};

use container_cycle::SoakContainers;
use error::SoakError;
use snapshot::{Scope, Snapshot};
use verdict::{Phase, Sample};
use vm_cycle::SoakVm;

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Start/stop cycles of the built-in test guest, each with blk, net (when a tap can be
    /// made), vsock, rng and balloon attached and brought up by the guest.
    #[arg(long, default_value_t = 1000)]
    pub vms: u32,
    /// Container runs (`vmm-probe true` in `vmm compare`'s minimal rootfs, with memory and
    /// pids limits, as `vmm container run` runs it).
    #[arg(long, default_value_t = 1000)]
    pub containers: u32,
    /// The probe binary the containers run [default: vmm-probe next to this vmm binary].
    #[arg(long, value_name = "PATH")]
    pub probe: Option<PathBuf>,
    /// For the tests: leave one fd open per VM run, a leak the soak must report.
    #[arg(long, hide = true)]
    pub inject_fd_leak: bool,
}

pub fn run(args: &SoakArgs) -> ExitCode {
    match soak(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(exit_code::FAILED),
        Err(e) => {
            eprintln!("vmm: error: {}", error_chain(&e));
            ExitCode::from(exit_code::of_error(e.is_bad_input()))
        }
    }
}

/// Runs the soak and prints its table; whether nothing grew.
fn soak(args: &SoakArgs) -> Result<bool, SoakError> {
    if args.vms == 0 && args.containers == 0 {
        return Err(SoakError::BadInput(
            "--vms and --containers are both 0: nothing to soak".into(),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if args.containers > 0 && !root {
        return Err(SoakError::BadInput(
            "the container runs need root (cgroups, namespaces); pass --containers 0 to soak only VMs".into(),
        ));
    }
    let scope = Scope::new(root)?;
    let containers = match args.containers {
        0 => None,
        _ => Some(SoakContainers::new(&scope, args.probe.as_ref())?),
    };
    let vm = match args.vms {
        0 => None,
        _ => Some(SoakVm::new(&scope)?),
    };
    if let Some(vm) = &vm {
        match vm.tap() {
            Some(tap) => eprintln!("vmm bench soak: net on tap {tap}, made by each VM"),
            None => eprintln!(
                "vmm bench soak: no net device: {}",
                scope.no_tap_reason().unwrap_or("no tap can be made here")
            ),
        }
    }
    let started = Instant::now();
    let mut samples = vec![Sample::new("before", Phase::Start, Snapshot::take(&scope))];
    if let Some(containers) = &containers {
        let middle = args.containers / 2;
        for i in 0..args.containers {
            containers.run_once(i)?;
            progress("container runs", i + 1, args.containers);
            if i + 1 == middle || i + 1 == args.containers {
                samples.push(Sample::new(
                    format!("{} containers", i + 1),
                    Phase::Containers,
                    Snapshot::take(&scope),
                ));
            }
        }
    }
    if let Some(vm) = &vm {
        let middle = args.vms / 2;
        for i in 0..args.vms {
            vm.run_once(i)?;
            if args.inject_fd_leak {
                inject_fd_leak()?;
            }
            progress("VM starts and stops", i + 1, args.vms);
            if i == 0 {
                samples.push(Sample::new("1 VM", Phase::FirstVm, Snapshot::take(&scope)));
            } else if i + 1 == middle {
                samples.push(Sample::new(
                    format!("{middle} VMs"),
                    Phase::Vms,
                    Snapshot::take(&scope),
                ));
            }
        }
        if args.vms > 1 {
            samples.push(Sample::new(
                format!("{} VMs", args.vms),
                Phase::Vms,
                Snapshot::take(&scope),
            ));
        }
    }
    let elapsed = started.elapsed();
    println!(
        "vmm bench soak: {} VM starts and stops ({}), {} container runs, in this process, {:.0} s",
        args.vms,
        vm.as_ref().map_or("-".into(), |v| v.devices()),
        args.containers,
        elapsed.as_secs_f64()
    );
    let growths = verdict::check(&samples);
    for line in verdict::table(&samples, &growths) {
        println!("{line}");
    }
    Ok(growths.is_empty())
}

/// A progress line on stderr every tenth of the way.
fn progress(what: &str, done: u32, total: u32) {
    let step = (total / 10).max(1);
    if done.is_multiple_of(step) || done == total {
        eprintln!("vmm bench soak: {what} {done}/{total}");
    }
}

/// Opens /dev/null and never closes it (`--inject-fd-leak`).
fn inject_fd_leak() -> Result<(), SoakError> {
    let file = std::fs::File::open("/dev/null").map_err(SoakError::setup("open /dev/null"))?;
    std::mem::forget(file);
    Ok(())
}
