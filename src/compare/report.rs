//! `vmm compare`'s report: what the JSON output holds (schema in docs/compare.schema.json,
//! described in docs/compare.md), and what the terminal table and the HTML report show.
//! Built once by the comparison, then written in each form.

use serde::{Deserialize, Serialize};

/// Bumped whenever a field changes meaning or goes away (docs/compare.md keeps the log).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub schema_version: u32,
    /// `vmm --version`'s number.
    pub vmm_version: String,
    /// When the comparison started, RFC 3339 in UTC.
    pub started_at: String,
    /// Seconds the whole comparison took.
    pub duration_s: f64,
    pub host: HostFacts,
    /// `--runs`: measured runs per benchmark and level.
    pub runs: u32,
    /// The levels asked for, in order; every row below has one cell per level, in this order.
    pub levels: Vec<LevelStatus>,
    pub probes: Vec<ProbeRow>,
    pub benchmarks: Vec<BenchRow>,
    /// Published numbers, shown beside ours and labelled as literature.
    pub literature: Vec<LiteratureValue>,
    /// Number of probe cells whose result was not the expected one.
    pub unexpected: u32,
}

/// The host the comparison ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    pub kernel_release: String,
    pub cpu_model: String,
    pub cpus: u32,
    pub mem_total_mib: u64,
    /// `vmm doctor --json`'s report.
    pub doctor: serde_json::Value,
}

/// Whether a level ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelStatus {
    /// "process", "container", "vm" or "vm+container".
    pub name: String,
    /// Why the level did not run (its cells are then empty), e.g. the host cannot boot
    /// Linux guests; None when it ran.
    pub skipped: Option<String>,
}

/// One isolation probe across the levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// Stable identifier, e.g. "canary.shm" (the `--only` names).
    pub id: String,
    /// What is probed, for people, e.g. "host SysV shared memory visible".
    pub title: String,
    pub cells: Vec<ProbeCell>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeCell {
    pub level: String,
    /// What the probe observed, as shown (None when the level did not run).
    pub observed: Option<String>,
    /// What is expected at this level, as shown.
    pub expected: String,
    /// Why that is expected.
    pub reason: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Expected,
    Unexpected,
    /// The level did not run, or the probe was left out (`--only`).
    NotRun,
}

/// One benchmark across the levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    /// Stable identifier, e.g. "null_syscall" (the `--only` names).
    pub id: String,
    pub title: String,
    /// Unit of the statistics, e.g. "ns", "ms", "MB/s", "IOPS", "MiB".
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    pub cells: Vec<BenchCell>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchCell {
    pub level: String,
    /// None when nothing was measured at this level; `unavailable` says why.
    pub stats: Option<Stats>,
    /// median / the process level's median (None at process itself or when either is
    /// missing).
    pub ratio_to_process: Option<f64>,
    pub unavailable: Option<String>,
}

/// Statistics over the measured runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every run's value, in run order.
    pub samples: Vec<f64>,
}

/// A published number, for context beside ours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiteratureValue {
    /// The benchmark row it belongs beside (a [`BenchRow::id`]).
    pub benchmark: String,
    /// What was measured, in the source's terms.
    pub label: String,
    /// In the row's unit, or None for a finding stated as a ratio or in words.
    pub value: Option<f64>,
    pub note: String,
    /// Citation: authors, venue, year.
    pub source: String,
}
