//! Command-line interface. Every option documents its default, so `vmm --help` teaches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A micro-VM monitor on KVM.
///
/// Boots a Linux kernel (ELF vmlinux or bzImage) with a serial console on stdin/stdout.
/// The VM ends when the guest resets (exit status 0), writes a byte to the debug-exit
/// port 0xf4 (that byte is the exit status), or fails (exit status 1). Bad input: 2.
#[derive(Debug, Parser)]
#[command(
    name = "vmm",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(flatten)]
    pub vm: VmArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what this host can do: KVM access, capabilities, PVM, cgroups, namespaces.
    Doctor {
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Boot the built-in test guest and print its conformance report.
    Demo(DemoArgs),
    /// Run a process in a container: namespaces, pivot_root, cgroups, OCI bundles.
    Container {
        #[command(subcommand)]
        command: crate::container::cli::ContainerCommand,
    },
    /// Measure the VMM: start-up time and memory, with measured numbers.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of vCPUs for the demo VM.
    #[arg(long, default_value_t = 2)]
    pub cpus: u8,
    /// Write the built-in test guest (an ELF) to this file and exit, so it can be run with
    /// `vmm --kernel FILE`.
    #[arg(long, value_name = "FILE")]
    pub export_guest: Option<PathBuf>,
    /// Used by `vmm bench`: run no test, end at once, and report timings on stderr.
    #[arg(long, hide = true)]
    pub bench_run: bool,
    /// Guest memory in MiB (with --bench-run).
    #[arg(long, hide = true, default_value_t = 128)]
    pub mem: u64,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Start the built-in guest N times (process start → first guest instruction → exit)
    /// and report median/p95 wall time and peak RSS.
    Start {
        /// Number of measured runs.
        #[arg(long, default_value_t = 30)]
        runs: u32,
        /// Guest memory in MiB for each run.
        #[arg(long, default_value_t = 128)]
        mem: u32,
    },
}

#[derive(Debug, Args)]
pub struct VmArgs {
    /// Kernel image to boot: an ELF vmlinux or a bzImage.
    #[arg(long, value_name = "PATH", required = true)]
    pub kernel: Option<PathBuf>,

    /// Guest memory in MiB. RAM above 3 GiB is placed above 4 GiB, past the MMIO gap.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub mem: u64,

    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u16,

    /// Kernel command line.
    #[arg(long, value_name = "STR", default_value = crate::vm::DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Initial ramdisk, loaded page aligned at the top of low memory.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Print the time since the VMM process started when the guest writes 123 to MMIO
    /// 0xC000_0000 (the Firecracker boot-timer convention).
    #[arg(long)]
    pub boot_timer: bool,
}
