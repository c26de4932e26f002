//! Whether anything grew over the soak, and the table that shows it.
//!
//! Each sample is held against the baseline of its phase: the containers' against the
//! start; the first VM's against the sample before it (counts only: its memory is the
//! VMM's one-time set-up, see [`Metric::allowed`]); every later VM sample against the
//! first VM's. Counts must not move at all; memory may, within a tolerance. A phase has a
//! sample half-way too, so that a table shows whether memory settled or kept growing.

use super::snapshot::Snapshot;

/// How much RSS may grow over a phase. Not zero because glibc keeps memory that was freed
/// in its arenas (one per thread that allocated, reused by later threads), and the arenas
/// and the stack cache fill up over the first runs. Measured here over 1000 + 1000 runs:
/// +144 KiB over the first 500 containers and +4 over the next 500; +508 KiB from the
/// first VM to the 500th and nothing from there to the 1000th. 2 MiB over 1000 cycles
/// still catches any leak of 2 KiB or more a cycle (guest RAM left mapped was ~190).
pub const RSS_TOLERANCE_KIB: u64 = 2048;
/// How much the allocator's bytes in use may grow over a phase: what it has handed out
/// and not got back, so free memory kept in arenas does not count. Small caches fill up
/// over the first runs (glibc counts what a live thread's tcache holds as in use):
/// measured here, +43 KiB over the first 500 containers and +3 over the next 500, +37 KiB
/// from the first VM to the 500th and +4 to the 1000th.
pub const HEAP_TOLERANCE_KIB: u64 = 256;
/// How many memory mappings may appear over a phase. glibc gives a thread that finds the
/// arenas busy a new one (a heap mapping and its guard), up to eight per CPU, and keeps
/// the stacks of ended threads for later ones: the count settles over the first runs, not
/// always the first. A VM that left its RAM or a stack mapped adds one per run.
pub const MAPS_TOLERANCE: u64 = 16;

/// Where in the soak a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Start,
    /// After every container run.
    Containers,
    /// After the first VM: the VMM's one-time set-up is done.
    FirstVm,
    /// After more VMs.
    Vms,
}

pub struct Sample {
    pub label: String,
    pub phase: Phase,
    pub snapshot: Snapshot,
}

impl Sample {
    pub fn new(label: impl Into<String>, phase: Phase, snapshot: Snapshot) -> Self {
        Self {
            label: label.into(),
            phase,
            snapshot,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Fds,
    Threads,
    Spawner,
    RssKib,
    HeapKib,
    Maps,
    Cgroups,
    Mounts,
    Taps,
    StateDirs,
    WorkFiles,
}

impl Metric {
    pub const ALL: [Metric; 11] = [
        Metric::Fds,
        Metric::Threads,
        Metric::Spawner,
        Metric::RssKib,
        Metric::HeapKib,
        Metric::Maps,
        Metric::Cgroups,
        Metric::Mounts,
        Metric::Taps,
        Metric::StateDirs,
        Metric::WorkFiles,
    ];

    fn label(self) -> &'static str {
        match self {
            Metric::Fds => "open fds",
            Metric::Threads => "threads (but the spawner)",
            Metric::Spawner => "seccomp spawner thread",
            Metric::RssKib => "RSS, KiB",
            Metric::HeapKib => "heap in use, KiB",
            Metric::Maps => "memory mappings",
            Metric::Cgroups => "cgroups of the soak",
            Metric::Mounts => "mounts (mountinfo lines)",
            Metric::Taps => "taps of the soak",
            Metric::StateDirs => "state dirs of the soak",
            Metric::WorkFiles => "files in the soak's dir",
        }
    }

    fn value(self, s: &Snapshot) -> u64 {
        match self {
            Metric::Fds => s.fds,
            Metric::Threads => s.threads,
            Metric::Spawner => s.spawner,
            Metric::RssKib => s.rss_kib,
            Metric::HeapKib => s.heap_kib,
            Metric::Maps => s.maps,
            Metric::Cgroups => s.cgroups,
            Metric::Mounts => s.mounts,
            Metric::Taps => s.taps,
            Metric::StateDirs => s.state_dirs,
            Metric::WorkFiles => s.work_files,
        }
    }

    /// Memory the VMM sets up once, at its first VM, and may settle after.
    fn is_memory(self) -> bool {
        matches!(self, Metric::RssKib | Metric::HeapKib | Metric::Maps)
    }

    /// How much the metric may grow from its baseline to a sample of `phase`; `None`: not
    /// checked there.
    fn allowed(self, phase: Phase) -> Option<u64> {
        match (self, phase) {
            (_, Phase::Start) => Some(0),
            // The first VM starts the spawner (one per process) and sets up what the VMM
            // keeps for later VMs (the filters, KVM's and the allocator's own state).
            (Metric::Spawner, Phase::FirstVm) => Some(1),
            (m, Phase::FirstVm) if m.is_memory() => None,
            (Metric::RssKib, _) => Some(RSS_TOLERANCE_KIB),
            (Metric::HeapKib, _) => Some(HEAP_TOLERANCE_KIB),
            (Metric::Maps, _) => Some(MAPS_TOLERANCE),
            _ => Some(0),
        }
    }

    fn allowed_text(self) -> String {
        match self {
            Metric::Spawner => "+1 at the 1st VM".into(),
            Metric::RssKib => format!("+{RSS_TOLERANCE_KIB}, 1st VM free"),
            Metric::HeapKib => format!("+{HEAP_TOLERANCE_KIB}, 1st VM free"),
            Metric::Maps => format!("+{MAPS_TOLERANCE}, 1st VM free"),
            _ => "+0".into(),
        }
    }
}

/// A metric that grew past what it may, between two samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    pub metric: Metric,
    pub from: String,
    pub to: String,
    pub before: u64,
    pub after: u64,
    pub allowed: u64,
}

/// Every growth past its allowance, each sample against its phase's baseline.
pub fn check(samples: &[Sample]) -> Vec<Growth> {
    let mut growths = Vec::new();
    let mut first_vm: Option<&Sample> = None;
    for (i, sample) in samples.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &samples[p]);
        let baseline = match sample.phase {
            Phase::Start => continue,
            Phase::Containers => samples.first(),
            Phase::FirstVm => previous,
            Phase::Vms => first_vm.or(previous),
        };
        if sample.phase == Phase::FirstVm {
            first_vm = Some(sample);
        }
        let Some(baseline) = baseline else { continue };
        for metric in Metric::ALL {
            let Some(allowed) = metric.allowed(sample.phase) else {
                continue;
            };
            let (before, after) = (
                metric.value(&baseline.snapshot),
                metric.value(&sample.snapshot),
            );
            if after > before.saturating_add(allowed) {
                growths.push(Growth {
                    metric,
                    from: baseline.label.clone(),
                    to: sample.label.clone(),
                    before,
                    after,
                    allowed,
                });
            }
        }
    }
    growths
}

/// The table: one row per metric, one column per sample, the allowance; then the verdict.
pub fn table(samples: &[Sample], growths: &[Growth]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut header = format!("  {:<26}", "");
    for s in samples {
        header.push_str(&format!(" {:>15}", s.label));
    }
    header.push_str(&format!("  {}", "may grow"));
    lines.push(header);
    for metric in Metric::ALL {
        let mut row = format!("  {:<26}", metric.label());
        for s in samples {
            let value = metric.value(&s.snapshot);
            let grew = growths
                .iter()
                .any(|g| g.metric == metric && g.to == s.label);
            row.push_str(&format!(" {:>14}{}", value, if grew { "!" } else { " " }));
        }
        row.push_str(&format!(" {}", metric.allowed_text()));
        lines.push(row);
    }
    if growths.is_empty() {
        lines.push("verdict: nothing grew".into());
    }
    for g in growths {
        lines.push(format!(
            "verdict: GREW: {} from {} ({}) to {} ({}), more than +{}",
            g.metric.label(),
            g.before,
            g.from,
            g.after,
            g.to,
            g.allowed
        ));
    }
    lines
}

#[cfg(test)]
mod tests;
