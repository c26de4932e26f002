//! `vmm bench run`: `vmm run` start → workload exit for /bin/true, each run a fresh `vmm
//! run` process, at each isolation level asked for, interleaved so that a slow spell of the
//! host hits every level alike. Reports measured wall times and peak memory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use clap::Args;
use edge::exit_code;

use crate::bench::{stats_ms, wait_with_rusage};
use crate::run::args::Isolation;

#[derive(Debug, Args)]
pub struct BenchRunArgs {
    /// Isolation levels to measure, comma-separated (process,container,vm,vm+container).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub isolation: Vec<Isolation>,
    /// Measured runs per level (after one unmeasured warm-up run each, which also packs
    /// the rootfs image for the VM levels).
    #[arg(long, default_value_t = 20)]
    pub runs: u32,
    /// Rootfs holding /bin/true [default: a busybox rootfs built by
    /// resources/container-rootfs.sh].
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Guest kernel for the VM levels (passed to `vmm run`).
    #[arg(long, value_name = "VMLINUX")]
    pub kernel: Option<PathBuf>,
    /// Agent initramfs for the VM levels (passed to `vmm run`).
    #[arg(long, value_name = "AGENT_INITRAMFS")]
    pub initrd: Option<PathBuf>,
    /// Also measure each VM level started from a warm snapshot (`vmm run
    /// --from-snapshot`), as rows `<level>@snapshot` beside the cold boots.
    #[arg(long)]
    pub from_snapshot: bool,
}

/// One row of the report: a level, booted or (VM levels) restored from a warm snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    level: Isolation,
    from_snapshot: bool,
}

impl Variant {
    fn name(&self) -> String {
        if self.from_snapshot {
            format!("{}@snapshot", self.level.name())
        } else {
            self.level.name().to_owned()
        }
    }
}

/// The rows to measure: each level asked for, once, and with `--from-snapshot` each VM
/// level a second time from a snapshot.
fn variants(levels: &[Isolation], from_snapshot: bool) -> Vec<Variant> {
    let mut variants: Vec<Variant> = Vec::new();
    for &level in levels {
        let booted = Variant {
            level,
            from_snapshot: false,
        };
        if variants.contains(&booted) {
            continue;
        }
        variants.push(booted);
        if from_snapshot && level.in_vm() {
            variants.push(Variant {
                level,
                from_snapshot: true,
            });
        }
    }
    variants
}

/// A measured `vmm run` that failed: its exit status and what it said.
struct RunFailed {
    status: i32,
    message: String,
}

impl RunFailed {
    /// A failure of this benchmark itself, not of the measured command.
    fn of_host(message: String) -> Self {
        Self {
            status: i32::from(exit_code::FAILED),
            message,
        }
    }
}

struct Sample {
    wall_ms: f64,
    max_rss_kib: u64,
    /// `vmm run --timings`: when each phase ended, ms since its start.
    phases: Vec<(String, f64)>,
}

pub fn run(args: &BenchRunArgs) -> ExitCode {
    if args.runs == 0 {
        eprintln!("vmm: error: --runs must be at least 1");
        return ExitCode::from(exit_code::BAD_INPUT);
    }
    let rootfs = match &args.rootfs {
        Some(dir) => dir.clone(),
        None => match crate::container::bench::busybox_rootfs() {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("vmm: error: {e}");
                return ExitCode::from(exit_code::FAILED);
            }
        },
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vmm: error: cannot find the vmm binary: {e}");
            return ExitCode::from(exit_code::FAILED);
        }
    };
    let levels = variants(&args.isolation, args.from_snapshot);
    let mut samples: Vec<Vec<Sample>> = levels.iter().map(|_| Vec::new()).collect();
    for round in 0..=args.runs {
        for (level, level_samples) in levels.iter().zip(&mut samples) {
            match run_once(&exe, *level, &rootfs, args) {
                Ok(sample) if round > 0 => level_samples.push(sample),
                Ok(_) => {}
                Err(failed) => {
                    eprintln!(
                        "vmm: error: bench run {round} at {}: {}",
                        level.name(),
                        failed.message
                    );
                    // `vmm run` refusing the input (a PVM host at a VM level, say) is bad
                    // input here too.
                    let bad_input = failed.status == i32::from(exit_code::BAD_INPUT);
                    return ExitCode::from(exit_code::of_error(bad_input));
                }
            }
        }
        if round > 0 && round % 5 == 0 {
            eprintln!("vmm bench run: {round}/{} rounds", args.runs);
        }
    }
    print_summary(&levels, &samples, &rootfs, args.runs);
    ExitCode::SUCCESS
}

fn run_once(
    exe: &Path,
    variant: Variant,
    rootfs: &Path,
    args: &BenchRunArgs,
) -> Result<Sample, RunFailed> {
    let mut command = Command::new(exe);
    command
        .args(["run", "--isolation", variant.level.name(), "--rootfs"])
        .arg(rootfs);
    if variant.from_snapshot {
        command.arg("--from-snapshot");
    }
    if variant.level.in_vm() {
        if let Some(kernel) = &args.kernel {
            command.arg("--kernel").arg(kernel);
        }
        if let Some(initrd) = &args.initrd {
            command.arg("--initrd").arg(initrd);
        }
    }
    command
        .args(["--timings", "--", "/bin/true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| RunFailed::of_host(format!("cannot start vmm run: {e}")))?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let (status, max_rss_kib) =
        wait_with_rusage(child.id() as libc::pid_t).map_err(RunFailed::of_host)?;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    if status != 0 {
        // Its own error line, without the --timings line.
        let why = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("vmm: error: "))
            .unwrap_or("no error message");
        return Err(RunFailed {
            status,
            message: format!("`vmm run` exited {status}: {why}"),
        });
    }
    Ok(Sample {
        wall_ms,
        max_rss_kib,
        phases: parse_timings(&stderr),
    })
}

/// The phases of `vmm run --timings`' line: `vmm: timings (ms since start): a 1.0, b 2.5`.
fn parse_timings(stderr: &str) -> Vec<(String, f64)> {
    let Some(list) = stderr
        .lines()
        .find_map(|l| l.strip_prefix("vmm: timings (ms since start): "))
    else {
        return Vec::new();
    };
    list.split(", ")
        .filter_map(|phase| {
            let (name, ms) = phase.rsplit_once(' ')?;
            Some((name.to_owned(), ms.parse().ok()?))
        })
        .collect()
}

/// Each phase's median over the samples, in the order the phases came.
fn phase_medians(samples: &[Sample]) -> Vec<(String, f64)> {
    let Some(first) = samples.first() else {
        return Vec::new();
    };
    first
        .phases
        .iter()
        .map(|(name, _)| {
            let values: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.phases.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
                .collect();
            (name.clone(), stats_ms(values).0)
        })
        .collect()
}

fn print_summary(levels: &[Variant], samples: &[Vec<Sample>], rootfs: &Path, runs: u32) {
    println!(
        "vmm bench run: `vmm run` start → exit of /bin/true, {runs} runs per level, interleaved (rootfs {})",
        rootfs.display()
    );
    println!(
        "  {:<22} {:>11} {:>11} {:>11} {:>13}",
        "level", "median", "p95", "min", "peak RSS"
    );
    let mut medians = Vec::new();
    for (level, level_samples) in levels.iter().zip(samples) {
        let (p50, p95, min) = stats_ms(level_samples.iter().map(|s| s.wall_ms).collect());
        let rss = level_samples
            .iter()
            .map(|s| s.max_rss_kib)
            .max()
            .unwrap_or(0);
        println!(
            "  {:<22} {:>8.1} ms {:>8.1} ms {:>8.1} ms {:>9} KiB",
            level.name(),
            p50,
            p95,
            min,
            rss
        );
        medians.push((*level, p50));
    }
    println!("  phases (median ms since `vmm run` started, from --timings):");
    for (level, level_samples) in levels.iter().zip(samples) {
        let phases: Vec<String> = phase_medians(level_samples)
            .iter()
            .map(|(name, ms)| format!("{name} {ms:.1}"))
            .collect();
        println!("  {:<22} {}", level.name(), phases.join(", "));
    }
    for (over, under, ratio) in ratios(&medians) {
        println!("  {over} / {under} (medians): {ratio:.2}");
    }
}

/// The ratios of medians the report gives, where both rows were measured: each level
/// over the one below it, and a snapshot start against a cold boot and a container.
fn ratios(medians: &[(Variant, f64)]) -> Vec<(String, String, f64)> {
    let booted = |level| Variant {
        level,
        from_snapshot: false,
    };
    let restored = |level| Variant {
        level,
        from_snapshot: true,
    };
    let pairs = [
        (booted(Isolation::Container), booted(Isolation::Process)),
        (booted(Isolation::VmContainer), booted(Isolation::Vm)),
        (booted(Isolation::Vm), booted(Isolation::Container)),
        (restored(Isolation::Vm), booted(Isolation::Container)),
        (
            restored(Isolation::VmContainer),
            booted(Isolation::Container),
        ),
        (booted(Isolation::Vm), restored(Isolation::Vm)),
        (
            booted(Isolation::VmContainer),
            restored(Isolation::VmContainer),
        ),
    ];
    let median_of = |v: Variant| medians.iter().find(|(m, _)| *m == v).map(|(_, ms)| *ms);
    pairs
        .into_iter()
        .filter_map(|(over, under)| {
            let ratio = median_of(over)? / median_of(under)?;
            Some((over.name(), under.name(), ratio))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_line_parses_into_named_phases() {
        let stderr = "vmm: packing…\nvmm: timings (ms since start): checked 1.5, agent answered 2103.0, done 2300.2\n";
        let phases = parse_timings(stderr);
        assert_eq!(
            phases,
            vec![
                ("checked".to_owned(), 1.5),
                ("agent answered".to_owned(), 2103.0),
                ("done".to_owned(), 2300.2)
            ]
        );
        assert!(parse_timings("no timings here").is_empty());
    }

    #[test]
    fn from_snapshot_adds_a_snapshot_row_after_each_vm_level_only() {
        let rows: Vec<String> = variants(
            &[
                Isolation::Container,
                Isolation::VmContainer,
                Isolation::Container,
            ],
            true,
        )
        .iter()
        .map(Variant::name)
        .collect();
        assert_eq!(rows, ["container", "vm+container", "vm+container@snapshot"]);
        assert_eq!(variants(&[Isolation::Vm], false).len(), 1);
    }

    #[test]
    fn snapshot_rows_are_compared_with_the_container_level_and_the_cold_boot() {
        let v = |level, from_snapshot| Variant {
            level,
            from_snapshot,
        };
        let medians = [
            (v(Isolation::Container, false), 10.0),
            (v(Isolation::VmContainer, false), 400.0),
            (v(Isolation::VmContainer, true), 25.0),
        ];
        let ratios = ratios(&medians);
        assert!(ratios.contains(&("vm+container@snapshot".into(), "container".into(), 2.5)));
        assert!(ratios.contains(&("vm+container".into(), "vm+container@snapshot".into(), 16.0)));
        assert_eq!(ratios.len(), 2, "{ratios:?}");
    }

    #[test]
    fn phase_medians_follow_the_first_samples_order() {
        let sample = |a: f64, b: f64| Sample {
            wall_ms: 0.0,
            max_rss_kib: 0,
            phases: vec![("a".into(), a), ("b".into(), b)],
        };
        let medians = phase_medians(&[sample(1.0, 10.0), sample(3.0, 30.0), sample(2.0, 20.0)]);
        assert_eq!(medians, vec![("a".to_owned(), 2.0), ("b".to_owned(), 20.0)]);
    }
}
