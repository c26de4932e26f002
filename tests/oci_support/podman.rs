//! Podman's side of the tests: its own containers.conf naming vmm-runc, and a container
//! it runs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::*;

/// Podman set up for these tests: its config and the busybox image.
pub struct Podman {
    pub client: Client,
    pub image: String,
}

/// Podman when the test can run (root, podman, busybox); otherwise prints `SKIP` and gives
/// None. Setting Podman up (config, image import) happens once per test binary.
pub fn podman_or_skip(test: &str) -> Option<&'static Podman> {
    let rootfs = crate::container_support::rootfs_or_skip(test)?;
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
    pub fn set_up(rootfs: &Path) -> Result<Self, String> {
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
pub fn containers_conf() -> String {
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

pub fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
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
pub struct PodmanContainer<'a> {
    pub podman: &'a Podman,
    pub name: String,
    pub cidfile: PathBuf,
}

impl<'a> PodmanContainer<'a> {
    pub fn new(podman: &'a Podman, tag: &str) -> Self {
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
    pub fn run_args(&self, options: &[&str], command: &[&str]) -> Vec<String> {
        let cidfile = self.cidfile.to_string_lossy();
        let mut args = strings(&["run", "--name", &self.name, "--cidfile", &cidfile]);
        args.extend(strings(options));
        args.push(self.podman.image.clone());
        args.extend(strings(command));
        args
    }

    /// `podman run` of `script`, marked with the container's name.
    pub fn run(&self, options: &[&str], script: &str) -> Ran {
        self.podman
            .client
            .run(&self.run_args(options, &sh(script, &self.name)))
    }

    /// `podman inspect --format FORMAT`, trimmed.
    pub fn inspect(&self, format: &str) -> String {
        let ran = self
            .podman
            .client
            .run(&["inspect", "--format", format, &self.name]);
        ran.expect(0).stdout.trim().to_owned()
    }

    /// The container's full ID, once Podman has written it.
    pub fn id(&self) -> Option<String> {
        let id = std::fs::read_to_string(&self.cidfile).ok()?;
        Some(id.trim().to_owned()).filter(|id| !id.is_empty())
    }

    pub fn assert_nothing_left(&self) {
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
