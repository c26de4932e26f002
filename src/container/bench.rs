//! `vmm bench container-start`: run → /bin/true → exit, for this runtime and, when they are
//! installed, crun and runc, on the same busybox rootfs and the same OCI bundle (the
//! defaults of `runc spec`), interleaved so drift hits all alike.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use edge::exit_code;
use runtime::defaults;

/// The rootfs builder shipped in the source tree.
const ROOTFS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/resources/container-rootfs.sh");
const WARMUP_RUNS: u32 = 3;

fn bundle_config(rootfs: &Path) -> String {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/bin/true"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": rootfs, "readonly": true },
        "hostname": "bench",
        "mounts": mounts_json(),
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": defaults::MASKED_PATHS,
            "readonlyPaths": defaults::READONLY_PATHS
        }
    })
    .to_string()
}

/// The default mounts as OCI `mounts` entries.
fn mounts_json() -> serde_json::Value {
    defaults::MOUNTS
        .iter()
        .map(|(dst, fstype, src, opts)| {
            serde_json::json!({ "destination": dst, "type": fstype, "source": src, "options": opts })
        })
        .collect()
}

struct Runtime {
    name: &'static str,
    command: Box<dyn Fn(u32) -> Command>,
    times: Vec<Duration>,
    failure: Option<String>,
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_once(rt: &mut Runtime, i: u32, record: bool) {
    if rt.failure.is_some() {
        return;
    }
    let mut cmd = (rt.command)(i);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    match cmd.output() {
        Ok(out) if out.status.success() => {
            if record {
                rt.times.push(start.elapsed());
            }
        }
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            rt.failure = Some(format!("{}: {}", out.status, err.trim()));
        }
        Err(e) => rt.failure = Some(e.to_string()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let n = times.len();
    let median = ms(times[n / 2]);
    let p95 = ms(times[((n * 95).div_ceil(100)).saturating_sub(1).min(n - 1)]);
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / n as f64;
    format!("{median:>9.2} {p95:>9.2} {:>9.2} {mean:>9.2}", ms(times[0]))
}

/// crun refuses hybrid hosts whose v2 tree has a controller ("cgroups in hybrid mode not
/// supported"). For a like-for-like run, the benchmark moves into a private mount namespace
/// without /sys/fs/cgroup/unified: every runtime then sees the same v1-only host.
fn hide_unified_hierarchy() -> bool {
    let unified = Path::new(runtime::cgroup::CGROUP_ROOT).join("unified");
    if runtime::cgroup::detect_mode() != runtime::cgroup::CgroupMode::Hybrid {
        return false;
    }
    let (Ok(root), Ok(target)) = (
        CString::new("/"),
        CString::new(unified.as_os_str().as_bytes()),
    ) else {
        return false;
    };
    // SAFETY: unshare and mount take integers and NUL-terminated strings that outlive the
    // calls; the new mount namespace is this process's alone.
    unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0
            && libc::umount2(target.as_ptr(), libc::MNT_DETACH) == 0
    }
}

/// The busybox rootfs the benchmarks run /bin/true in, built once (by the script in the
/// source tree) into the temp dir.
pub fn busybox_rootfs() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join("vmm-container-rootfs");
    let built = Command::new("sh").arg(ROOTFS_SCRIPT).arg(&dir).status();
    if built.is_ok_and(|s| s.success()) {
        Ok(dir)
    } else {
        Err(format!(
            "cannot build the busybox rootfs with {ROOTFS_SCRIPT}"
        ))
    }
}

/// Measure `runs` starts of each runtime and print a table (milliseconds).
pub fn bench_container_start(runs: u32) -> ExitCode {
    if runs == 0 {
        eprintln!("vmm: error: --runs must be at least 1");
        return ExitCode::from(exit_code::BAD_INPUT);
    }
    let work = std::env::temp_dir().join(format!("vmm-bench-container-{}", std::process::id()));
    let cache = match busybox_rootfs() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("vmm: error: {e}");
            return ExitCode::from(exit_code::FAILED);
        }
    };
    let bundle = work.join("bundle");
    let state = work.join("state");
    let prepared = std::fs::create_dir_all(&bundle)
        .and_then(|()| std::fs::create_dir_all(&state))
        .and_then(|()| std::fs::write(bundle.join("config.json"), bundle_config(&cache)));
    if let Err(e) = prepared {
        eprintln!("vmm: error: cannot write the benchmark bundle in {work:?}: {e}");
        return ExitCode::from(exit_code::FAILED);
    }
    if hide_unified_hierarchy() {
        println!("hybrid cgroups: benchmark runs in a mount namespace without the empty v2 tree");
    }
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vmm"));
    let pid = std::process::id();
    let mut runtimes = vec![Runtime {
        name: "vmm",
        command: {
            let (me, bundle) = (me.clone(), bundle.clone());
            Box::new(move |i| {
                let mut c = Command::new(&me);
                c.args([
                    "container",
                    "run",
                    "--name",
                    &format!("bench-{pid}-{i}"),
                    "--bundle",
                ])
                .arg(&bundle);
                c
            })
        },
        times: Vec::new(),
        failure: None,
    }];
    for name in ["crun", "runc"] {
        if !installed(name) {
            println!("{name}: not installed, skipped");
            continue;
        }
        let (bundle, state) = (bundle.clone(), state.join(name));
        runtimes.push(Runtime {
            name,
            command: Box::new(move |i| {
                let mut c = Command::new(name);
                c.arg("--root")
                    .arg(&state)
                    .args(["run", "--bundle"])
                    .arg(&bundle)
                    .arg(format!("bench-{pid}-{i}"));
                c
            }),
            times: Vec::new(),
            failure: None,
        });
    }
    for i in 0..WARMUP_RUNS + runs {
        for rt in runtimes.iter_mut() {
            run_once(rt, i, i >= WARMUP_RUNS);
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    println!("container start: run -> /bin/true -> exit, {runs} runs each (ms)");
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9}",
        "runtime", "median", "p95", "min", "mean"
    );
    let mut ok = true;
    for rt in runtimes.iter_mut() {
        match &rt.failure {
            Some(f) => {
                println!("{:<8} failed: {f}", rt.name);
                ok &= rt.name != "vmm";
            }
            None => println!("{:<8} {}", rt.name, summary(&mut rt.times)),
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit_code::FAILED)
    }
}
