//! containerd's side of the tests: a private daemon per test, and the busybox image as an
//! OCI archive for `ctr image import`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::*;

/// `ctr run --rm --runc-binary vmm-runc [options] IMAGE ID command...`.
pub fn ctr_run_args(options: &[&str], id: &str, command: &[&str]) -> Vec<String> {
    let mut args = strings(&["run", "--rm", "--runc-binary", VMM_RUNC]);
    args.extend(strings(options));
    args.extend(strings(&[CTR_IMAGE, id]));
    args.extend(strings(command));
    args
}

/// The busybox image's reference in containerd.
pub const CTR_IMAGE: &str = "localhost/vmm-runc-test:busybox";

/// A containerd daemon of one test: its config, root, state and socket in a temporary
/// directory, a namespace of its own, the busybox image imported. A daemon per test,
/// because only a value a test owns is dropped (statics never are): dropping it stops the
/// daemon and removes all it made.
pub struct Containerd {
    pub dir: PathBuf,
    pub namespace: String,
    pub daemon: Child,
    pub ctr: Client,
}

/// A running containerd when the test can run (root, containerd and ctr, busybox);
/// otherwise prints `SKIP` and gives None.
pub fn containerd_or_skip(test: &str) -> Option<Containerd> {
    let rootfs = crate::container_support::rootfs_or_skip(test)?;
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
    pub fn start() -> Self {
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

    pub fn wait_until_serving(&mut self) {
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
    pub fn assert_nothing_left(&self, id: &str) {
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

    pub fn stop(&mut self) {
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
pub fn containerd_config(dir: &Path) -> String {
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
pub fn busybox_oci_archive(rootfs: &Path) -> &'static Result<PathBuf, String> {
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
pub fn write_oci_layout(dir: &Path, layer: &[u8]) -> std::io::Result<()> {
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
