//! `vmm compare --list`: every probe and benchmark by name, with what each level is
//! expected to show and why — the expectations table, readable without running anything.

use std::fmt::Write;

use super::args::ALL_LEVELS;
use super::benchmarks::BENCHMARKS;
use super::probes::{HostView, PROBES};

pub fn render(host: &HostView) -> String {
    let mut out = String::from("Isolation probes (--only probes, a group, or a name):\n");
    for probe in PROBES {
        let _ = writeln!(out, "  {:<24} {}", probe.id, probe.title);
        for level in ALL_LEVELS {
            let expected = (probe.expect)(level, host);
            let _ = writeln!(
                out,
                "      {:<13} {} — {}",
                level.name(),
                expected.shown,
                expected.reason
            );
        }
    }
    out.push_str("\nBenchmarks (--only bench, a group, or a name):\n");
    for bench in BENCHMARKS {
        let _ = writeln!(out, "  {:<24} {} ({})", bench.id, bench.title, bench.unit);
    }
    out
}
