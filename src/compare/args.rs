//! `vmm compare`'s command line.

use std::path::PathBuf;

use clap::Args;

use crate::run::args::Isolation;

/// Every level, in the order the report shows them: least isolated first.
pub const ALL_LEVELS: [Isolation; 4] = [
    Isolation::Process,
    Isolation::Container,
    Isolation::Vm,
    Isolation::VmContainer,
];

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Isolation levels to compare, comma-separated, shown in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "LEVEL,...",
        default_values_t = ALL_LEVELS
    )]
    pub levels: Vec<Isolation>,
    /// Root filesystem the probe runs in, a directory; the probe binary is copied into a
    /// copy of it [default: a minimal rootfs holding only the probe, made and cached in
    /// ~/.cache/vmm/compare].
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Measured runs per benchmark and level (each a fresh `vmm run`); the report gives
    /// their median and spread.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// What to run: `probes` (isolation only), `bench` (benchmarks only), or names of
    /// probes and benchmarks, comma-separated (a group such as `canary` or `ns` selects
    /// all its probes; `vmm compare --list` shows every name) [default: everything].
    #[arg(long, value_delimiter = ',', value_name = "probes|bench|NAME,...")]
    pub only: Vec<String>,
    /// Write the report as JSON (schema: docs/compare.schema.json) to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report (inline SVG charts, no JavaScript) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// List the probes and benchmarks with what each level is expected to show, and exit.
    #[arg(long)]
    pub list: bool,
    /// Milliseconds each in-workload benchmark may run (longer is steadier).
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = clap::value_parser!(u32).range(10..=60_000))]
    pub budget_ms: u32,
    /// The probe binary [default: vmm-probe next to this vmm binary].
    #[arg(long, value_name = "PATH")]
    pub probe: Option<PathBuf>,
    /// Guest kernel for the VM levels (passed to `vmm run`).
    #[arg(long, value_name = "VMLINUX")]
    pub kernel: Option<PathBuf>,
    /// Agent initramfs for the VM levels (passed to `vmm run`).
    #[arg(long, value_name = "AGENT_INITRAMFS")]
    pub initrd: Option<PathBuf>,
    /// Seconds one `vmm run` of the comparison may take before it is killed and reported.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub run_timeout: u64,
}
