//! What tests/vmm_runc.rs drives `vmm-runc` with: an OCI bundle over the shared busybox
//! rootfs with its own state root and container ID, and the bits of process plumbing a
//! caller of an OCI runtime needs (a subreaper, reaping, pipes).

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::container_support::unique;

pub const VMM_RUNC: &str = env!("CARGO_BIN_EXE_vmm-runc");

/// A bundle over the shared rootfs, its own --root, and the container ID; removes what is
/// left (the container included) when dropped.
pub struct Bundle {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub id: String,
}

impl Bundle {
    /// `process_args` is the workload; `tweak` edits the config.json before it is written.
    pub fn new(
        test: &str,
        rootfs: &Path,
        process_args: &[&str],
        tweak: impl FnOnce(&mut serde_json::Value),
    ) -> Self {
        let id = unique(test);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bundle-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0 },
                "args": process_args,
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                },
                "noNewPrivileges": true
            },
            "root": { "path": rootfs, "readonly": true },
            "hostname": "runc-test",
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
                { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
                { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" }
            ],
            "linux": {
                "cgroupsPath": format!("/vmm-runc-test/{id}"),
                "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
                "namespaces": [
                    { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                    { "type": "uts" }, { "type": "mount" }
                ],
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"]
            }
        });
        tweak(&mut config);
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let root = dir.join("state");
        Self { dir, root, id }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(VMM_RUNC);
        c.arg("--root").arg(&self.root).args(args);
        c.current_dir(&self.dir);
        c
    }

    /// Runs `vmm-runc --root ROOT ARGS...` with no stdin, failed after 30 s. Its output
    /// goes to files, not pipes: a created container keeps the runtime's stdout and
    /// stderr (they are its stdio), so a pipe would not end when the runtime does.
    pub fn runc(&self, args: &[&str]) -> Output {
        self.runc_with_stdin(args, Stdio::null())
    }

    pub fn runc_with_stdin(&self, args: &[&str], stdin: Stdio) -> Output {
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out_path = self.dir.join(format!("out-{n}"));
        let err_path = self.dir.join(format!("err-{n}"));
        let mut child = self
            .command(args)
            .stdin(stdin)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("vmm-runc {args:?} hung");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap(),
            stderr: std::fs::read(&err_path).unwrap(),
        }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.runc(args);
        assert!(
            out.status.success(),
            "vmm-runc {args:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn create(&self) {
        self.ok(&["create", "--bundle", self.dir.to_str().unwrap(), &self.id]);
    }

    pub fn status(&self) -> String {
        let state: serde_json::Value =
            serde_json::from_str(&self.ok(&["state", &self.id])).unwrap();
        state["status"].as_str().unwrap().to_owned()
    }

    pub fn pid(&self) -> i32 {
        let state: serde_json::Value =
            serde_json::from_str(&self.ok(&["state", &self.id])).unwrap();
        state["pid"].as_i64().unwrap() as i32
    }

    /// Waits (bounded) until `state` says `want`.
    pub fn wait_status(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.status() != want {
            assert!(Instant::now() < deadline, "never {want}: {}", self.status());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|h| h.path().join("vmm-runc-test").join(&self.id))
            .filter(|d| d.exists())
            .collect()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "--force", &self.id]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reaps `pid` if it is our child (vmm-runc's container processes are reparented to the
/// nearest subreaper; the test makes itself one so they come to it, as to conmon).
pub fn become_subreaper() {
    // SAFETY: integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

pub fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: a valid int to fill; a pid that is not our child gives -1.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    (r == pid).then(|| libc::WEXITSTATUS(status))
}

pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 made both; nothing else owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}
