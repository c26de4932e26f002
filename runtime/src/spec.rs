//! From an OCI bundle (`config.json`, runtime-spec 1.x, read with oci-spec) to a
//! [`ContainerConfig`]. A field this runtime does not implement is refused by name rather
//! than ignored, so a bundle never runs with less isolation than it asks for.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, LinuxNamespaceType, LinuxResources, LinuxSeccomp, LinuxSeccompAction, Mount, Spec,
};

use super::caps;
use super::config::{
    CapabilitySets, ContainerConfig, CpuQuota, IdMapping, MountSpec, Namespaces, ProcessConfig,
    Resources, Rlimit, RootSwitch, SeccompProfile, SeccompVerdict,
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
    if spec.hooks().is_some() {
        return Err(unsupported("hooks"));
    }
    if spec.domainname().as_deref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("domainname"));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| unsupported("a spec without root.path"))?;
    let rootfs = resolve_rootfs(&bundle.join(root.path()))?;

    let process = spec.process().as_ref().ok_or(ContainerError::NoCommand)?;
    if process.terminal().unwrap_or(false) {
        return Err(unsupported(
            "process.terminal=true (no console support; set it to false)",
        ));
    }
    if process.oom_score_adj().is_some() {
        return Err(unsupported("process.oomScoreAdj"));
    }
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

    let linux = spec.linux().clone().unwrap_or_default();
    if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("linux.devices"));
    }
    if linux.sysctl().as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(unsupported("linux.sysctl"));
    }
    if linux.intel_rdt().is_some() || linux.personality().is_some() {
        return Err(unsupported("linux.intelRdt / linux.personality"));
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
    for ns in linux.namespaces().iter().flatten() {
        if let Some(path) = ns.path() {
            return Err(unsupported(format!(
                "joining the {} namespace at {path:?}",
                ns.typ()
            )));
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

    Ok(ContainerConfig {
        id,
        rootfs,
        root_switch: RootSwitch::PivotRoot,
        readonly_root: root.readonly().unwrap_or(false),
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        process: ProcessConfig {
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
        },
        namespaces,
        uid_mappings,
        gid_mappings,
        mounts,
        default_devices,
        masked_paths: paths(linux.masked_paths()),
        readonly_paths: paths(linux.readonly_paths()),
        cgroup: true,
        resources: resources(linux.resources().as_ref())?,
        seccomp: linux.seccomp().as_ref().map(seccomp).transpose()?,
        net_link: None,
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

fn resources(r: Option<&LinuxResources>) -> Result<Resources> {
    let Some(r) = r else {
        return Ok(Resources::default());
    };
    for rule in r.devices().iter().flatten() {
        // The default rule of `runc spec`: deny everything, which the runtime's own device
        // allowlist already does.
        let deny_all = !rule.allow() && rule.typ().is_none() && rule.major().is_none();
        if !deny_all {
            return Err(unsupported(format!("linux.resources.devices rule {rule}")));
        }
    }
    if r.block_io().is_some()
        || r.hugepage_limits().is_some()
        || r.network().is_some()
        || r.rdma().is_some()
        || r.unified().as_ref().is_some_and(|u| !u.is_empty())
    {
        return Err(unsupported(
            "linux.resources other than memory, pids and cpu quota/period",
        ));
    }
    let memory = r
        .memory()
        .as_ref()
        .and_then(|m| m.limit())
        .filter(|l| *l > 0);
    let pids = r.pids().as_ref().map(|p| p.limit()).filter(|l| *l > 0);
    let cpu = match r.cpu() {
        Some(c) => {
            if c.cpus().is_some() || c.mems().is_some() || c.realtime_runtime().is_some() {
                return Err(unsupported("linux.resources.cpu cpus/mems/realtime"));
            }
            c.quota().filter(|q| *q > 0).map(|quota| CpuQuota {
                quota,
                period: c.period().unwrap_or(super::options::CPU_PERIOD_US),
            })
        }
        None => None,
    };
    Ok(Resources { memory, pids, cpu })
}

fn verdict(action: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompVerdict> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompVerdict::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompVerdict::Errno(errno.unwrap_or(1)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillProcess => {
            SeccompVerdict::KillProcess
        }
        LinuxSeccompAction::ScmpActTrap => SeccompVerdict::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompVerdict::Log,
        other => return Err(unsupported(format!("seccomp action {other}"))),
    })
}

/// OCI seccomp with one action for the listed syscalls and no argument filters.
fn seccomp(s: &LinuxSeccomp) -> Result<SeccompProfile> {
    let default = verdict(s.default_action(), s.default_errno_ret())?;
    let mut listed = None;
    let mut syscalls = Vec::new();
    for rule in s.syscalls().iter().flatten() {
        if rule.args().as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(unsupported("seccomp rules with argument filters"));
        }
        let v = verdict(rule.action(), rule.errno_ret())?;
        if v == default {
            continue;
        }
        if listed.is_some_and(|l| l != v) {
            return Err(unsupported(
                "seccomp profiles with more than one non-default action",
            ));
        }
        listed = Some(v);
        syscalls.extend(rule.names().iter().cloned());
    }
    let listed = listed.unwrap_or(match default {
        SeccompVerdict::Allow => SeccompVerdict::Errno(libc::EPERM as u32),
        _ => SeccompVerdict::Allow,
    });
    Ok(SeccompProfile {
        default,
        listed,
        syscalls,
    })
}
