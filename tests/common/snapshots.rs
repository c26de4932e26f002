//! Snapshot helpers for tests/snapshot*.rs: a VMM snapshotted mid-run through the
//! `VMM_TEST_SNAPSHOT` seam (debug builds), and restores of it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{run_vmm, Run, TEST_GUEST, VMM};

/// Guest RAM for these VMs: small, so the memory files are too.
pub const MEM_MIB: &str = "16";
/// When the seam snapshots the guest: mid-run (memcount runs ~500 ms: 20 steps of 25 ms).
pub const SNAPSHOT_AFTER_MS: u32 = 150;

pub fn guest_args(extra: &[&str], tests: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--kernel",
        TEST_GUEST,
        "--mem",
        MEM_MIB,
        "--cmdline",
        &format!("console=ttyS0 tests={tests}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A memcount run's output without its VM generation ID facts, which differ by design
/// between a run and its restore (each VM has an ID of its own).
pub fn without_generation_facts(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.starts_with("vmmtest: fact vmgenid"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Checks what memcount saw of the VM generation ID: set at boot, and `changes` changes,
/// each announced by one event.
pub fn assert_generation_changes(run: &Run, changes: u32) {
    assert_eq!(run.fact("vmgenid_set"), Some("1"), "{}", run.describe());
    assert_eq!(
        run.fact("vmgenid_changed"),
        Some(if changes > 0 { "1" } else { "0" }),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("vmgenid_events"),
        Some(changes.to_string().as_str()),
        "{}",
        run.describe()
    );
}

/// What a VMM printed until it was snapshotted and killed.
pub struct Snapshotted {
    pub stdout: String,
    pub stderr: String,
    pub state: PathBuf,
    pub mem: PathBuf,
}

/// Runs `vmm ARGS` with the snapshot seam writing `DIR/state` and `DIR/mem` (AFTER: `stay`
/// or `resume`); once the state file is there (it is renamed into place last), kills the
/// VMM with SIGKILL when it stays paused, or lets it finish when it resumes.
pub fn snapshot_run(dir: &Path, args: &[String], after: &str) -> (Snapshotted, Option<i32>) {
    let (state, mem) = (dir.join("state"), dir.join("mem"));
    let seam = format!(
        "{},{},{SNAPSHOT_AFTER_MS},{after}",
        state.display(),
        mem.display()
    );
    let mut child = Command::new(VMM)
        .args(args)
        .env("VMM_TEST_SNAPSHOT", seam)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let readers = [
        read_all(child.stdout.take().unwrap()),
        read_all(child.stderr.take().unwrap()),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state.exists() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let code = if after == "stay" {
        let _ = child.kill();
        child.wait().unwrap().code()
    } else {
        wait_with_deadline(&mut child, deadline)
    };
    let [stdout, stderr] = readers.map(|r| r.join().unwrap());
    assert!(
        state.exists(),
        "no snapshot was written\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    (
        Snapshotted {
            stdout,
            stderr,
            state,
            mem,
        },
        code,
    )
}

pub fn wait_with_deadline(child: &mut std::process::Child, deadline: Instant) -> Option<i32> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vmm overran its time limit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child's stdout or stderr, read whole (byte-exact) on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

pub fn restore(snapshot: &Snapshotted) -> Run {
    run_vmm(&[
        "--restore",
        snapshot.state.to_str().unwrap(),
        "--mem-file",
        snapshot.mem.to_str().unwrap(),
    ])
}
