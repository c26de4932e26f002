//! What the tests of `vmm-runc` under the real clients (tests/oci_clients.rs) share:
//! running a client under a time limit, tracing what a container leaves behind, and the
//! busybox image; Podman's side in `podman.rs`, containerd's in `containerd.rs`.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub mod containerd;
pub mod podman;

pub const VMM_RUNC: &str = env!("CARGO_BIN_EXE_vmm-runc");
/// Seconds any client command may take before it is killed and the test fails.
pub const CLIENT_TIMEOUT_SECS: u32 = 120;
/// How long cleanup that ends just after the client returns (conmon's exit command,
/// containerd's cleanup shim) may take before what is still there counts as left behind.
pub const CLEANUP_GRACE: Duration = Duration::from_secs(10);
/// The runtime's state root when the client passes no `--root` (Podman passes none).
pub const VMM_RUNC_DEFAULT_ROOT: &str = "/run/vmm-runc";
/// Where containerd's runc shim keeps the runtime's state: `--root <this>/<namespace>`.
pub const CONTAINERD_RUNC_ROOT: &str = "/run/containerd/runc";

/// The workload of the detached containers: PID 1 stays `sh` (a loop cannot be exec'd
/// away), so its command line keeps the marker passed as `$0`.
pub const SLEEPER: &str = "while :; do sleep 1; done";
/// What vmm-runc says when the command is not in the rootfs.
pub const MISSING_COMMAND_MESSAGE: &str =
    "command \"/no/such\" not found in the container's rootfs";

/// A name unique to this test process and `tag` (one per test), for a container's name or
/// ID and for the marker put in its workload's command line (see [`sh`]).
pub fn unique(tag: &str) -> String {
    format!("vmm-runc-test-{}-{tag}", std::process::id())
}

/// The workload `sh -c SCRIPT MARKER`: the marker is the script's `$0`, there only to
/// be found in the command line.
pub fn sh<'a>(script: &'a str, marker: &'a str) -> [&'a str; 4] {
    ["sh", "-c", script, marker]
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

pub fn installed(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// This test binary's files: the layer and image archive, Podman's config, cid files.
pub fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oci-clients");
    std::fs::create_dir_all(&dir).expect("create the test's work directory");
    dir
}

/// Makes `path` with `make` (given a temporary path beside it), then renames it into
/// place: test binaries running at once never see half a file.
pub fn make_atomically(
    path: &Path,
    make: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    make(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename {tmp:?} to {path:?}: {e}"))
}

/// A client command line's result.
pub struct Ran {
    pub command: String,
    /// The exit code, or 128 + the signal that ended the client.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "{self}");
        self
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// A client's command line: the program, the options every call of this test gives it,
/// and its environment.
pub struct Client {
    pub program: &'static str,
    pub options: Vec<String>,
    pub env: Vec<(&'static str, String)>,
}

impl Client {
    /// Runs `program options args`, stdin empty, output captured.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Ran {
        self.timed(&self.argv(args))
    }

    /// As [`Client::run`] but in a terminal of its own (`script`), as `-t` needs; the
    /// terminal's output comes back as stdout.
    pub fn run_in_terminal<S: AsRef<str>>(&self, args: &[S]) -> Ran {
        let line: Vec<String> = self.argv(args).iter().map(|a| shell_quote(a)).collect();
        self.timed(&strings(&["script", "-qec", &line.join(" "), "/dev/null"]))
    }

    pub fn argv<S: AsRef<str>>(&self, args: &[S]) -> Vec<String> {
        let mut argv = vec![self.program.to_owned()];
        argv.extend(self.options.iter().cloned());
        argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        argv
    }

    pub fn timed(&self, argv: &[String]) -> Ran {
        let started = Instant::now();
        let out = Command::new("timeout")
            .args(["-k", "10", &CLIENT_TIMEOUT_SECS.to_string()])
            .args(argv)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run timeout(1)");
        let ran = Ran {
            command: argv.join(" "),
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            started.elapsed() < Duration::from_secs(CLIENT_TIMEOUT_SECS.into()),
            "timed out after {CLIENT_TIMEOUT_SECS} s: {ran}"
        );
        ran
    }
}

pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Where a container could leave something on the host.
pub struct Traces {
    /// Its directory in the runtime's state root.
    pub state: PathBuf,
    /// Its cgroup, relative to the root of every hierarchy under /sys/fs/cgroup.
    pub cgroup: PathBuf,
    /// Strings only its own processes and mount points contain (its ID, its marker).
    pub needles: Vec<String>,
}

impl Traces {
    /// What is still there, one line each.
    pub fn left(&self) -> Vec<String> {
        let mut left = Vec::new();
        if self.state.exists() {
            left.push(format!("runtime state {:?}", self.state));
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = hierarchy.path().join(&self.cgroup);
            if dir.is_dir() {
                left.push(format!("cgroup {dir:?}"));
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mount_point in mountinfo.lines().filter_map(|l| l.split(' ').nth(4)) {
            if self
                .needles
                .iter()
                .any(|n| mount_point.contains(n.as_str()))
            {
                left.push(format!("mount {mount_point}"));
            }
        }
        left.extend(
            processes_with(&self.needles)
                .into_iter()
                .map(|(pid, cmdline)| format!("process {pid}: {cmdline}")),
        );
        left
    }

    /// Asserts that nothing is left (and that the client no longer lists the container:
    /// `listed`), once cleanup finishing after the client returned has had its time.
    pub fn assert_nothing_left(&self, listed: impl Fn() -> bool) {
        let deadline = Instant::now() + CLEANUP_GRACE;
        loop {
            let mut left = self.left();
            if listed() {
                left.push("the client still lists the container".to_owned());
            }
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind:\n{}",
                left.join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The processes (pid, command line) whose command line contains one of `needles`.
pub fn processes_with(needles: &[String]) -> Vec<(i32, String)> {
    let own = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != own)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            needles
                .iter()
                .any(|n| cmdline.contains(n.as_str()))
                .then_some((pid, cmdline))
        })
        .collect()
}

/// The busybox rootfs as one uncompressed layer tar and its sha256 (hex), made once per
/// test binary. Deterministic (sorted, owned by root, mtime 0): the same rootfs gives the
/// same digest, which names the Podman image.
pub fn busybox_layer(rootfs: &Path) -> &'static Result<(PathBuf, String), String> {
    static LAYER: OnceLock<Result<(PathBuf, String), String>> = OnceLock::new();
    LAYER.get_or_init(|| {
        let path = work_dir().join("busybox-layer.tar");
        make_atomically(&path, |tmp| {
            let out = Command::new("tar")
                .args([
                    "--sort=name",
                    "--mtime=@0",
                    "--owner=0",
                    "--group=0",
                    "--numeric-owner",
                ])
                .arg("-C")
                .arg(rootfs)
                .arg("-cf")
                .arg(tmp)
                .arg(".")
                .output()
                .map_err(|e| format!("run tar: {e}"))?;
            out.status
                .success()
                .then_some(())
                .ok_or_else(|| format!("tar failed: {}", String::from_utf8_lossy(&out.stderr)))
        })?;
        let bytes = std::fs::read(&path).map_err(|e| format!("read {path:?}: {e}"))?;
        Ok((path, format!("{:x}", Sha256::digest(&bytes))))
    })
}
