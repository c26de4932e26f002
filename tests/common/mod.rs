//! Shared helpers for integration tests that run the real `vmm` binary.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
