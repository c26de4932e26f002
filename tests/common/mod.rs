//! Shared helpers for integration tests that run the real `vmm` binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod api;
pub mod snapshots;

pub const VMM: &str = env!("CARGO_BIN_EXE_vmm");
pub const TEST_GUEST: &str = env!("VMM_TEST_GUEST");

/// The default limit for one VM run; a guest that overruns it is killed and reported.
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Lines the test guest printed with the `vmmtest: ` prefix, prefix removed.
    pub fn guest_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix("vmmtest: "))
            .collect()
    }

    /// The value of `vmmtest: fact KEY=VALUE` (the first one).
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts(key).into_iter().next()
    }

    /// Every value reported for KEY, in order.
    pub fn facts(&self, key: &str) -> Vec<&str> {
        let prefix = format!("fact {key}=");
        self.guest_lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect()
    }

    pub fn failures(&self) -> Vec<&str> {
        self.guest_lines()
            .into_iter()
            .filter(|l| l.starts_with("FAIL"))
            .collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `vmm ARGS` with `stdin` as its input, killing it after `timeout`.
/// Panics (failing the test) with the output so far if it had to be killed.
pub fn run_vmm_with(args: &[&str], stdin: &[u8], timeout: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new(VMM)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmm");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
        // Dropping `input` closes the pipe: end of input for the guest console.
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
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
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
            let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
            panic!(
                "vmm {args:?} overran its {timeout:?} limit and was killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    Run {
        status,
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
        elapsed: started.elapsed(),
    }
}

pub fn run_vmm(args: &[&str]) -> Run {
    run_vmm_with(args, b"", GUEST_TIMEOUT)
}

/// Boots the test guest with the given extra vmm args and guest command line tokens.
pub fn boot_guest(vmm_args: &[&str], guest_cmdline: &str) -> Run {
    let cmdline = format!("console=ttyS0 {guest_cmdline}");
    let mut args = vec!["--kernel", TEST_GUEST, "--cmdline", cmdline.as_str()];
    args.extend_from_slice(vmm_args);
    run_vmm(&args)
}

/// Why this host cannot run VMs, or None when it can (/dev/kvm opens read-write).
pub fn kvm_unavailable() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm is not usable here: {e}")),
    }
}

/// Prints a clear skip line and returns true when the test cannot run on this host.
pub fn skip_without_kvm(test: &str) -> bool {
    match kvm_unavailable() {
        Some(reason) => {
            eprintln!("SKIP {test}: {reason}");
            true
        }
        None => false,
    }
}

/// A scratch directory unique to this test process and name, removed by the caller.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

// ---- Helpers for the virtio end-to-end tests (tests/virtio_*.rs) ----

/// A VM still running: its stdout arrives line by line, so a host-side test can act while
/// the guest waits (connect a socket, inject a frame, sample the VMM's RSS).
pub struct LiveVm {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stdout: Vec<String>,
    err_reader: Option<std::thread::JoinHandle<Vec<u8>>>,
    out_reader: Option<std::thread::JoinHandle<()>>,
    args: Vec<String>,
    started: Instant,
}

/// Starts the test guest with the given extra vmm args and guest command line tokens,
/// stdin closed.
pub fn spawn_guest(vmm_args: &[&str], guest_cmdline: &str) -> LiveVm {
    let cmdline = format!("console=ttyS0 {guest_cmdline}");
    let mut args: Vec<String> = vec![
        "--kernel".into(),
        TEST_GUEST.into(),
        "--cmdline".into(),
        cmdline,
    ];
    args.extend(vmm_args.iter().map(|s| s.to_string()));
    spawn_vmm(args)
}

/// Starts `vmm ARGS` (e.g. `--config-file`), stdin closed.
pub fn spawn_vmm(args: Vec<String>) -> LiveVm {
    let started = Instant::now();
    let mut child = Command::new(VMM)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmm");
    let out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel();
    let out_reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    LiveVm {
        child,
        lines,
        stdout: Vec::new(),
        err_reader: Some(err_reader),
        out_reader: Some(out_reader),
        args,
        started,
    }
}

impl LiveVm {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the guest prints a line equal to `line` (after any `\r`), up to
    /// `timeout`; true when it came. Lines before it are kept for the final `Run`.
    pub fn wait_for_line(&mut self, line: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l == line;
                    self.stdout.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Everything printed so far (for failure messages).
    pub fn output_so_far(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.stdout.push(l);
        }
        self.stdout.join("\n")
    }

    /// Waits for the VM to end, killing it after `timeout` (which fails the test).
    pub fn finish(mut self, timeout: Duration) -> Run {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if self.started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stdout = self.output_so_far();
                panic!(
                    "vmm {:?} overran its {timeout:?} limit and was killed\n--- stdout ---\n{stdout}",
                    self.args
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(h) = self.out_reader.take() {
            let _ = h.join();
        }
        let stderr = self
            .err_reader
            .take()
            .map(|h| String::from_utf8_lossy(&h.join().unwrap()).into_owned())
            .unwrap_or_default();
        let stdout = self.output_so_far();
        Run {
            status,
            stdout: stdout + "\n",
            stderr,
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for LiveVm {
    fn drop(&mut self) {
        // A test that panicked midway must not leave its VM running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// 32-bit FNV-1a, as the test guest computes it.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Resident set size of process `pid` in KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// What [`run_vmm_watching_memory`] saw.
#[derive(Debug)]
pub struct Watched {
    /// The exit status, when vmm ended by itself within the time given.
    pub status: Option<ExitStatus>,
    /// The most memory vmm held (the larger of VmHWM and the sampled VmRSS), in KiB.
    pub peak_kib: u64,
    pub stderr: String,
}

/// A field of /proc/PID/status in KiB ("VmRSS", "VmHWM").
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `vmm ARGS` with `stdin` for up to `run_for`, watching its memory: it is killed at
/// once when VmRSS passes `limit_kib`, so a VMM that buffers without bound fails the test
/// quickly instead of exhausting the host. A VMM still running after `run_for` is killed
/// too (`status` is then `None`).
pub fn run_vmm_watching_memory(
    args: &[&str],
    stdin: Stdio,
    run_for: Duration,
    limit_kib: u64,
) -> Watched {
    let started = Instant::now();
    let mut child = Command::new(VMM)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vmm");
    let mut err = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let pid = child.id();
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        let rss = status_kib(pid, "VmRSS").unwrap_or(0);
        let hwm = status_kib(pid, "VmHWM").unwrap_or(0);
        peak_kib = peak_kib.max(rss).max(hwm);
        if peak_kib > limit_kib || started.elapsed() > run_for {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Watched {
        status,
        peak_kib,
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned(),
    }
}

/// Each thread of `pid` as (name, seccomp mode from its status), once every name of
/// `expected` is there (a thread names itself after it starts, so a worker the guest just
/// activated may still carry its parent's name for a moment); as it is after 5 s.
pub fn thread_seccomp_modes(pid: u32, expected: &[&str]) -> Vec<(String, u32)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut threads = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("read the tasks") {
            let dir = entry.expect("a task").path();
            let (Ok(name), Ok(status)) = (
                std::fs::read_to_string(dir.join("comm")),
                std::fs::read_to_string(dir.join("status")),
            ) else {
                continue; // it ended meanwhile
            };
            let mode = status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))
                .and_then(|m| m.trim().parse().ok())
                .expect("a Seccomp line");
            threads.push((name.trim().to_owned(), mode));
        }
        threads.sort();
        let all_there = expected.iter().all(|e| threads.iter().any(|(n, _)| n == e));
        if all_there || Instant::now() > deadline {
            return threads;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
