//! How fast the probe runs where it is: a null system call, fork+exec, a fixed compute
//! kernel, memory copies, file I/O and (given a host server) TCP. The same binary runs the
//! same loops at every level, so the ratios between levels are the cost of the isolation.
//!
//! Each figure is measured over a time budget rather than a fixed count ([`budget`]), so a
//! level that is a hundred times slower (an emulated guest) still finishes in bounded time.

pub mod budget;
pub mod cpu;
pub mod file_io;
pub mod fork_exec;
pub mod memory;
pub mod net;
pub mod syscall;
mod xorshift;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::failure::Failure;
use crate::report::{BenchResults, PROBE_VERSION};

/// What `vmm-probe bench` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Time spent on each benchmark (at least its minimum number of iterations).
    pub budget: Duration,
    /// Iterations of the compute kernel ([`cpu::checksum`]).
    pub cpu_work: u64,
    /// Where the file I/O benchmark writes its file (the workload's root by default).
    pub io_dir: PathBuf,
    /// A host running [`crate::net_server::serve`]; None skips the network benchmark.
    pub net: Option<NetTarget>,
}

/// Where the host's net server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetTarget {
    Address(SocketAddr),
    /// This port on the default gateway: the host's end of a point-to-point link, whose
    /// address only the workload's routing table knows.
    Gateway {
        port: u16,
    },
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            budget: DEFAULT_BUDGET,
            cpu_work: cpu::DEFAULT_WORK,
            io_dir: PathBuf::from("/"),
            net: None,
        }
    }
}

pub const DEFAULT_BUDGET: Duration = Duration::from_millis(200);

/// Runs every benchmark in turn. fork+exec runs before the large buffers exist, so the
/// fork copies only the probe's small start-up footprint.
pub fn run(settings: &Settings) -> Result<BenchResults, Failure> {
    let budget = settings.budget;
    let null_syscall_ns = syscall::mean_ns(budget);
    let fork_exec_us = fork_exec::mean_us(budget)?;
    let cpu = cpu::measure(settings.cpu_work, budget)?;
    let mem_bandwidth_mb_s = memory::bandwidth_mb_s(budget);
    let file = file_io::measure(&settings.io_dir, budget)?;
    let net = match settings.net {
        Some(target) => Some(net::measure(net::resolve(target)?, budget)?),
        None => None,
    };
    Ok(BenchResults {
        probe_version: PROBE_VERSION,
        null_syscall_ns,
        fork_exec_us,
        cpu_ms: cpu.ms,
        cpu_checksum: cpu.checksum,
        mem_bandwidth_mb_s,
        file_random_read_iops: file.random_read_iops,
        file_direct_io: file.direct_io,
        file_seq_write_mb_s: file.seq_write_mb_s,
        net,
    })
}
