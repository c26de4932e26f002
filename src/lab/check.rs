//! `vmm lab check N`: every step run as the student would run it, each expectation
//! compared with what was seen, and a verdict per step: pass, fail (with the step's hint),
//! or skipped with the reason (a step that needs root, or Linux guests on a host that
//! cannot boot them).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge::exit_code;

use super::format::{Lab, Need, Step};
use super::LabError;

/// How long one step may run before it is killed and fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// What the steps run with: `vmm` first on PATH, LAB_ROOTFS and LAB_TMP.
pub struct StepEnv {
    path: String,
    rootfs: PathBuf,
    tmp: PathBuf,
}

impl StepEnv {
    /// `rootfs` is given, or the busybox rootfs `vmm bench` uses (built once, cached).
    pub fn prepare(rootfs: Option<&Path>) -> Result<Self, LabError> {
        let exe = std::env::current_exe()
            .map_err(|e| LabError::Failed(format!("cannot find the vmm binary: {e}")))?;
        let bin_dir = exe.parent().unwrap_or(Path::new("/")).to_owned();
        let path = match std::env::var("PATH") {
            Ok(rest) if !rest.is_empty() => format!("{}:{rest}", bin_dir.display()),
            _ => format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin_dir.display()),
        };
        let rootfs = match rootfs {
            Some(dir) if dir.is_dir() => dir.to_owned(),
            Some(dir) => {
                return Err(LabError::BadInput(format!(
                    "--rootfs {dir:?}: not a directory"
                )))
            }
            None => crate::container::bench::busybox_rootfs().map_err(LabError::Failed)?,
        };
        let tmp = std::env::temp_dir().join(format!("vmm-lab-{}", std::process::id()));
        std::fs::create_dir_all(&tmp)
            .map_err(|e| LabError::Failed(format!("cannot make {tmp:?}: {e}")))?;
        Ok(Self { path, rootfs, tmp })
    }

    /// `sh -c RUN` with the lab's environment, in LAB_TMP.
    pub fn command(&self, run: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(run)
            .current_dir(&self.tmp)
            .env("PATH", &self.path)
            .env("LAB_ROOTFS", &self.rootfs)
            .env("LAB_TMP", &self.tmp);
        cmd
    }
}

impl Drop for StepEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// What a step printed and how it ended.
pub struct Seen {
    pub stdout: String,
    pub stderr: String,
    /// Exit status (128 + N when killed by signal N); None when it overran its time.
    pub status: Option<i32>,
}

/// Runs `run`, capturing its output, killing it at [`STEP_TIMEOUT`].
pub fn run_captured(env: &StepEnv, run: &str) -> Result<Seen, LabError> {
    let mut child = env
        .command(run)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Failed(format!("cannot run sh: {e}")))?;
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LabError::Failed(
            "sh's stdout and stderr are not pipes".into(),
        ));
    };
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                break Some(status.code().unwrap_or_else(|| {
                    i32::from(exit_code::signalled(status.signal().unwrap_or(0)))
                }));
            }
            Ok(None) if started.elapsed() < STEP_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                // The whole group: the step's shell and whatever it started.
                // SAFETY: kill(2) on the process group this step's shell leads.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    Ok(Seen {
        stdout: text(out_reader.join().unwrap_or_default()),
        stderr: text(err_reader.join().unwrap_or_default()),
        status,
    })
}

/// Why a step cannot run on this host, if it cannot.
pub fn skip_reason(needs: &[Need]) -> Option<String> {
    for need in needs {
        match need {
            // SAFETY: geteuid(2) cannot fail and takes no arguments.
            Need::Root if unsafe { libc::geteuid() } != 0 => {
                return Some("needs root (namespaces, cgroups)".into())
            }
            Need::LinuxGuests => {
                // Probed once: the answer does not change during a check.
                static VERDICT: std::sync::OnceLock<Result<(), String>> =
                    std::sync::OnceLock::new();
                let verdict =
                    VERDICT.get_or_init(|| crate::doctor::Report::probe().linux_verdict());
                if let Err(why) = verdict {
                    return Some(format!("needs a host that boots Linux guests: {why}"));
                }
            }
            Need::Root => {}
        }
    }
    None
}

/// The expectations a step's output failed, each as one line; empty when it passed.
pub fn judge(step: &Step, seen: &Seen) -> Vec<String> {
    let spec = &step.spec;
    let mut failed = Vec::new();
    match seen.status {
        None => failed.push(format!(
            "it ran longer than {STEP_TIMEOUT:?} and was killed"
        )),
        Some(code) if code != spec.exit => {
            failed.push(format!("exit status {code}, expected {}", spec.exit))
        }
        Some(_) => {}
    }
    if let (Some(re), Some(text)) = (&step.stdout_regex, &spec.stdout_matches) {
        if !re.is_match(&seen.stdout) {
            failed.push(format!("stdout has no line matching {text:?}"));
        }
    }
    for want in &spec.stdout_contains {
        if !seen.stdout.contains(want.as_str()) {
            failed.push(format!("stdout lacks {want:?}"));
        }
    }
    for unwanted in &spec.stdout_lacks {
        if seen.stdout.contains(unwanted.as_str()) {
            failed.push(format!("stdout has {unwanted:?}, which it should not"));
        }
    }
    for want in &spec.stderr_contains {
        if !seen.stderr.contains(want.as_str()) {
            failed.push(format!("stderr lacks {want:?}"));
        }
    }
    failed
}

/// What the step expects, in one line.
pub fn expectation(step: &Step) -> String {
    let spec = &step.spec;
    let mut parts = vec![format!("exit {}", spec.exit)];
    if let Some(re) = &spec.stdout_matches {
        parts.push(format!("a stdout line matching {re:?}"));
    }
    for s in &spec.stdout_contains {
        parts.push(format!("stdout has {s:?}"));
    }
    for s in &spec.stdout_lacks {
        parts.push(format!("stdout lacks {s:?}"));
    }
    for s in &spec.stderr_contains {
        parts.push(format!("stderr has {s:?}"));
    }
    parts.join(", ")
}

/// The first lines of `text`, for the report.
fn excerpt(text: &str) -> String {
    const LINES: usize = 6;
    let lines: Vec<&str> = text.lines().collect();
    let mut shown = lines[..lines.len().min(LINES)].join("\n           ");
    if lines.len() > LINES {
        shown.push_str(&format!(
            "\n           … ({} more lines)",
            lines.len() - LINES
        ));
    }
    shown
}

/// Counts of one lab's check.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

/// Checks every step of `lab` (or only those needing `only_needing`), printing the report
/// as it goes.
pub fn check(lab: &Lab, env: &StepEnv, only_needing: Option<Need>) -> Result<Tally, LabError> {
    println!("{} ({})", lab.title, lab.file);
    let mut tally = Tally::default();
    // The text must not show a command that no step checks.
    for problem in lab.lint() {
        println!("  lint: FAIL: {problem}");
        tally.failed += 1;
    }
    for (i, step) in lab.steps.iter().enumerate() {
        if only_needing.is_some_and(|need| !lab.needs_of(step).contains(&need)) {
            continue;
        }
        let label = format!("  [{}/{}] {}", i + 1, lab.steps.len(), step.title);
        if let Some(why) = skip_reason(&lab.needs_of(step)) {
            println!("{label}: skipped ({why})");
            tally.skipped += 1;
            continue;
        }
        let seen = run_captured(env, &step.spec.run)?;
        let failed = judge(step, &seen);
        if failed.is_empty() {
            println!("{label}: pass");
            tally.passed += 1;
            continue;
        }
        tally.failed += 1;
        println!("{label}: FAIL");
        println!("      ran: {}", step.spec.run);
        println!("      expected: {}", expectation(step));
        for f in &failed {
            println!("      but: {f}");
        }
        println!("      stdout: {}", excerpt(&seen.stdout));
        if !seen.stderr.trim().is_empty() {
            println!("      stderr: {}", excerpt(&seen.stderr));
        }
        println!("      hint: {}", step.spec.hint);
    }
    println!(
        "  {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.skipped
    );
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::format::parse;

    fn lab_with(step: &str) -> Lab {
        let text = format!(
            "# Lab 1: t\n\n```lab\nsummary = \"s\"\n```\n\n## Goal\n\n## Background\n\n\
             ## Steps\n\n### Step 1: s\n\n```lab-step\n{step}\nhint = \"h\"\n```\n\n\
             ## Questions\n\n## Further reading\n"
        );
        parse("01-t.md", &text).unwrap()
    }

    fn seen(stdout: &str, status: i32) -> Seen {
        Seen {
            stdout: stdout.into(),
            stderr: String::new(),
            status: Some(status),
        }
    }

    #[test]
    fn a_step_passes_only_when_every_expectation_holds() {
        let lab = lab_with("run = \"x\"\nstdout_matches = '^a [0-9]+$'\nstdout_lacks = [\"b\"]");
        let step = &lab.steps[0];
        assert!(judge(step, &seen("z\na 12\n", 0)).is_empty());
        assert_eq!(judge(step, &seen("a 12\nb\n", 0)).len(), 1);
        assert_eq!(judge(step, &seen("a x\n", 1)).len(), 2);
    }

    #[test]
    fn an_overrun_is_a_failure() {
        let lab = lab_with("run = \"x\"\nexit = 0\nstdout_contains = [\"y\"]");
        let overran = Seen {
            stdout: "y".into(),
            stderr: String::new(),
            status: None,
        };
        assert!(judge(&lab.steps[0], &overran)[0].contains("longer than"));
    }

    #[test]
    fn steps_run_in_the_lab_environment() {
        let env = StepEnv {
            path: std::env::var("PATH").unwrap_or_default(),
            rootfs: PathBuf::from("/some/rootfs"),
            tmp: std::env::temp_dir(),
        };
        let seen = run_captured(&env, "echo \"$LAB_ROOTFS\"; echo oops >&2; exit 3").unwrap();
        assert_eq!(seen.stdout, "/some/rootfs\n");
        assert_eq!(seen.stderr, "oops\n");
        assert_eq!(seen.status, Some(3));
        std::mem::forget(env); // the temp dir is the system's, not ours to remove
    }
}
