//! Helpers shared by the container integration tests: the busybox rootfs (built once into
//! the target's temp dir by resources/container-rootfs.sh), running `vmm container run`
//! (and `delete`) under a private state root, and finding the container's cgroup
//! directories on the host.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const VMM: &str = env!("CARGO_BIN_EXE_vmm");

/// The shared read-only test rootfs, or why there is none.
fn shared_rootfs() -> &'static Result<PathBuf, String> {
    static ROOTFS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("container-rootfs");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/resources/container-rootfs.sh");
        let out = Command::new("sh")
            .arg(script)
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if out.status.success() {
            Ok(dir)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    })
}

/// The rootfs when the test can run (root, busybox); otherwise prints `SKIP` and gives None.
pub fn rootfs_or_skip(test: &str) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP {test}: needs root");
        return None;
    }
    match shared_rootfs() {
        Ok(dir) => Some(dir.clone()),
        Err(why) => {
            println!("SKIP {test}: no busybox rootfs ({why})");
            None
        }
    }
}

/// A fresh private copy of the rootfs for tests that write to it; removed on drop.
pub struct OwnRootfs(pub PathBuf);

impl OwnRootfs {
    pub fn new(shared: &Path, name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("rootfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(shared)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(ok.success(), "copy the rootfs");
        Self(dir)
    }
}

impl Drop for OwnRootfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tests' state root for `vmm container run` (`--state-root`), where each run holds
/// its name: private to the test target, not the host's /run/vmm/containers.
pub fn state_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("container-state")
}

/// `vmm container delete NAME` under the tests' state root, output captured.
pub fn delete(name: &str) -> Output {
    Command::new(VMM)
        .args(["container", "delete", "--state-root"])
        .arg(state_root())
        .arg(name)
        .stdin(Stdio::null())
        .output()
        .expect("run vmm")
}

/// A container name unique to this test process.
pub fn unique(test: &str) -> String {
    format!("t-{test}-{}", std::process::id())
}

/// `vmm container run --rootfs ROOTFS --name NAME OPTIONS -- CMD...`, output captured.
pub fn run(rootfs: &Path, name: &str, options: &[&str], cmd: &[&str]) -> Output {
    command(rootfs, name, options, cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run vmm")
}

pub fn command(rootfs: &Path, name: &str, options: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(VMM);
    c.args(["container", "run", "--rootfs"])
        .arg(rootfs)
        .arg("--state-root")
        .arg(state_root())
        .args(["--name", name])
        .args(options)
        .arg("--")
        .args(cmd);
    c
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run a shell script in a container and return its stdout, asserting success.
pub fn sh(rootfs: &Path, name: &str, options: &[&str], script: &str) -> String {
    let out = run(rootfs, name, options, &["sh", "-c", script]);
    assert!(
        out.status.success(),
        "container failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Where the container `name` has cgroup directories on this host (existing ones only).
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut candidates = vec![Path::new("/sys/fs/cgroup/vmm").join(name)];
    for controller in ["devices", "memory", "pids", "cpu"] {
        let group = own.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, list, path) = (p.next()?, p.next()?, p.next()?);
            list.split(',')
                .any(|c| c == controller)
                .then_some(path.to_owned())
        });
        if let Some(group) = group {
            candidates.push(
                Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(group.trim_start_matches('/'))
                    .join(name),
            );
        }
    }
    candidates.into_iter().filter(|p| p.is_dir()).collect()
}

/// The v1 directory of `controller` for container `name`, if it exists.
pub fn v1_dir(controller: &str, name: &str) -> Option<PathBuf> {
    cgroup_dirs(name)
        .into_iter()
        .find(|p| p.starts_with(Path::new("/sys/fs/cgroup").join(controller)))
}

/// Mount points on the host that lie under `dir`.
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy().into_owned();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}
