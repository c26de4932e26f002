//! `vmm bench restore`: how soon a guest restored from a snapshot runs again, beside how
//! soon the same guest runs when booted cold.
//!
//! The snapshot is taken first, by a `vmm bench restore --snapshot-to DIR` process: the
//! built-in guest is booted in it with `tests=spin`
//! (it prints one line, then reads an unassigned I/O port in a loop, so every turn of its
//! loop is a VM exit), paused once it spins, snapshotted and stopped. Each measured run is
//! then a fresh `vmm --restore` process, which reports when its guest's first exit after
//! the restore came (the guest has executed again: it re-runs the port read it was
//! paused at) and stops. Measured: process start → that exit, as the VMM's own clock
//! says, and spawn → exit of the process. The cold runs are `vmm bench start`'s: process
//! start → the guest's first write (its boot-timer write, its first instructions).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge::exit_code;

use crate::bench::{percentile, run_measured};
use crate::guest_image::GuestFile;
use crate::vm::{self, console_log::ConsoleLog};

/// The line the `spin` guest prints before it spins.
const SPINNING: &str = "vmmtest: spinning";
/// How long the guest may take to reach its loop.
const SPIN_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(runs: u32, mem_mib: u64, snapshot_to: Option<&Path>) -> ExitCode {
    if let Some(dir) = snapshot_to {
        return match take_snapshot(&dir.join("state"), &dir.join("mem"), mem_mib) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vmm: bench restore: {e}");
                ExitCode::from(exit_code::FAILED)
            }
        };
    }
    if runs == 0 {
        eprintln!("vmm: error: --runs must be at least 1");
        return ExitCode::from(exit_code::BAD_INPUT);
    }
    let dir = std::env::temp_dir().join(format!("vmm-bench-restore-{}", std::process::id()));
    let measured = std::fs::create_dir_all(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))
        .and_then(|()| measure(&dir, runs, mem_mib));
    let _ = std::fs::remove_dir_all(&dir);
    match measured {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmm: bench restore failed: {e}");
            ExitCode::from(exit_code::FAILED)
        }
    }
}

fn measure(dir: &Path, runs: u32, mem_mib: u64) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the vmm binary: {e}"))?;
    let (state, mem) = (dir.join("state"), dir.join("mem"));
    let taken = Command::new(&exe)
        .args([
            "bench",
            "restore",
            "--mem",
            &mem_mib.to_string(),
            "--snapshot-to",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("taking the snapshot: {e}"))?;
    if !taken.status.success() {
        return Err(String::from_utf8_lossy(&taken.stderr).trim().to_string());
    }
    let mut restores = Vec::new();
    let mut colds = Vec::new();
    // One unmeasured run of each warms the page cache and the binary's pages; then the
    // two alternate, so that both see the same host.
    for i in 0..=runs {
        let restore =
            restore_once(&exe, &state, &mem).map_err(|e| format!("restore run {i}: {e}"))?;
        let cold =
            crate::bench::run_once(&exe, mem_mib).map_err(|e| format!("cold run {i}: {e}"))?;
        if i > 0 {
            restores.push(restore);
            colds.push(cold);
        }
    }
    print_summary(&restores, &colds, mem_mib);
    Ok(())
}

/// Boots the `spin` guest in this process, and snapshots it once it spins.
fn take_snapshot(state: &Path, mem: &Path, mem_mib: u64) -> Result<(), String> {
    let guest = GuestFile::create().map_err(|e| format!("staging the built-in guest: {e}"))?;
    let log = Arc::new(Mutex::new(ConsoleLog::new()));
    let stop = Arc::new(devices::StopSignal::new().map_err(|e| format!("stop event: {e}"))?);
    let control = vm::VmControl::new();
    let config = vm::VmConfig {
        kernel: guest.path(),
        mem_mib,
        cpus: 1,
        cmdline: "console=ttyS0 tests=spin".into(),
        initrd: None,
        devices: Default::default(),
        boot_timer: None,
    };
    let options = vm::RunOptions {
        console: vm::Console::Log(log.clone()),
        stop: Some(stop.clone()),
        control: Some(control.clone()),
        ..Default::default()
    };
    let running = std::thread::spawn(move || vm::run_with(&config, options));
    let deadline = Instant::now() + SPIN_TIMEOUT;
    let spinning = loop {
        let lines = log.lock().unwrap_or_else(|p| p.into_inner()).tail_lines(4);
        if lines.iter().any(|l| l == SPINNING) {
            break true;
        }
        if running.is_finished() || Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let taken = match spinning {
        true => control
            .pause()
            .and_then(|()| control.snapshot(state, mem))
            .map_err(|e| format!("snapshot: {}", edge::error_chain(&e))),
        false => Err("the guest never reached its loop".into()),
    };
    stop.request(devices::StopReason::Requested);
    let ended = running.join();
    taken?;
    match ended {
        Ok(Ok(vm::VmOutcome::Stopped)) => Ok(()),
        Ok(Ok(other)) => Err(format!("the snapshotted VM ended unexpectedly: {other:?}")),
        Ok(Err(e)) => Err(format!("the snapshotted VM: {}", edge::error_chain(&e))),
        Err(_) => Err("the snapshotted VM's thread panicked".into()),
    }
}

struct RestoreSample {
    /// Process start → the restored guest's first exit (the VMM's own clock).
    to_guest: Duration,
    /// Spawn → exit of the process.
    wall: Duration,
    max_rss_kib: u64,
}

fn restore_once(exe: &Path, state: &Path, mem: &Path) -> Result<RestoreSample, String> {
    let run = run_measured(
        Command::new(exe)
            .arg("--restore")
            .arg(state)
            .arg("--mem-file")
            .arg(mem)
            .arg("--bench-first-exit"),
    )?;
    let (wall, stderr, max_rss_kib) = (run.wall, run.stderr, run.max_rss_kib);
    let us = first_exit_us(&stderr).ok_or_else(|| format!("no first-exit report in {stderr:?}"))?;
    Ok(RestoreSample {
        to_guest: Duration::from_micros(us),
        wall,
        max_rss_kib,
    })
}

/// "vmm: restored guest's first exit 1234 µs after the VMM started" → 1234.
fn first_exit_us(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("vmm: restored guest's first exit "))?;
    line.split_whitespace().nth(5)?.parse().ok()
}

/// (median, p90, min) in ms.
fn summary(values: impl Iterator<Item = Duration>) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = values.map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    (percentile(&ms, 50.0), percentile(&ms, 90.0), ms[0])
}

fn print_summary(restores: &[RestoreSample], colds: &[crate::bench::Sample], mem_mib: u64) {
    println!(
        "vmm bench restore: {} runs each, 1 vCPU, {mem_mib} MiB, built-in guest",
        restores.len()
    );
    let row = |what: &str, (p50, p90, min): (f64, f64, f64)| {
        println!("  {what:<48} median {p50:7.2} ms, p90 {p90:7.2} ms, min {min:7.2} ms");
    };
    row(
        "restore: process start → guest's first exit",
        summary(restores.iter().map(|s| s.to_guest)),
    );
    row(
        "restore: wall time, spawn → exit",
        summary(restores.iter().map(|s| s.wall)),
    );
    let cold_to_guest: Vec<Duration> = colds.iter().filter_map(|s| s.to_guest).collect();
    if !cold_to_guest.is_empty() {
        row(
            "cold boot: process start → guest's first write",
            summary(cold_to_guest.into_iter()),
        );
    }
    row(
        "cold boot: wall time, spawn → exit",
        summary(colds.iter().map(|s| s.wall)),
    );
    let rss = |kib: Vec<u64>| {
        let mut kib: Vec<f64> = kib.into_iter().map(|k| k as f64).collect();
        kib.sort_by(|a, b| a.total_cmp(b));
        (percentile(&kib, 50.0), kib[kib.len() - 1])
    };
    let (restore_rss, restore_max) = rss(restores.iter().map(|s| s.max_rss_kib).collect());
    let (cold_rss, cold_max) = rss(colds.iter().map(|s| s.max_rss_kib).collect());
    println!(
        "  peak RSS: restore median {restore_rss:.0} KiB (max {restore_max:.0}), cold boot median {cold_rss:.0} KiB (max {cold_max:.0})"
    );
    println!("  (the host's load: {})", load_average());
}

/// /proc/loadavg's first three fields: contended hosts give long tails, and say so here.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_exit_line_parses_microseconds() {
        let stderr = "something\nvmm: restored guest's first exit 1234 µs after the VMM started\n";
        assert_eq!(first_exit_us(stderr), Some(1234));
        assert_eq!(first_exit_us("vmm: other\n"), None);
    }

    #[test]
    fn summary_is_median_p90_and_min_in_ms() {
        let (p50, p90, min) = summary((1..=10).map(Duration::from_millis));
        assert_eq!((p50, p90, min), (6.0, 9.0, 1.0));
    }
}
