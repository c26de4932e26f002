//! `vmm bench start --hardening`: what the seccomp filters and the jail cost on start →
//! exit of the built-in guest. One run measures `vmm --kernel GUEST` three ways: with its
//! filters (the default), with `--no-seccomp`, and jailed (`--jail DIR --uid 65534 --gid
//! 65534`, filters on). Each round runs every variant once, so that a slow spell of the
//! host hits all alike, in each of the possible orders in turn: a run slowed by what the
//! one before it left the kernel to finish (a jail's namespaces, a VM's teardown) is not
//! always the same variant's. The costs are medians of the per-round differences, with
//! their 95% intervals ([`cost`]), and beside them the differences of the medians.

mod cost;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use edge::exit_code;

use crate::bench::{run_measured, stats_ms};
use crate::guest_image::TEST_GUEST_ELF;
use cost::Cost;

/// An environment variable naming another `vmm` binary to measure in place of this one:
/// an older build's costs, measured by this bench the same way.
const VMM_UNDER_TEST: &str = "VMM_BENCH_VMM";
/// The budget the hardening must keep to, on the median start → exit.
const BUDGET_MS: f64 = 1.0;
/// Who the jailed VMM runs as: nobody, as Firecracker's jailer examples do.
const JAIL_ID: &str = "65534";
/// What `vmm bench start` runs: no test, the boot-timer write first, then reset.
const GUEST_CMDLINE: &str = "console=ttyS0 tests=none boottimer end=reset";

struct Variant {
    name: &'static str,
    args: Vec<String>,
    wall_ms: Vec<f64>,
    /// CPU time (user and system) of the VMM's process: what it cost, whatever else the
    /// host was busy with.
    cpu_ms: Vec<f64>,
    /// Process start → the guest's first write (the boot timer), from its stderr.
    to_guest_ms: Vec<f64>,
}

pub fn run(runs: u32, mem_mib: u64) -> ExitCode {
    if runs == 0 {
        eprintln!("vmm: error: --runs must be at least 1");
        return ExitCode::from(exit_code::BAD_INPUT);
    }
    let work = std::env::temp_dir().join(format!("vmm-bench-hardening-{}", std::process::id()));
    let result = prepare(&work).and_then(|guest| measure(&work, &guest, runs, mem_mib));
    let _ = std::fs::remove_dir_all(&work);
    match result {
        Ok(variants) => {
            report(&variants, runs, mem_mib);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vmm: bench start --hardening failed: {e}");
            ExitCode::from(exit_code::FAILED)
        }
    }
}

/// The guest as a file the jailed user can read, and an empty jail directory.
fn prepare(work: &Path) -> Result<PathBuf, String> {
    let jail = work.join("jail");
    let guest = work.join("guest.elf");
    let made = std::fs::create_dir_all(&jail)
        .and_then(|()| std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::write(&guest, TEST_GUEST_ELF))
        .and_then(|()| std::fs::set_permissions(&guest, std::fs::Permissions::from_mode(0o644)));
    made.map_err(|e| format!("cannot prepare {}: {e}", work.display()))?;
    Ok(guest)
}

fn measure(work: &Path, guest: &Path, runs: u32, mem_mib: u64) -> Result<Vec<Variant>, String> {
    let exe = match std::env::var_os(VMM_UNDER_TEST) {
        Some(other) => PathBuf::from(other),
        None => std::env::current_exe().map_err(|e| format!("cannot find the vmm binary: {e}"))?,
    };
    let mut variants = vec![
        variant("seccomp (default)", &[]),
        variant("--no-seccomp", &["--no-seccomp"]),
    ];
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let jail = work.join("jail").to_string_lossy().into_owned();
        variants.push(variant(
            "jailed + seccomp",
            &["--jail", &jail, "--uid", JAIL_ID, "--gid", JAIL_ID],
        ));
    } else {
        println!("jailed: skipped (--jail needs root)");
    }
    let orders = permutations(variants.len());
    // Round 0 is a warm-up for every variant (page cache, the binary's pages): unmeasured.
    for round in 0..=runs as usize {
        for &k in &orders[round % orders.len()] {
            let v = &mut variants[k];
            let sample = run_once(&exe, guest, mem_mib, &v.args)
                .map_err(|e| format!("{} run {round}: {e}", v.name))?;
            if round > 0 {
                v.wall_ms.push(sample.wall_ms);
                v.cpu_ms.push(sample.cpu_ms);
                v.to_guest_ms.extend(sample.to_guest_ms);
            }
        }
        if round > 0 && round.is_multiple_of(50) {
            eprintln!("vmm bench start --hardening: {round}/{runs} rounds");
        }
    }
    Ok(variants)
}

/// Every order of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in permutations(n - 1) {
        for at in 0..n {
            let mut order = shorter.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

fn variant(name: &'static str, args: &[&str]) -> Variant {
    Variant {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        wall_ms: Vec::new(),
        cpu_ms: Vec::new(),
        to_guest_ms: Vec::new(),
    }
}

struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    to_guest_ms: Option<f64>,
}

/// One `vmm --kernel GUEST` run: its wall time (process start → exit), CPU time, and the
/// boot timer's reading.
fn run_once(exe: &Path, guest: &Path, mem_mib: u64, extra: &[String]) -> Result<Sample, String> {
    let run = run_measured(
        Command::new(exe)
            .args(extra)
            .arg("--kernel")
            .arg(guest)
            .args([
                "--mem",
                &mem_mib.to_string(),
                "--boot-timer",
                "--cmdline",
                GUEST_CMDLINE,
            ]),
    )?;
    let (wall_ms, cpu, stderr) = (run.wall.as_secs_f64() * 1e3, run.cpu, run.stderr);
    Ok(Sample {
        wall_ms,
        cpu_ms: cpu.as_secs_f64() * 1e3,
        to_guest_ms: crate::bench::parse_boot_timer_us(&stderr).map(|us| us as f64 / 1e3),
    })
}

fn report(variants: &[Variant], runs: u32, mem_mib: u64) {
    println!(
        "vmm bench start --hardening: {runs} rounds, each variant once a round, every order \
         in turn; `vmm --kernel` of the built-in guest (boot timer, then i8042 reset), 1 vCPU, \
         {mem_mib} MiB"
    );
    println!(
        "  {:<20} {:>15} {:>10} {:>10} {:>12} {:>14}",
        "variant", "start→exit p50", "p95", "min", "CPU p50", "to guest p50"
    );
    for v in variants {
        let (p50, p95, min) = stats_ms(v.wall_ms.clone());
        let to_guest = match v.to_guest_ms.is_empty() {
            true => "-".to_owned(),
            false => format!("{:.2} ms", stats_ms(v.to_guest_ms.clone()).0),
        };
        println!(
            "  {:<20} {:>12.2} ms {:>7.2} ms {:>7.2} ms {:>9.2} ms {:>14}",
            v.name,
            p50,
            p95,
            min,
            stats_ms(v.cpu_ms.clone()).0,
            to_guest
        );
    }
    println!("  (to guest: process start → the guest's first write, the boot timer)");
    let find = |name: &str| variants.iter().find(|v| v.name == name);
    let (Some(filtered), Some(bare)) = (find("seccomp (default)"), find("--no-seccomp")) else {
        return;
    };
    let mut costs = vec![("seccomp filters", filtered, bare)];
    if let Some(jailed) = find("jailed + seccomp") {
        costs.push(("the jail", jailed, filtered));
        costs.push(("seccomp and the jail", jailed, bare));
    }
    for (what, with, without) in costs {
        let (Some(wall), Some(cpu)) = (
            Cost::paired(&with.wall_ms, &without.wall_ms),
            Cost::paired(&with.cpu_ms, &without.cpu_ms),
        ) else {
            continue;
        };
        let of_medians = stats_ms(with.wall_ms.clone()).0 - stats_ms(without.wall_ms.clone()).0;
        let mean = Cost::paired_mean(&with.wall_ms, &without.wall_ms).unwrap_or(wall);
        let cpu_mean = Cost::paired_mean(&with.cpu_ms, &without.cpu_ms).unwrap_or(cpu);
        println!(
            "  cost of {what}: {:+.2} ms start→exit (95%: {:+.2} … {:+.2}; difference of the \
             medians {of_medians:+.2}), {:+.2} ms CPU: {} the {BUDGET_MS} ms budget",
            wall.median,
            wall.low,
            wall.high,
            cpu.median,
            wall.verdict(BUDGET_MS)
        );
        println!(
            "    mean {:+.2} ms start→exit (95%: {:+.2} … {:+.2}), {:+.2} ms CPU (95%: {:+.2} … \
             {:+.2})",
            mean.median, mean.low, mean.high, cpu_mean.median, cpu_mean.low, cpu_mean.high
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_follows_every_other_as_often_within_the_orders() {
        let orders = permutations(3);
        assert_eq!(orders.len(), 6);
        let mut follows = [[0; 3]; 3];
        for order in &orders {
            for pair in order.windows(2) {
                follows[pair[1]][pair[0]] += 1;
            }
        }
        for (a, row) in follows.iter().enumerate() {
            for (b, n) in row.iter().enumerate() {
                assert_eq!(*n, if a == b { 0 } else { 2 }, "{a} after {b}: {follows:?}");
            }
        }
    }

    #[test]
    fn the_guest_file_is_readable_by_the_jailed_user() {
        let work = std::env::temp_dir().join(format!("vmm-hardening-test-{}", std::process::id()));
        let guest = prepare(&work).unwrap();
        let mode = std::fs::metadata(&guest).unwrap().permissions().mode();
        let dir_mode = std::fs::metadata(&work).unwrap().permissions().mode();
        let jail = work.join("jail").is_dir();
        let _ = std::fs::remove_dir_all(&work);
        assert_eq!(mode & 0o004, 0o004, "{mode:o}");
        assert_eq!(dir_mode & 0o005, 0o005, "{dir_mode:o}");
        assert!(jail);
    }
}
