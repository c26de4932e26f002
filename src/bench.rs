//! `vmm bench start`: N runs of process start → first guest instruction → exit, each a
//! fresh `vmm` process, reporting measured wall times and memory.

use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use edge::exit_code;

pub fn start(runs: u32, mem_mib: u64) -> ExitCode {
    if runs == 0 {
        eprintln!("vmm: error: --runs must be at least 1");
        return ExitCode::from(exit_code::BAD_INPUT);
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vmm: error: cannot find the vmm binary: {e}");
            return ExitCode::from(exit_code::FAILED);
        }
    };
    let mut samples = Vec::with_capacity(runs as usize);
    // One unmeasured run warms the page cache and the binary's pages.
    for i in 0..=runs {
        match run_once(&exe, mem_mib) {
            Ok(s) if i > 0 => samples.push(s),
            Ok(_) => {}
            Err(e) => {
                eprintln!("vmm: bench run {i} failed: {e}");
                return ExitCode::from(exit_code::FAILED);
            }
        }
    }
    print_summary(&samples, mem_mib);
    ExitCode::SUCCESS
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) wall: Duration,
    /// Process start → the guest's first write to the boot-timer register.
    pub(crate) to_guest: Option<Duration>,
    pub(crate) max_rss_kib: u64,
    guest_resident_kib: Option<u64>,
}

/// One cold start of the built-in guest in a fresh `vmm` process (`vmm bench restore`
/// puts these beside its restores).
pub(crate) fn run_once(exe: &std::path::Path, mem_mib: u64) -> Result<Sample, String> {
    let run = run_measured(Command::new(exe).args([
        "demo",
        "--bench-run",
        "--mem",
        &mem_mib.to_string(),
    ]))?;
    let (wall, stderr, max_rss_kib) = (run.wall, run.stderr, run.max_rss_kib);
    Ok(Sample {
        wall,
        to_guest: parse_boot_timer_us(&stderr).map(Duration::from_micros),
        max_rss_kib,
        guest_resident_kib: parse_after(&stderr, "guest RAM resident: ", " KiB"),
    })
}

/// Waits for the child and returns (exit status, peak RSS in KiB) from wait4(2).
pub(crate) fn wait_with_rusage(pid: libc::pid_t) -> Result<(i32, u64), String> {
    let (code, usage) = wait4_usage(pid)?;
    Ok((code, usage.ru_maxrss as u64))
}

/// What one measured run of a child `vmm` gave.
pub(crate) struct MeasuredRun {
    /// Spawn → reaped.
    pub wall: Duration,
    pub stderr: String,
    pub max_rss_kib: u64,
    /// User and system CPU time.
    pub cpu: Duration,
}

/// Runs `cmd` (stdin and stdout null, stderr read whole) to its end and measures it; a
/// non-zero exit status is an error carrying the status and stderr.
pub(crate) fn run_measured(cmd: &mut Command) -> Result<MeasuredRun, String> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let (status, usage) = wait4_usage(child.id() as libc::pid_t)?;
    let wall = started.elapsed();
    if status != 0 {
        return Err(format!("exit status {status}: {}", stderr.trim()));
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(MeasuredRun {
        wall,
        stderr,
        max_rss_kib: usage.ru_maxrss as u64,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
    })
}

/// Waits for the child: its exit status (128 + N when killed by signal N) and rusage.
fn wait4_usage(pid: libc::pid_t) -> Result<(i32, libc::rusage), String> {
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; status and usage are valid pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        i32::from(exit_code::signalled(libc::WTERMSIG(status)))
    };
    Ok((code, usage))
}

pub(crate) fn parse_boot_timer_us(stderr: &str) -> Option<u64> {
    // "boot-timer: guest reached the boot timer 1.234 ms after the VMM started (1234 µs)"
    let line = stderr.lines().find(|l| l.starts_with("boot-timer:"))?;
    let start = line.rfind('(')? + 1;
    let end = line[start..].find(' ')? + start;
    line[start..end].parse().ok()
}

fn parse_after(text: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let start = text.find(prefix)? + prefix.len();
    let end = text[start..].find(suffix)? + start;
    text[start..end].trim().parse().ok()
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn stats_ms(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&values, 50.0),
        percentile(&values, 95.0),
        values[0],
    )
}

fn print_summary(samples: &[Sample], mem_mib: u64) {
    let wall: Vec<f64> = samples.iter().map(|s| s.wall.as_secs_f64() * 1e3).collect();
    let (w50, w95, wmin) = stats_ms(wall);
    println!(
        "vmm bench start: {} runs, 1 vCPU, {mem_mib} MiB, built-in guest (boot timer, then i8042 reset)",
        samples.len()
    );
    println!("  wall time, process start → exit:     median {w50:.2} ms, p95 {w95:.2} ms, min {wmin:.2} ms");
    let to_guest: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.to_guest.map(|d| d.as_secs_f64() * 1e3))
        .collect();
    if !to_guest.is_empty() {
        let (g50, g95, gmin) = stats_ms(to_guest);
        println!("  process start → guest's first write:  median {g50:.2} ms, p95 {g95:.2} ms, min {gmin:.2} ms");
    }
    let peak = samples.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
    let mut rss: Vec<f64> = samples.iter().map(|s| s.max_rss_kib as f64).collect();
    rss.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  peak RSS: median {:.0} KiB, max {peak} KiB",
        percentile(&rss, 50.0)
    );
    let beyond: Vec<f64> = samples
        .iter()
        .filter_map(|s| {
            s.guest_resident_kib
                .map(|g| s.max_rss_kib.saturating_sub(g) as f64)
        })
        .collect();
    if let Some(guest) = samples.iter().filter_map(|s| s.guest_resident_kib).max() {
        let (b50, _, _) = stats_ms(beyond.clone());
        let bmax = beyond.iter().cloned().fold(0.0, f64::max);
        println!(
            "  guest RAM touched: {guest} KiB; peak RSS beyond it: median {b50:.0} KiB, max {bmax:.0} KiB"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_timer_line_parses_microseconds() {
        let line =
            "boot-timer: guest reached the boot timer 1.234 ms after the VMM started (1234 µs)\n";
        assert_eq!(parse_boot_timer_us(line), Some(1234));
    }

    #[test]
    fn percentile_picks_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
    }

    #[test]
    fn resident_line_parses() {
        assert_eq!(
            parse_after(
                "vmm: guest RAM resident: 812 KiB\n",
                "guest RAM resident: ",
                " KiB"
            ),
            Some(812)
        );
    }
}
