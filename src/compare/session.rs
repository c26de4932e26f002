//! One comparison, top to bottom: check the input, plant the canaries, run every level,
//! build the report, show and write it.

use std::io::IsTerminal;
use std::net::TcpListener;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use probe::report::{BenchResults, Observation};

use super::args::CompareArgs;
use super::benchmarks::{self, Source, BENCHMARKS};
use super::canaries;
use super::probes::{HostView, PROBES};
use super::report::{
    BenchCell, BenchRow, CompareReport, LevelStatus, ProbeCell, ProbeRow, Verdict, SCHEMA_VERSION,
};
use super::runner::{BenchRun, Launcher, RunFailure};
use super::selection::{select, Selection};
use super::{interrupt, listing, literature, outputs, rootfs, table, CompareError};
use crate::run::args::Isolation;

/// The shortest in-workload budget `--budget-ms` accepts.
const MIN_BUDGET_MS: u32 = 10;

/// What one level produced.
struct LevelRuns {
    level: Isolation,
    /// Why the level does not run on this host.
    skipped: Option<String>,
    /// The first `vmm run` of this level that failed: the level stops there.
    failure: Option<String>,
    observation: Option<Observation>,
    true_ms: Vec<f64>,
    bench: Vec<BenchRun>,
}

impl LevelRuns {
    fn runs(&self) -> bool {
        self.skipped.is_none() && self.failure.is_none()
    }
}

pub fn compare(args: &CompareArgs) -> Result<ExitCode, CompareError> {
    let started_at = super::clock::rfc3339_now();
    let started = Instant::now();
    let selection = select(&args.only).map_err(CompareError::BadInput)?;
    if args.list {
        print!("{}", listing::render(&host_view(&placeholder_canaries())));
        return Ok(ExitCode::SUCCESS);
    }
    let outputs = outputs::Outputs::check(args.json.as_deref(), args.html.as_deref())?;
    if let Some(dir) = &args.rootfs {
        if !dir.is_dir() {
            return Err(CompareError::BadInput(format!(
                "--rootfs {dir:?}: not a directory"
            )));
        }
    }
    // SAFETY: geteuid(2) cannot fail and has no arguments.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CompareError::BadInput(
            "vmm compare needs root: the levels chroot, make namespaces and cgroups, and the \
             canaries need a UTS namespace of their own"
                .into(),
        ));
    }
    let probe = super::probe_binary(args.probe.as_ref())?;
    let doctor = crate::doctor::Report::probe();

    let mut levels: Vec<LevelRuns> = Vec::new();
    for &level in &args.levels {
        if levels.iter().any(|l| l.level == level) {
            continue;
        }
        levels.push(LevelRuns {
            level,
            skipped: skip_reason(level, &doctor, args),
            failure: None,
            observation: None,
            true_ms: Vec::new(),
            bench: Vec::new(),
        });
    }

    // Nothing would run: refuse at once, as `vmm run` does at a level this host lacks.
    if let Some(why) = levels
        .iter()
        .map(|l| l.skipped.as_ref())
        .collect::<Option<Vec<_>>>()
    {
        return Err(CompareError::BadInput(format!(
            "no level asked for can run here: {}",
            why.first().map_or("", |w| w.as_str())
        )));
    }
    // Before any thread starts, so that every thread and child shares them.
    let signals = interrupt::Watcher::start();
    canaries::enter_own_uts_namespace()?;
    let planted = canaries::plant(&probe)?;
    // On every address: the process level comes over loopback, the levels with a link
    // to the host from their gateway address (the host's end of a 10.231.0.0/16 /30).
    let net_server = TcpListener::bind("0.0.0.0:0")
        .map_err(CompareError::io("listen for the network benchmark"))?;
    let net_port = net_server
        .local_addr()
        .map_err(CompareError::io("listen for the network benchmark"))?
        .port();
    std::thread::spawn(move || probe::net_server::serve(net_server));
    let host = host_view(&planted.canaries);

    let cache = rootfs::cache_dir();
    let rootfs = match &args.rootfs {
        Some(dir) => rootfs::copy_of(dir, &probe, &cache),
        None => rootfs::minimal(&probe, &cache),
    }
    .map_err(CompareError::io("prepare the probe's rootfs"))?;
    let launcher = Launcher {
        vmm: super::runner::this_vmm().map_err(CompareError::io("find the vmm binary"))?,
        rootfs: rootfs.path.clone(),
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
        timeout: Duration::from_secs(args.run_timeout),
    };

    let plan = Plan {
        selection: &selection,
        runs: args.runs,
        budget_ms: if selection
            .benchmarks
            .iter()
            .any(|&i| matches!(BENCHMARKS[i].source, Source::Probe(_)))
        {
            args.budget_ms
        } else {
            // Only start-up and memory are asked for: the in-workload benchmarks still
            // run (the probe measures them all), but as briefly as they can.
            MIN_BUDGET_MS
        },
        net_port,
        canaries: &planted.canaries,
    };
    run_levels(&launcher, &plan, &mut levels, &signals)?;
    let report = build_report(
        args,
        &selection,
        &levels,
        &host,
        &doctor,
        started_at,
        started.elapsed(),
    );
    drop(planted);

    print!("{}", table::render(&report));
    outputs.write(&report)?;
    let failures: Vec<String> = levels
        .iter()
        .filter_map(|l| l.failure.as_ref().map(|f| format!("{}: {f}", l.level)))
        .chain(checksum_mismatch(&levels))
        .collect();
    for failure in &failures {
        eprintln!("vmm: error: {failure}");
    }
    if report.unexpected > 0 {
        eprintln!(
            "vmm: {} probe result(s) not as expected (marked ✗ above)",
            report.unexpected
        );
    }
    Ok(if failures.is_empty() && report.unexpected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(edge::exit_code::FAILED)
    })
}

/// Canaries that name nothing on this host: for `--list`, which only needs the host's view.
fn placeholder_canaries() -> probe::report::Canaries {
    probe::report::Canaries {
        process_name: "vmm-no-canary".into(),
        shm_key: 0x7fff_fff0,
        msg_key: 0x7fff_fff0,
        hostname: "vmm-no-canary".into(),
        tmp_file: "/nonexistent/vmm-no-canary".into(),
        abstract_socket: "vmm-no-canary".into(),
        tcp_port: 1,
    }
}

// The runtime's default capability set is a constant list of names the runtime itself
// resolves for every container it starts (runtime::options), so its names are known.
#[allow(clippy::expect_used)]
fn host_view(canaries: &probe::report::Canaries) -> HostView {
    let docker = runtime::caps::mask_of(&runtime::defaults::CAPABILITIES)
        .expect("the default capability names are known");
    let without_mknod = docker & !(1 << runtime::caps::number("CAP_MKNOD").unwrap_or(27));
    // The runtime withholds CAP_MKNOD where the cgroup has no device allowlist: v1's
    // devices controller has one, v2 would need an eBPF filter it does not load.
    let devices_restricted = matches!(
        runtime::cgroup::detect_mode(),
        runtime::cgroup::CgroupMode::V1 | runtime::cgroup::CgroupMode::Hybrid
    );
    HostView {
        observation: probe::isolation::observe(canaries, false),
        container_caps: if devices_restricted {
            docker
        } else {
            without_mknod
        },
        guest_container_caps: without_mknod,
    }
}

/// Why `level` cannot run on this host, if it cannot.
fn skip_reason(
    level: Isolation,
    doctor: &crate::doctor::Report,
    args: &CompareArgs,
) -> Option<String> {
    if !level.in_vm() {
        return None;
    }
    if let Err(why) = doctor.linux_verdict() {
        return Some(format!("this host cannot boot Linux guests: {why}"));
    }
    crate::run::images::resolve(args.kernel.as_deref(), args.initrd.as_deref())
        .err()
        .map(|e| e.to_string())
}

struct Plan<'a> {
    selection: &'a Selection,
    runs: u32,
    budget_ms: u32,
    net_port: u16,
    canaries: &'a probe::report::Canaries,
}

/// Runs every level: its isolation probe once, then, interleaved across the levels so a
/// slow spell of the host hits every level alike, one unmeasured warm-up and `runs`
/// measured rounds of (start → exit, bench).
fn run_levels(
    launcher: &Launcher,
    plan: &Plan,
    levels: &mut [LevelRuns],
    signals: &interrupt::Watcher,
) -> Result<(), CompareError> {
    let probes = !plan.selection.probes.is_empty();
    let bench = !plan.selection.benchmarks.is_empty();
    let running = levels.iter().filter(|l| l.runs()).count() as u64;
    let per_level = u64::from(probes)
        + if bench {
            1 + 2 * u64::from(plan.runs)
        } else {
            0
        };
    let progress = Progress::new(running * per_level);
    let mut seq = 0u32;
    let mut name = || {
        seq += 1;
        format!("vmm-compare-{}-{seq}", std::process::id())
    };

    if probes {
        for l in levels.iter_mut().filter(|l| l.runs()) {
            progress.step(l.level, "isolation probes");
            let result = launcher.observe(l.level, &name(), plan.canaries);
            signals.check()?;
            match result {
                Ok(o) => l.observation = Some(o),
                Err(e) => fail(l, &e, &progress),
            }
        }
    }
    if !bench {
        progress.finish();
        return Ok(());
    }
    for l in levels.iter_mut().filter(|l| l.runs()) {
        progress.step(l.level, "warm-up run");
        let result = launcher.time_true(l.level, &name());
        signals.check()?;
        if let Err(e) = result {
            fail(l, &e, &progress);
        }
    }
    for round in 1..=plan.runs {
        for l in levels.iter_mut().filter(|l| l.runs()) {
            progress.step(l.level, &format!("run {round}/{}: start → exit", plan.runs));
            let result = launcher.time_true(l.level, &name());
            signals.check()?;
            match result {
                Ok(ms) => l.true_ms.push(ms),
                Err(e) => {
                    fail(l, &e, &progress);
                    continue;
                }
            }
            progress.step(l.level, &format!("run {round}/{}: benchmarks", plan.runs));
            let net = super::runner::net_server_for(l.level, plan.net_port);
            let result = launcher.bench(l.level, &name(), plan.budget_ms, net.as_deref());
            signals.check()?;
            match result {
                Ok(run) => l.bench.push(run),
                Err(e) => fail(l, &e, &progress),
            }
        }
    }
    progress.finish();
    Ok(())
}

/// Records a level's failure (it runs no more) and says so at once, so a log shows it even
/// if the comparison never gets to its report.
fn fail(level: &mut LevelRuns, e: &RunFailure, progress: &Progress) {
    let text = edge::error_chain(e);
    progress.note(&format!("{}: failed: {text}", level.level));
    level.failure = Some(text);
}

/// The compute kernel must do the same work everywhere: a different checksum means it
/// did not, and its time is no measure.
fn checksum_mismatch(levels: &[LevelRuns]) -> Option<String> {
    let mut sums = levels.iter().flat_map(|l| {
        l.bench
            .iter()
            .map(move |b| (l.level, b.results.cpu_checksum))
    });
    let (_, first) = sums.next()?;
    sums.find(|&(_, sum)| sum != first).map(|(level, sum)| {
        format!("the compute kernel's checksum at {level} is {sum:#x}, elsewhere {first:#x}")
    })
}

/// Progress on stderr: a bar on a terminal, a line per step otherwise (logs).
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
                    // Cosmetic: a template indicatif refused would leave the default bar.
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        });
        Self { bar }
    }

    fn step(&self, level: Isolation, what: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!("{level}: {what}"));
                bar.inc(1);
            }
            None => eprintln!("vmm compare: {level}: {what}"),
        }
    }

    /// A line that stays, above the bar on a terminal.
    fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("vmm compare: {line}")),
            None => eprintln!("vmm compare: {line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn build_report(
    args: &CompareArgs,
    selection: &Selection,
    levels: &[LevelRuns],
    host: &HostView,
    doctor: &crate::doctor::Report,
    started_at: String,
    elapsed: Duration,
) -> CompareReport {
    let probes: Vec<ProbeRow> = selection
        .probes
        .iter()
        .map(|&i| probe_row(i, levels, host))
        .collect();
    let unexpected = probes
        .iter()
        .flat_map(|row| &row.cells)
        .filter(|c| c.verdict == Verdict::Unexpected)
        .count() as u32;
    let benchmarks: Vec<BenchRow> = selection
        .benchmarks
        .iter()
        .map(|&i| bench_row(i, levels))
        .collect();
    let literature = literature::values()
        .into_iter()
        .filter(|v| benchmarks.iter().any(|b| b.id == v.benchmark))
        .collect();
    CompareReport {
        schema_version: SCHEMA_VERSION,
        vmm_version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        duration_s: elapsed.as_secs_f64(),
        host: super::outputs::host_facts(doctor),
        runs: args.runs,
        levels: levels
            .iter()
            .map(|l| LevelStatus {
                name: l.level.name().into(),
                skipped: l.skipped.clone(),
            })
            .collect(),
        probes,
        benchmarks,
        literature,
        unexpected,
    }
}

fn probe_row(index: usize, levels: &[LevelRuns], host: &HostView) -> ProbeRow {
    let probe = &PROBES[index];
    let cells = levels
        .iter()
        .map(|l| {
            let expected = (probe.expect)(l.level, host);
            let observed = l.observation.as_ref().map(|o| (probe.observe)(o, host));
            let verdict = match &observed {
                None => Verdict::NotRun,
                Some(seen) if expected.accepts(seen) => Verdict::Expected,
                Some(_) => Verdict::Unexpected,
            };
            ProbeCell {
                level: l.level.name().into(),
                observed,
                expected: expected.shown,
                reason: expected.reason.into(),
                verdict,
            }
        })
        .collect();
    ProbeRow {
        id: probe.id.into(),
        title: probe.title.into(),
        cells,
    }
}

fn bench_row(index: usize, levels: &[LevelRuns]) -> BenchRow {
    let bench = &BENCHMARKS[index];
    let samples_of = |l: &LevelRuns| -> Vec<f64> {
        match bench.source {
            Source::StartToExit => l.true_ms.clone(),
            Source::StartToFirstOutput => l.bench.iter().map(|b| b.first_output_ms).collect(),
            Source::Idle(value) => l.bench.iter().filter_map(value).collect(),
            Source::Probe(value) => l
                .bench
                .iter()
                .filter_map(|b: &BenchRun| value(&b.results as &BenchResults))
                .collect(),
        }
    };
    let process_median = levels
        .iter()
        .find(|l| l.level == Isolation::Process)
        .and_then(|l| benchmarks::stats(&samples_of(l)))
        .map(|s| s.median);
    let cells = levels
        .iter()
        .map(|l| {
            let unavailable = l
                .skipped
                .clone()
                .or_else(|| (bench.unavailable_at)(l.level).map(str::to_owned));
            let stats = if unavailable.is_some() {
                None
            } else {
                benchmarks::stats(&samples_of(l))
            };
            let unavailable = match (&stats, unavailable, &l.failure) {
                (Some(_), _, _) => None,
                (None, Some(why), _) => Some(why),
                (None, None, Some(failure)) => Some(format!("failed: {failure}")),
                (None, None, None) => Some("not measured".into()),
            };
            let ratio_to_process = match (&stats, process_median) {
                (Some(s), Some(base)) if l.level != Isolation::Process && base > 0.0 => {
                    Some(s.median / base)
                }
                _ => None,
            };
            BenchCell {
                level: l.level.name().into(),
                stats,
                ratio_to_process,
                unavailable,
            }
        })
        .collect();
    BenchRow {
        id: bench.id.into(),
        title: bench.title.into(),
        unit: bench.unit.into(),
        better: bench.better,
        cells,
    }
}
