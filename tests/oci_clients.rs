//! `vmm-runc` under the real clients, driven as users drive them: Podman
//! (`podman --runtime vmm-runc run|exec|stop|rm`, through conmon) and containerd
//! (`ctr run --runc-binary vmm-runc`, through containerd-shim-runc-v2). Each client calls
//! the runtime in its own order, with its own flags, stdio and error channel (conmon reads
//! the JSON log or stderr, the shim only the `--log` file), which no unit test imitates
//! faithfully. Each test asserts the workload's output, the exit status the user sees, and
//! that once the container is removed nothing of it is left on the host: no runtime
//! state, cgroup, mount or process.
//!
//! Everything is made offline: the busybox rootfs (resources/container-rootfs.sh) becomes
//! one uncompressed layer tar, which `podman import` takes as is and which is wrapped
//! here into an OCI image archive for `ctr image import`. Podman gets its own
//! containers.conf through CONTAINERS_CONF (which replaces /etc/containers/containers.conf)
//! with `vmm-runc` registered by name, so that conmon passes it `--log-format=json --log`
//! as it does runc. Each containerd test starts a private daemon (its own root, state and
//! socket under a temporary directory, its own namespace), so no system daemon is touched.
//!
//! Tests skip (printing `SKIP`) when not root or when their client is not installed
//! (Debian: `apt-get install podman containerd`). Every client command runs under
//! `timeout`, so a hang fails the test instead of hanging the run.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod container_support;

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const VMM_RUNC: &str = env!("CARGO_BIN_EXE_vmm-runc");
/// Seconds any client command may take before it is killed and the test fails.
const CLIENT_TIMEOUT_SECS: u32 = 120;
/// How long cleanup that ends just after the client returns (conmon's exit command,
/// containerd's cleanup shim) may take before what is still there counts as left behind.
const CLEANUP_GRACE: Duration = Duration::from_secs(10);
/// The runtime's state root when the client passes no `--root` (Podman passes none).
const VMM_RUNC_DEFAULT_ROOT: &str = "/run/vmm-runc";
/// Where containerd's runc shim keeps the runtime's state: `--root <this>/<namespace>`.
const CONTAINERD_RUNC_ROOT: &str = "/run/containerd/runc";

// ---- Podman ----

#[test]
fn podman_run_prints_output_and_passes_the_exit_status() {
    let Some(podman) = podman_or_skip("podman_run_prints_output_and_passes_the_exit_status") else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-run");
    let ran = c.run(&["--rm"], "echo hi; exit 3");
    assert_eq!((ran.code, ran.stdout.as_str()), (3, "hi\n"), "{ran}");
    c.assert_nothing_left();
}

#[test]
fn podman_run_with_a_terminal() {
    let Some(podman) = podman_or_skip("podman_run_with_a_terminal") else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-tty");
    let ran = podman
        .client
        .run_in_terminal(&c.run_args(&["--rm", "-t"], &sh("tty; exit 4", &c.name)));
    assert_eq!(ran.code, 4, "{ran}");
    assert!(
        ran.stdout.contains("/dev/pts/"),
        "stdin is not a terminal: {ran}"
    );
    c.assert_nothing_left();
}

#[test]
fn podman_exec_runs_in_the_container_and_passes_its_status() {
    let Some(podman) = podman_or_skip("podman_exec_runs_in_the_container_and_passes_its_status")
    else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-exec");
    c.run(&["-d"], SLEEPER).expect(0);
    let hostname = c.inspect("{{.Config.Hostname}}");

    let script = "cat /proc/1/cmdline; echo; hostname; exit 5";
    let ran = podman
        .client
        .run(&["exec", &c.name, "sh", "-c", script, &c.name]);
    assert_eq!(ran.code, 5, "{ran}");
    let mut lines = ran.stdout.lines();
    let pid1 = lines.next().unwrap_or_default().replace('\0', " ");
    assert!(
        pid1.contains(SLEEPER) && pid1.contains(&c.name),
        "PID 1 seen by the exec is not the workload: {ran}"
    );
    assert_eq!(lines.next(), Some(hostname.as_str()), "{ran}");

    podman
        .client
        .run(&["rm", "-f", "-t", "0", &c.name])
        .expect(0);
    c.assert_nothing_left();
}

#[test]
fn podman_stop_and_rm_leave_nothing() {
    let Some(podman) = podman_or_skip("podman_stop_and_rm_leave_nothing") else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-stop");
    // PID 1 without a handler ignores SIGTERM: the stop ends with SIGKILL after 2 s.
    c.run(&["-d"], SLEEPER).expect(0);
    assert_eq!(c.inspect("{{.State.Status}}"), "running");

    podman.client.run(&["stop", "-t", "2", &c.name]).expect(0);
    assert_eq!(
        c.inspect("{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    podman.client.run(&["rm", "-f", &c.name]).expect(0);
    c.assert_nothing_left();
}

#[test]
fn podman_rm_force_of_a_running_container_leaves_nothing() {
    let Some(podman) = podman_or_skip("podman_rm_force_of_a_running_container_leaves_nothing")
    else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-rm");
    // This one ends on SIGTERM, so `rm -f` needs no SIGKILL.
    c.run(&["-d"], &format!("trap 'exit 0' TERM; {SLEEPER}"))
        .expect(0);
    assert_eq!(c.inspect("{{.State.Status}}"), "running");

    podman.client.run(&["rm", "-f", &c.name]).expect(0);
    c.assert_nothing_left();
}

#[test]
fn podman_run_reports_a_missing_command() {
    let Some(podman) = podman_or_skip("podman_run_reports_a_missing_command") else {
        return;
    };
    let c = PodmanContainer::new(podman, "podman-nocmd");
    let ran = podman.client.run(&c.run_args(&["--rm"], &["/no/such"]));
    // 127 is Podman's "command not found", chosen from the runtime's message.
    assert_eq!(ran.code, 127, "{ran}");
    assert!(ran.stderr.contains(MISSING_COMMAND_MESSAGE), "{ran}");
    c.assert_nothing_left();
}

// ---- containerd ----

#[test]
fn ctr_run_prints_output_and_passes_the_exit_status() {
    let Some(containerd) = containerd_or_skip("ctr_run_prints_output_and_passes_the_exit_status")
    else {
        return;
    };
    let id = unique("ctr-run");
    let ran = containerd
        .ctr
        .run(&ctr_run_args(&[], &id, &sh("echo hi; exit 3", &id)));
    assert_eq!((ran.code, ran.stdout.as_str()), (3, "hi\n"), "{ran}");
    containerd.assert_nothing_left(&id);
}

#[test]
fn ctr_run_with_a_terminal() {
    let Some(containerd) = containerd_or_skip("ctr_run_with_a_terminal") else {
        return;
    };
    let id = unique("ctr-tty");
    let ran = containerd
        .ctr
        .run_in_terminal(&ctr_run_args(&["-t"], &id, &sh("tty; exit 4", &id)));
    assert_eq!(ran.code, 4, "{ran}");
    assert!(
        ran.stdout.contains("/dev/pts/"),
        "stdin is not a terminal: {ran}"
    );
    containerd.assert_nothing_left(&id);
}

#[test]
fn ctr_failure_message_comes_from_the_json_log() {
    let Some(containerd) = containerd_or_skip("ctr_failure_message_comes_from_the_json_log") else {
        return;
    };
    let id = unique("ctr-nocmd");
    // The shim ignores the runtime's stderr: the message can only come from `--log`.
    let ran = containerd.ctr.run(&ctr_run_args(&[], &id, &["/no/such"]));
    assert_ne!(ran.code, 0, "{ran}");
    assert!(
        ran.stderr.contains(&format!(
            "OCI runtime create failed: {MISSING_COMMAND_MESSAGE}"
        )),
        "{ran}"
    );
    containerd.assert_nothing_left(&id);
}

// ---- What the tests share ----

/// The workload of the detached containers: PID 1 stays `sh` (a loop cannot be exec'd
/// away), so its command line keeps the marker passed as `$0`.
const SLEEPER: &str = "while :; do sleep 1; done";
/// What vmm-runc says when the command is not in the rootfs.
const MISSING_COMMAND_MESSAGE: &str = "command \"/no/such\" not found in the container's rootfs";

/// A name unique to this test process and `tag` (one per test), for a container's name or
/// ID and for the marker put in its workload's command line (see [`sh`]).
fn unique(tag: &str) -> String {
    format!("vmm-runc-test-{}-{tag}", std::process::id())
}

/// The workload `sh -c SCRIPT MARKER`: the marker is the script's `$0`, there only to
/// be found in the command line.
fn sh<'a>(script: &'a str, marker: &'a str) -> [&'a str; 4] {
    ["sh", "-c", script, marker]
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

fn installed(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// This test binary's files: the layer and image archive, Podman's config, cid files.
fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oci-clients");
    std::fs::create_dir_all(&dir).expect("create the test's work directory");
    dir
}

/// Makes `path` with `make` (given a temporary path beside it), then renames it into
/// place: test binaries running at once never see half a file.
fn make_atomically(
    path: &Path,
    make: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    make(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename {tmp:?} to {path:?}: {e}"))
}

/// A client command line's result.
struct Ran {
    command: String,
    /// The exit code, or 128 + the signal that ended the client.
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn expect(&self, code: i32) -> &Self {
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
struct Client {
    program: &'static str,
    options: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Client {
    /// Runs `program options args`, stdin empty, output captured.
    fn run<S: AsRef<str>>(&self, args: &[S]) -> Ran {
        self.timed(&self.argv(args))
    }

    /// As [`Client::run`] but in a terminal of its own (`script`), as `-t` needs; the
    /// terminal's output comes back as stdout.
    fn run_in_terminal<S: AsRef<str>>(&self, args: &[S]) -> Ran {
        let line: Vec<String> = self.argv(args).iter().map(|a| shell_quote(a)).collect();
        self.timed(&strings(&["script", "-qec", &line.join(" "), "/dev/null"]))
    }

    fn argv<S: AsRef<str>>(&self, args: &[S]) -> Vec<String> {
        let mut argv = vec![self.program.to_owned()];
        argv.extend(self.options.iter().cloned());
        argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        argv
    }

    fn timed(&self, argv: &[String]) -> Ran {
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

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Where a container could leave something on the host.
struct Traces {
    /// Its directory in the runtime's state root.
    state: PathBuf,
    /// Its cgroup, relative to the root of every hierarchy under /sys/fs/cgroup.
    cgroup: PathBuf,
    /// Strings only its own processes and mount points contain (its ID, its marker).
    needles: Vec<String>,
}

impl Traces {
    /// What is still there, one line each.
    fn left(&self) -> Vec<String> {
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
    fn assert_nothing_left(&self, listed: impl Fn() -> bool) {
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
fn processes_with(needles: &[String]) -> Vec<(i32, String)> {
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
fn busybox_layer(rootfs: &Path) -> &'static Result<(PathBuf, String), String> {
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

// ---- Podman's side ----

/// Podman set up for these tests: its config and the busybox image.
struct Podman {
    client: Client,
    image: String,
}

/// Podman when the test can run (root, podman, busybox); otherwise prints `SKIP` and gives
/// None. Setting Podman up (config, image import) happens once per test binary.
fn podman_or_skip(test: &str) -> Option<&'static Podman> {
    let rootfs = container_support::rootfs_or_skip(test)?;
    if !installed("podman") {
        println!("SKIP {test}: podman is not installed (apt-get install podman)");
        return None;
    }
    static PODMAN: OnceLock<Result<Podman, String>> = OnceLock::new();
    match PODMAN.get_or_init(|| Podman::set_up(&rootfs)) {
        Ok(podman) => Some(podman),
        Err(why) => panic!("setting Podman up failed: {why}"),
    }
}

impl Podman {
    fn set_up(rootfs: &Path) -> Result<Self, String> {
        // One per build profile: it names that build's vmm-runc, and Podman's cleanup
        // process reads it again after the client has returned.
        let profile = Path::new(VMM_RUNC).parent().and_then(Path::file_name);
        let profile = profile.map_or("any".into(), |p| p.to_string_lossy());
        let conf = work_dir().join(format!("containers-{profile}.conf"));
        make_atomically(&conf, |tmp| {
            std::fs::write(tmp, containers_conf()).map_err(|e| format!("write {tmp:?}: {e}"))
        })?;
        let (layer, digest) = busybox_layer(rootfs).as_ref().map_err(Clone::clone)?;
        let podman = Podman {
            client: Client {
                program: "podman",
                options: strings(&["--runtime", "vmm-runc"]),
                env: vec![("CONTAINERS_CONF", conf.to_string_lossy().into_owned())],
            },
            // Named by the layer's digest: imported once, and reused while it is the same.
            image: format!("localhost/vmm-runc-test:busybox-{}", &digest[..12]),
        };
        if podman.client.run(&["image", "exists", &podman.image]).code != 0 {
            let layer = layer.to_string_lossy();
            let ran = podman.client.run(&["import", &layer, &podman.image]);
            if ran.code != 0 {
                return Err(ran.to_string());
            }
        }
        Ok(podman)
    }
}

/// Podman's config for the tests, in place of /etc/containers/containers.conf.
fn containers_conf() -> String {
    // As root, Podman asks for nofile and nproc limits of 1048576, which a host without
    // CAP_SYS_RESOURCE cannot grant; it also lowers its own nproc to 32768.
    let nofile = hard_limit(libc::RLIMIT_NOFILE);
    let nproc = hard_limit(libc::RLIMIT_NPROC).min(32768);
    format!(
        r#"[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]

[engine]
# vmm-runc manages its cgroups itself, through cgroupfs; no systemd needed for events.
cgroup_manager = "cgroupfs"
events_logger = "file"
# Registered by name: conmon passes runtimes it knows to speak JSON `--log-format=json
# --log FILE` and reports the error from that log.
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "vmm-runc"]

[engine.runtimes]
vmm-runc = ["{VMM_RUNC}"]
"#
    )
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given, which outlives the call.
    let rc = unsafe { libc::getrlimit(resource, &mut limit) };
    assert_eq!(rc, 0, "getrlimit");
    limit.rlim_max
}

/// One test's Podman container: its name (also its workload's marker) and the file
/// Podman writes its ID to. Dropping it removes it by force, so that a failing test does
/// not leave it running either.
struct PodmanContainer<'a> {
    podman: &'a Podman,
    name: String,
    cidfile: PathBuf,
}

impl<'a> PodmanContainer<'a> {
    fn new(podman: &'a Podman, tag: &str) -> Self {
        let name = unique(tag);
        let cidfile = work_dir().join(format!("{name}.cid"));
        let _ = std::fs::remove_file(&cidfile);
        Self {
            podman,
            name,
            cidfile,
        }
    }

    /// `podman run --name NAME --cidfile FILE [options] IMAGE command...`.
    fn run_args(&self, options: &[&str], command: &[&str]) -> Vec<String> {
        let cidfile = self.cidfile.to_string_lossy();
        let mut args = strings(&["run", "--name", &self.name, "--cidfile", &cidfile]);
        args.extend(strings(options));
        args.push(self.podman.image.clone());
        args.extend(strings(command));
        args
    }

    /// `podman run` of `script`, marked with the container's name.
    fn run(&self, options: &[&str], script: &str) -> Ran {
        self.podman
            .client
            .run(&self.run_args(options, &sh(script, &self.name)))
    }

    /// `podman inspect --format FORMAT`, trimmed.
    fn inspect(&self, format: &str) -> String {
        let ran = self
            .podman
            .client
            .run(&["inspect", "--format", format, &self.name]);
        ran.expect(0).stdout.trim().to_owned()
    }

    /// The container's full ID, once Podman has written it.
    fn id(&self) -> Option<String> {
        let id = std::fs::read_to_string(&self.cidfile).ok()?;
        Some(id.trim().to_owned()).filter(|id| !id.is_empty())
    }

    fn assert_nothing_left(&self) {
        let id = self.id().expect("podman wrote no container ID");
        let traces = Traces {
            state: Path::new(VMM_RUNC_DEFAULT_ROOT).join(&id),
            cgroup: Path::new("libpod_parent").join(format!("libpod-{id}")),
            needles: vec![id, self.name.clone()],
        };
        traces.assert_nothing_left(|| {
            let exists = ["container", "exists", &self.name];
            self.podman.client.run(&exists).code == 0
        });
    }
}

impl Drop for PodmanContainer<'_> {
    fn drop(&mut self) {
        let rm = ["rm", "--force", "--ignore", "--time", "0", &self.name];
        self.podman.client.run(&rm);
        let _ = std::fs::remove_file(&self.cidfile);
    }
}

// ---- containerd's side ----

/// `ctr run --rm --runc-binary vmm-runc [options] IMAGE ID command...`.
fn ctr_run_args(options: &[&str], id: &str, command: &[&str]) -> Vec<String> {
    let mut args = strings(&["run", "--rm", "--runc-binary", VMM_RUNC]);
    args.extend(strings(options));
    args.extend(strings(&[CTR_IMAGE, id]));
    args.extend(strings(command));
    args
}

/// The busybox image's reference in containerd.
const CTR_IMAGE: &str = "localhost/vmm-runc-test:busybox";

/// A containerd daemon of one test: its config, root, state and socket in a temporary
/// directory, a namespace of its own, the busybox image imported. A daemon per test,
/// because only a value a test owns is dropped (statics never are): dropping it stops the
/// daemon and removes all it made.
struct Containerd {
    dir: PathBuf,
    namespace: String,
    daemon: Child,
    ctr: Client,
}

/// A running containerd when the test can run (root, containerd and ctr, busybox);
/// otherwise prints `SKIP` and gives None.
fn containerd_or_skip(test: &str) -> Option<Containerd> {
    let rootfs = container_support::rootfs_or_skip(test)?;
    for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
        if !installed(tool) {
            println!("SKIP {test}: {tool} is not installed (apt-get install containerd)");
            return None;
        }
    }
    let archive = busybox_oci_archive(&rootfs)
        .as_ref()
        .unwrap_or_else(|why| panic!("making the image archive failed: {why}"));
    let containerd = Containerd::start();
    let archive = archive.to_string_lossy();
    containerd.ctr.run(&["image", "import", &archive]).expect(0);
    Some(containerd)
}

impl Containerd {
    fn start() -> Self {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let name = format!("vmm-runc-test-{}-{n}", std::process::id());
        // Short, under /tmp: the socket's path must fit a sockaddr_un.
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create containerd's directory");
        let config = dir.join("config.toml");
        std::fs::write(&config, containerd_config(&dir)).expect("write containerd's config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("create its log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log's descriptor"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut containerd = Containerd {
            namespace: name,
            daemon,
            ctr: Client {
                program: "ctr",
                options: vec![
                    "--address".into(),
                    dir.join("containerd.sock").to_string_lossy().into_owned(),
                ],
                env: Vec::new(),
            },
            dir,
        };
        containerd
            .ctr
            .options
            .extend(["--namespace".into(), containerd.namespace.clone()]);
        containerd.wait_until_serving();
        containerd
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ctr.run(&["version"]).code != 0 {
            let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
            if let Ok(Some(status)) = self.daemon.try_wait() {
                panic!("containerd exited ({status}) before serving:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "containerd is not serving after 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asserts that the container `id` (also its workload's marker) left nothing.
    fn assert_nothing_left(&self, id: &str) {
        let traces = Traces {
            state: Path::new(CONTAINERD_RUNC_ROOT)
                .join(&self.namespace)
                .join(id),
            cgroup: Path::new(&self.namespace).join(id),
            needles: vec![id.to_owned()],
        };
        traces.assert_nothing_left(|| {
            let ran = self.ctr.run(&["containers", "list", "--quiet"]);
            ran.stdout.lines().any(|line| line == id)
        });
    }

    fn stop(&mut self) {
        let pid = self.daemon.id() as i32;
        // SAFETY: kill takes integers; `pid` is our child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

impl Drop for Containerd {
    /// Removes what a failed test left (the task, with its processes, and the container),
    /// stops the daemon, detaches any mount left under its directory and removes it.
    fn drop(&mut self) {
        let listed = self.ctr.run(&["containers", "list", "--quiet"]);
        for id in listed.stdout.lines() {
            self.ctr.run(&["tasks", "delete", "--force", id]);
            self.ctr.run(&["containers", "delete", id]);
        }
        self.stop();
        let dir = self.dir.to_string_lossy().into_owned();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mount_point in mountinfo.lines().rev().filter_map(|l| l.split(' ').nth(4)) {
            if mount_point.starts_with(&dir) {
                let c = std::ffi::CString::new(mount_point).expect("no NUL in a mount point");
                // SAFETY: a NUL-terminated path and a flag.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // The namespace's parents, which the runtime made for its containers.
        let _ = std::fs::remove_dir(Path::new(CONTAINERD_RUNC_ROOT).join(&self.namespace));
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join(&self.namespace));
        }
    }
}

/// containerd's config: everything it keeps under `dir`, and no CRI plugin (Kubernetes'
/// API, which these tests do not use, and which would set up CNI).
fn containerd_config(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{dir}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"#
    )
}

/// The busybox image as an OCI image archive (an OCI image layout in a tar: oci-layout,
/// index.json naming [`CTR_IMAGE`], and the blobs), made once per test binary.
fn busybox_oci_archive(rootfs: &Path) -> &'static Result<PathBuf, String> {
    static ARCHIVE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let (layer, _) = busybox_layer(rootfs).as_ref().map_err(Clone::clone)?;
        let layer = std::fs::read(layer).map_err(|e| format!("read {layer:?}: {e}"))?;
        let archive = work_dir().join("busybox-oci.tar");
        make_atomically(&archive, |tmp| {
            let layout = tmp.with_extension("layout");
            let _ = std::fs::remove_dir_all(&layout);
            write_oci_layout(&layout, &layer).map_err(|e| format!("write {layout:?}: {e}"))?;
            let out = Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(tmp)
                .arg(".")
                .output()
                .map_err(|e| format!("run tar: {e}"))?;
            let _ = std::fs::remove_dir_all(&layout);
            out.status
                .success()
                .then_some(())
                .ok_or_else(|| format!("tar failed: {}", String::from_utf8_lossy(&out.stderr)))
        })?;
        Ok(archive)
    })
}

/// An OCI image layout in `dir` of one image: `layer` (an uncompressed tar), a config
/// for this machine's architecture, their manifest, and the index naming it.
fn write_oci_layout(dir: &Path, layer: &[u8]) -> std::io::Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)?;
    let blob = |media_type: &str, bytes: &[u8]| -> std::io::Result<serde_json::Value> {
        let hex = format!("{:x}", Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes)?;
        Ok(serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
        }))
    };
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let layer = blob("application/vnd.oci.image.layer.v1.tar", layer)?;
    let config = serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": {},
        // Uncompressed, the layer's digest is its diff ID.
        "rootfs": { "type": "layers", "diff_ids": [layer["digest"]] },
    });
    let config = blob(
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    )?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let mut manifest = blob(
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    )?;
    manifest["platform"] = serde_json::json!({ "architecture": architecture, "os": "linux" });
    manifest["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": CTR_IMAGE });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [manifest] });
    std::fs::write(dir.join("index.json"), index.to_string())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
}
