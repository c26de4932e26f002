//! From an OCI bundle (`config.json`, runtime-spec 1.x, read with oci-spec) to a
//! [`ContainerConfig`]. A field this runtime does not implement is refused by name rather
//! than ignored, so a bundle never runs with less isolation than it asks for.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capabilities, LinuxNamespaceType, Mount, Spec};

mod resources;

use super::caps;
use super::config::{
    CapabilitySets, ConsoleSize, ContainerConfig, Hook, Hooks, IdMapping, JoinNamespace, MountSpec,
    Namespaces, ProcessConfig, Rlimit, RootSwitch,
};
use super::error::{ContainerError, Result};
use super::mount_opts::mount_spec;
use super::options::{check_id, default_id, resolve_rootfs, rlimit_resource};

fn unsupported(what: impl Into<String>) -> ContainerError {
    ContainerError::Unsupported(what.into())
}

/// Read `DIR/config.json` and resolve it against the bundle directory.
pub fn config_from_bundle(bundle: &Path) -> Result<ContainerConfig> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| ContainerError::BundleUnreadable {
        path: path.clone(),
        source,
    })?;
    let spec: Spec = serde_json::from_slice(&text).map_err(|e| ContainerError::InvalidSpec {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    config_from_spec(&spec, bundle)
}

/// Convert a parsed spec; relative paths in it are relative to `bundle`.
pub fn config_from_spec(spec: &Spec, bundle: &Path) -> Result<ContainerConfig> {
    if spec.domainname().as_deref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("domainname"));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| unsupported("a spec without root.path"))?;
    let rootfs = resolve_rootfs(&bundle.join(root.path()))?;

    let process = spec.process().as_ref().ok_or(ContainerError::NoCommand)?;
    let process_config = process_from_oci(process)?;

    let linux = spec.linux().clone().unwrap_or_default();
    if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("linux.devices"));
    }
    let unapplied = [
        ("intelRdt", linux.intel_rdt().is_some()),
        ("personality", linux.personality().is_some()),
        ("memoryPolicy", linux.memory_policy().is_some()),
        (
            "netDevices",
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
        ),
        (
            "timeOffsets",
            linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()),
        ),
    ];
    if let Some((field, _)) = unapplied.iter().find(|(_, set)| *set) {
        return Err(unsupported(format!("linux.{field}")));
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !matches!(p.as_str(), "private" | "rprivate" | "slave" | "rslave" | "") {
            return Err(unsupported(format!("linux.rootfsPropagation {p:?}")));
        }
    }
    let mut namespaces = Namespaces {
        pid: false,
        mount: false,
        uts: false,
        ipc: false,
        net: false,
        user: false,
        cgroup: false,
    };
    let mut join_namespaces = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        if let Some(path) = ns.path() {
            // Joined by the first process before anything else; the pid, user and
            // mount namespaces would have to be joined before the clone or first of all.
            let flag = match ns.typ() {
                LinuxNamespaceType::Network => libc::CLONE_NEWNET,
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                other => {
                    return Err(unsupported(format!(
                        "joining the {other} namespace at {path:?} (network, ipc and uts can be joined)"
                    )))
                }
            };
            join_namespaces.push(JoinNamespace {
                flag,
                path: path.clone(),
            });
            continue;
        }
        match ns.typ() {
            LinuxNamespaceType::Pid => namespaces.pid = true,
            LinuxNamespaceType::Mount => namespaces.mount = true,
            LinuxNamespaceType::Uts => namespaces.uts = true,
            LinuxNamespaceType::Ipc => namespaces.ipc = true,
            LinuxNamespaceType::Network => namespaces.net = true,
            LinuxNamespaceType::User => namespaces.user = true,
            LinuxNamespaceType::Cgroup => namespaces.cgroup = true,
            other => return Err(unsupported(format!("the {other} namespace"))),
        }
    }
    let map = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<IdMapping> {
        m.iter()
            .flatten()
            .map(|m| IdMapping {
                container_id: m.container_id(),
                host_id: m.host_id(),
                size: m.size(),
            })
            .collect()
    };
    let uid_mappings = map(linux.uid_mappings());
    let gid_mappings = map(linux.gid_mappings());
    if namespaces.user && (uid_mappings.is_empty() || gid_mappings.is_empty()) {
        return Err(unsupported(
            "a user namespace without uidMappings and gidMappings",
        ));
    }

    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        mounts.push(mount_from_spec(m, bundle)?);
    }
    let no_mounts = mounts.is_empty()
        && linux.masked_paths().as_ref().is_none_or(Vec::is_empty)
        && linux.readonly_paths().as_ref().is_none_or(Vec::is_empty);
    if !namespaces.mount && !no_mounts {
        return Err(unsupported(
            "mounts, maskedPaths or readonlyPaths without a mount namespace",
        ));
    }
    let default_devices = mounts
        .iter()
        .any(|m| m.destination == Path::new("/dev") && m.fstype == "tmpfs");

    let id = match linux.cgroups_path() {
        Some(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(default_id),
        None => default_id(),
    };
    check_id(&id)?;
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    if let Some(name) = &hostname {
        super::hostname::check("hostname", name)?;
    }

    Ok(ContainerConfig {
        id,
        rootfs,
        root_switch: RootSwitch::PivotRoot,
        readonly_root: root.readonly().unwrap_or(false),
        hostname,
        process: process_config,
        namespaces,
        uid_mappings,
        gid_mappings,
        mounts,
        default_devices,
        masked_paths: paths(linux.masked_paths()),
        readonly_paths: paths(linux.readonly_paths()),
        cgroup: true,
        resources: resources::resources(linux.resources().as_ref())?,
        seccomp: linux
            .seccomp()
            .as_ref()
            .map(super::seccomp::profile_from_oci)
            .transpose()?,
        net_link: None,
        sysctl: linux
            .sysctl()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        oom_score_adj: process.oom_score_adj(),
        terminal: process.terminal().unwrap_or(false),
        console_size: process.console_size().as_ref().map(console_size),
        cgroup_path: linux.cgroups_path().clone(),
        hooks: spec.hooks().as_ref().map(hooks).unwrap_or_default(),
        join_namespaces,
        device_rules: resources::device_rules(linux.resources().as_ref()),
    })
}

/// `process.consoleSize`; a dimension beyond a `winsize`'s 16 bits is taken as the most
/// it holds (as runc's conversion would wrap it instead).
pub fn console_size(b: &oci_spec::runtime::Box) -> ConsoleSize {
    let clamp = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
    ConsoleSize {
        rows: clamp(b.height()),
        cols: clamp(b.width()),
    }
}

fn hooks(h: &oci_spec::runtime::Hooks) -> Hooks {
    let list = |l: &Option<Vec<oci_spec::runtime::Hook>>| -> Vec<Hook> {
        l.iter()
            .flatten()
            .map(|h| Hook {
                path: h.path().clone(),
                args: h.args().clone().unwrap_or_default(),
                env: h.env().clone().unwrap_or_default(),
                timeout_secs: h.timeout().and_then(|t| u32::try_from(t).ok()),
            })
            .collect()
    };
    #[allow(deprecated)] // prestart is deprecated by the spec, and still sent.
    let prestart = list(h.prestart());
    Hooks {
        prestart,
        create_runtime: list(h.create_runtime()),
        create_container: list(h.create_container()),
        start_container: list(h.start_container()),
        poststart: list(h.poststart()),
        poststop: list(h.poststop()),
    }
}

/// An OCI `process` (config.json's, or the one `exec --process` reads) as the runtime's.
pub fn process_from_oci(process: &oci_spec::runtime::Process) -> Result<ProcessConfig> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(ContainerError::NoCommand);
    }
    if !process.cwd().is_absolute() {
        return Err(ContainerError::invalid(
            "process.cwd",
            &process.cwd().to_string_lossy(),
            "must be absolute",
        ));
    }
    let user = process.user();
    let capabilities = match process.capabilities() {
        Some(c) => CapabilitySets {
            bounding: cap_mask(c.bounding())?,
            effective: cap_mask(c.effective())?,
            permitted: cap_mask(c.permitted())?,
            inheritable: cap_mask(c.inheritable())?,
            ambient: cap_mask(c.ambient())?,
        },
        None => CapabilitySets::default(),
    };
    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let name = r.typ().to_string();
        let resource = rlimit_resource(&name)
            .ok_or_else(|| ContainerError::invalid("rlimit", &name, "unknown rlimit"))?;
        rlimits.push(Rlimit {
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    Ok(ProcessConfig {
        args,
        env: process.env().clone().unwrap_or_default(),
        cwd: process.cwd().clone(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask().unwrap_or(0o022),
        capabilities,
        inherit_capabilities: false,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        rlimits,
    })
}

fn cap_mask(set: &Option<Capabilities>) -> Result<u64> {
    let names: Vec<String> = set.iter().flatten().map(|c| format!("CAP_{c}")).collect();
    caps::mask_of(&names)
}

fn paths(list: &Option<Vec<String>>) -> Vec<PathBuf> {
    list.iter().flatten().map(PathBuf::from).collect()
}

fn mount_from_spec(m: &Mount, bundle: &Path) -> Result<MountSpec> {
    let destination = m.destination();
    if !destination.is_absolute() {
        return Err(ContainerError::invalid(
            "mount destination",
            &destination.to_string_lossy(),
            "must be absolute",
        ));
    }
    let options = m.options().clone().unwrap_or_default();
    let fstype = m.typ().clone().unwrap_or_else(|| "none".to_owned());
    let source = m.source().clone().unwrap_or_default();
    let mut spec = mount_spec(
        &destination.to_string_lossy(),
        &fstype,
        &source.to_string_lossy(),
        &options,
    );
    if spec.is_bind() {
        let source = bundle.join(&source);
        spec.source = source
            .canonicalize()
            .map_err(|_| ContainerError::MissingMountSource(source.clone()))?;
        spec.fstype = "bind".to_owned();
    } else if !matches!(
        fstype.as_str(),
        "proc" | "sysfs" | "tmpfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2"
    ) {
        return Err(unsupported(format!(
            "mount type {fstype:?} at {destination:?}"
        )));
    }
    Ok(spec)
}
