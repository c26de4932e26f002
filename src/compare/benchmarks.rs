//! The benchmarks: where each figure comes from, its unit, and which way is better. The
//! start-up and memory figures are measured by `vmm compare` around `vmm run`; the rest by
//! the probe inside the workload.

use probe::report::BenchResults;

use super::report::Better;
use super::runner::BenchRun;
use crate::run::args::Isolation;

/// Where a benchmark's value comes from.
pub enum Source {
    /// `vmm run … -- vmm-probe true`: start → exit, ms.
    StartToExit,
    /// A bench run: `vmm run` started → the probe's first line arrived, ms.
    StartToFirstOutput,
    /// A bench run's idle instance.
    Idle(fn(&BenchRun) -> Option<f64>),
    /// The probe's own measurement.
    Probe(fn(&BenchResults) -> Option<f64>),
}

pub struct Benchmark {
    /// Stable name (`--only`, the JSON's `id`).
    pub id: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub source: Source,
    /// Why a level has no value, when it cannot have one.
    pub unavailable_at: fn(Isolation) -> Option<&'static str>,
}

fn always(_: Isolation) -> Option<&'static str> {
    None
}

fn cgroup_unavailable(level: Isolation) -> Option<&'static str> {
    match level {
        Isolation::Container => None,
        Isolation::Process => Some("no cgroup of its own at this level"),
        _ => Some("the VM's memory is the VMM's PSS; its cgroups are inside the guest"),
    }
}

pub const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        id: "start.first_output",
        title: "start → first workload output",
        unit: "ms",
        better: Better::Lower,
        source: Source::StartToFirstOutput,
        unavailable_at: always,
    },
    Benchmark {
        id: "start.exit",
        title: "start → exit of /bin/true",
        unit: "ms",
        better: Better::Lower,
        source: Source::StartToExit,
        unavailable_at: always,
    },
    Benchmark {
        id: "memory.idle_pss",
        title: "memory of one idle instance (PSS)",
        unit: "MiB",
        better: Better::Lower,
        source: Source::Idle(|run| Some(run.idle.pss_mib)),
        unavailable_at: always,
    },
    Benchmark {
        id: "memory.cgroup_charge",
        title: "memory charged to the container's cgroup",
        unit: "MiB",
        better: Better::Lower,
        source: Source::Idle(|run| run.idle.cgroup_mib),
        unavailable_at: cgroup_unavailable,
    },
    Benchmark {
        id: "syscall.null",
        title: "null system call (getppid)",
        unit: "ns",
        better: Better::Lower,
        source: Source::Probe(|r| Some(r.null_syscall_ns)),
        unavailable_at: always,
    },
    Benchmark {
        id: "process.fork_exec",
        title: "fork + exec + wait",
        unit: "µs",
        better: Better::Lower,
        source: Source::Probe(|r| Some(r.fork_exec_us)),
        unavailable_at: always,
    },
    Benchmark {
        id: "cpu.compute",
        title: "CPU: a fixed integer compute kernel",
        unit: "ms",
        better: Better::Lower,
        source: Source::Probe(|r| Some(r.cpu_ms)),
        unavailable_at: always,
    },
    Benchmark {
        id: "memory.bandwidth",
        title: "memory bandwidth (memcpy, 16 MiB buffers)",
        unit: "MB/s",
        better: Better::Higher,
        source: Source::Probe(|r| Some(r.mem_bandwidth_mb_s)),
        unavailable_at: always,
    },
    Benchmark {
        id: "file.random_read",
        title: "file: 4 KiB random reads on the workload's root",
        unit: "IOPS",
        better: Better::Higher,
        source: Source::Probe(|r| Some(r.file_random_read_iops)),
        unavailable_at: always,
    },
    Benchmark {
        id: "file.seq_write",
        title: "file: sequential write + fsync on the workload's root",
        unit: "MB/s",
        better: Better::Higher,
        source: Source::Probe(|r| Some(r.file_seq_write_mb_s)),
        unavailable_at: always,
    },
    Benchmark {
        id: "net.rtt",
        title: "network round trip to the host (TCP, 1 byte)",
        unit: "µs",
        better: Better::Lower,
        source: Source::Probe(|r| r.net.as_ref().map(|n| n.rtt_us)),
        unavailable_at: always,
    },
    Benchmark {
        id: "net.throughput",
        title: "network throughput to the host (TCP)",
        unit: "MB/s",
        better: Better::Higher,
        source: Source::Probe(|r| r.net.as_ref().map(|n| n.throughput_mb_s)),
        unavailable_at: always,
    },
];

/// Median (the mean of the two middle values for an even count), min and max.
pub fn stats(samples: &[f64]) -> Option<super::report::Stats> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(super::report::Stats {
        median,
        min: sorted[0],
        max: sorted[n - 1],
        samples: samples.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let s = stats(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(
            s.samples,
            vec![4.0, 1.0, 3.0, 2.0],
            "samples keep run order"
        );
    }

    #[test]
    fn median_of_an_odd_count_is_the_middle_value() {
        assert_eq!(stats(&[9.0, 1.0, 5.0]).unwrap().median, 5.0);
        assert!(stats(&[]).is_none());
    }

    #[test]
    fn benchmark_ids_are_unique_and_grouped() {
        let mut ids: Vec<_> = BENCHMARKS.iter().map(|b| b.id).collect();
        assert!(ids.iter().all(|id| id.contains('.')));
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), BENCHMARKS.len());
    }

    #[test]
    fn every_level_has_a_path_to_the_hosts_net_server() {
        for level in [
            Isolation::Process,
            Isolation::Container,
            Isolation::Vm,
            Isolation::VmContainer,
        ] {
            assert!(
                super::super::runner::net_server_for(level, 1).is_some(),
                "{level:?}"
            );
        }
    }
}
