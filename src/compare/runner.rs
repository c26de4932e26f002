//! Runs the probe at one level through `vmm run`, as a user would: a fresh `vmm run`
//! process per measurement, its output read line by line with a deadline, and, for an
//! idle instance, the memory of everything it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::run::args::Isolation;

/// The probe's path inside the rootfs.
pub const PROBE_IN_ROOTFS: &str = "/vmm-probe";
/// The line `vmm-probe bench --wait-for-go` prints first.
const READY_LINE: &str = "vmm-probe: ready";
/// Memory limit of the container levels: small, so the probe's allocation past it is quick.
pub const CONTAINER_MEMORY: &str = "64m";
/// RAM of the microVM at the vm level (there the limit is the guest's RAM).
pub const VM_MEMORY: &str = "128m";

/// Whether `level` runs with `vmm run --net link`: a point-to-point link to the host (a
/// veth pair for a container, a TAP and virtio-net for a microVM, that NIC itself for a
/// container in a microVM), which the network benchmarks use. The process level shares
/// the host's network.
pub fn has_link(level: Isolation) -> bool {
    level != Isolation::Process
}

/// Where the probe at `level` finds the host's net server listening on `port` (on every
/// address): loopback where it shares the host's network, the default gateway over a link.
pub fn net_server_for(level: Isolation, port: u16) -> Option<String> {
    match level {
        Isolation::Process => Some(format!("127.0.0.1:{port}")),
        _ if has_link(level) => Some(format!("gateway:{port}")),
        _ => None,
    }
}

/// How to start `vmm run` for this comparison.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub vmm: PathBuf,
    pub rootfs: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub timeout: Duration,
}

/// A `vmm run` of the comparison that did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("cannot start `vmm run`")]
    Spawn(#[source] std::io::Error),
    #[error("`vmm run` took longer than {0:?} and was killed")]
    Timeout(Duration),
    #[error("`vmm run` exited with status {status}: {message}")]
    Exited { status: i32, message: String },
    #[error("the probe's output is not a result ({0})")]
    BadOutput(String),
}

/// What an idle instance costs, measured while the probe waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleCost {
    /// PSS of `vmm run` and every process it started, MiB.
    pub pss_mib: f64,
    /// Memory charged to the workload's own cgroup, MiB, when it has one.
    pub cgroup_mib: Option<f64>,
}

/// One bench run's measurements.
#[derive(Debug, Clone)]
pub struct BenchRun {
    /// `vmm run` spawned → the probe's first line arrived, ms.
    pub first_output_ms: f64,
    pub idle: IdleCost,
    pub results: probe::report::BenchResults,
}

impl Launcher {
    fn command(&self, level: Isolation, name: &str, probe_args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.vmm);
        cmd.arg("run")
            .args(["--isolation", level.name()])
            .arg("--rootfs")
            .arg(&self.rootfs)
            .args(["--name", name]);
        match level {
            Isolation::Process => {}
            Isolation::Container | Isolation::VmContainer => {
                cmd.args(["--memory", CONTAINER_MEMORY]);
            }
            Isolation::Vm => {
                cmd.args(["--memory", VM_MEMORY]);
            }
        }
        if has_link(level) {
            cmd.args(["--net", "link"]);
        }
        if level.in_vm() {
            if let Some(kernel) = &self.kernel {
                cmd.arg("--kernel").arg(kernel);
            }
            if let Some(initrd) = &self.initrd {
                cmd.arg("--initrd").arg(initrd);
            }
            cmd.args(["--boot-timeout", &self.timeout.as_secs().max(1).to_string()]);
        }
        cmd.arg("--").arg(PROBE_IN_ROOTFS).args(probe_args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// `vmm run -- vmm-probe true`: start → exit, ms.
    pub fn time_true(&self, level: Isolation, name: &str) -> Result<f64, RunFailure> {
        let mut cmd = self.command(level, name, &["true"]);
        cmd.stdin(Stdio::null());
        let started = Instant::now();
        let mut running = Running::spawn(cmd, self.timeout)?;
        running.finish()?;
        Ok(started.elapsed().as_secs_f64() * 1e3)
    }

    /// `vmm run -- vmm-probe isolation …`: the probe's observation.
    pub fn observe(
        &self,
        level: Isolation,
        name: &str,
        canaries: &probe::report::Canaries,
    ) -> Result<probe::report::Observation, RunFailure> {
        let canaries = serde_json::to_string(canaries).map_err(|e| RunFailure::Spawn(e.into()))?;
        let mut args = vec!["isolation", "--canaries", &canaries];
        if level != Isolation::Process {
            // At the process level the limit is the host's own RAM: never exhaust it.
            args.push("--exceed-memory-limit");
        }
        let mut cmd = self.command(level, name, &args);
        cmd.stdin(Stdio::null());
        let mut running = Running::spawn(cmd, self.timeout)?;
        let stdout = running.finish()?;
        let observation: probe::report::Observation = parse_last_line(&stdout)?;
        check_version(observation.probe_version)?;
        Ok(observation)
    }

    /// `vmm run -- vmm-probe bench --wait-for-go …`: start → first output, the idle
    /// instance's memory, then the benchmarks.
    pub fn bench(
        &self,
        level: Isolation,
        name: &str,
        budget_ms: u32,
        net: Option<&str>,
    ) -> Result<BenchRun, RunFailure> {
        let budget = budget_ms.to_string();
        let mut args = vec!["bench", "--wait-for-go", "--budget-ms", &budget];
        if let Some(addr) = net {
            args.extend(["--net", addr]);
        }
        let mut cmd = self.command(level, name, &args);
        cmd.stdin(Stdio::piped());
        let started = Instant::now();
        let mut running = Running::spawn(cmd, self.timeout)?;
        let first = running.next_line()?;
        let first_output_ms = started.elapsed().as_secs_f64() * 1e3;
        if first.trim_end() != READY_LINE {
            running.kill();
            return Err(RunFailure::BadOutput(format!(
                "expected {READY_LINE:?} first, got {first:?}"
            )));
        }
        let idle = super::memory::idle_cost(running.child.id());
        running.go();
        let stdout = running.finish()?;
        let results: probe::report::BenchResults = parse_last_line(&stdout)?;
        check_version(results.probe_version)?;
        Ok(BenchRun {
            first_output_ms,
            idle,
            results,
        })
    }
}

fn check_version(version: u32) -> Result<(), RunFailure> {
    if version == probe::report::PROBE_VERSION {
        Ok(())
    } else {
        Err(RunFailure::BadOutput(format!(
            "probe version {version}, this vmm reads version {}",
            probe::report::PROBE_VERSION
        )))
    }
}

fn parse_last_line<T: serde::de::DeserializeOwned>(stdout: &str) -> Result<T, RunFailure> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| RunFailure::BadOutput("no output".into()))?;
    serde_json::from_str(line).map_err(|e| RunFailure::BadOutput(format!("{e}: {line:.200}")))
}

/// A `vmm run` child with its stdout lines arriving on a channel and its stderr collected,
/// so that every wait has a deadline.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    deadline: Instant,
    timeout: Duration,
}

impl Running {
    fn spawn(mut cmd: Command, timeout: Duration) -> Result<Self, RunFailure> {
        let mut child = cmd.spawn().map_err(RunFailure::Spawn)?;
        let stdin = child.stdin.take();
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunFailure::Spawn(std::io::Error::other(
                "its stdout and stderr must be pipes",
            )));
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Self {
            child,
            stdin,
            lines,
            stderr: Some(stderr),
            deadline: Instant::now() + timeout,
            timeout,
        })
    }

    fn next_line(&mut self) -> Result<String, RunFailure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(RunFailure::Timeout(self.timeout))
            }
            // stdout closed before any line: the run ended; say how.
            Err(RecvTimeoutError::Disconnected) => match self.finish() {
                Ok(_) => Err(RunFailure::BadOutput("no output".into())),
                Err(e) => Err(e),
            },
        }
    }

    /// Lets a `--wait-for-go` probe go on: one line on its stdin, then end of input.
    fn go(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }

    /// Waits for the end (by the deadline) and returns the rest of stdout; an exit status
    /// other than 0 is a failure carrying `vmm run`'s last stderr line.
    fn finish(&mut self) -> Result<String, RunFailure> {
        self.stdin.take();
        let mut out = String::new();
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    out.push_str(&line);
                    out.push('\n');
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    return Err(RunFailure::Timeout(self.timeout));
                }
            }
        }
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < self.deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => {
                    self.kill();
                    return Err(RunFailure::Timeout(self.timeout));
                }
            }
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            return Ok(out);
        }
        let code = status.code().unwrap_or(-1);
        let message = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no message)")
            .to_owned();
        Err(RunFailure::Exited {
            status: code,
            message,
        })
    }

    /// Ends the run: SIGTERM (which `vmm run` forwards to the workload and answers by
    /// tearing down), then SIGKILL if it lingers.
    fn kill(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own unreaped child's PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The vmm binary the comparison runs (`vmm run` is a subcommand of this same binary).
pub fn this_vmm() -> std::io::Result<PathBuf> {
    std::env::current_exe()
}

/// Whether `path` looks like an executable file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_non_empty_line_is_the_result() {
        let out = "noise\n{\"a\":1}\n\n";
        let v: serde_json::Value = parse_last_line(out).unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn output_without_a_document_is_bad_output() {
        let r: Result<serde_json::Value, _> = parse_last_line("\n \n");
        assert!(matches!(r, Err(RunFailure::BadOutput(_))));
        let r: Result<serde_json::Value, _> = parse_last_line("not json\n");
        assert!(matches!(r, Err(RunFailure::BadOutput(_))));
    }

    #[test]
    fn a_probe_of_another_version_is_refused() {
        assert!(check_version(probe::report::PROBE_VERSION).is_ok());
        assert!(check_version(probe::report::PROBE_VERSION + 1).is_err());
    }
}
