//! `create` (and the first half of `run`): read the bundle, claim the ID, make the exec
//! FIFO, have the runtime set the container up with its first process waiting on the
//! FIFO, record the state, write the pid file, and let the container outlive us.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use oci_spec::runtime::Spec;
use runtime::config::{ContainerConfig, RootSwitch};
use runtime::launch::{self, CreateOptions};
use runtime::spec::config_from_spec;

use super::cli::CreateArgs;
use super::error::RuncError;
use super::in_vm;
use super::state::{self, Locked, Record, Saved, Status};

/// The config.json annotation that chooses where the container runs.
pub const ISOLATION_ANNOTATION: &str = "io.vmm.isolation";

/// A created container, still locked by this process.
pub struct Made {
    pub locked: Locked,
    pub saved: Saved,
}

pub fn create(root: &Path, args: &CreateArgs) -> Result<Made, RuncError> {
    let bundle = std::fs::canonicalize(&args.bundle).map_err(|e| {
        RuncError::Container(runtime::error::ContainerError::BundleUnreadable {
            path: args.bundle.clone(),
            source: e,
        })
    })?;
    let (spec, mut config) = read_bundle(&bundle)?;
    let level = isolation(&spec)?;
    config.id = args.id.clone();
    if args.no_pivot {
        config.root_switch = RootSwitch::Chroot;
    }
    if args.preserve_fds > 0 {
        return Err(RuncError::Unsupported(
            "--preserve-fds: passing extra descriptors is not supported".into(),
        ));
    }
    let locked = state::claim(root, &args.id)?;
    let made = match level {
        Some(level) => in_vm::set_up(locked, args, bundle, &spec, config, level),
        None => set_up(locked, args, bundle, spec, config),
    };
    match made {
        Ok(made) => Ok(made),
        Err((dir, e)) => {
            // Nothing was recorded: leave nothing that a list or the next create sees.
            let _ = std::fs::remove_dir_all(dir);
            Err(e)
        }
    }
}

fn set_up(
    locked: Locked,
    args: &CreateArgs,
    bundle: std::path::PathBuf,
    spec: Spec,
    config: ContainerConfig,
) -> Result<Made, (std::path::PathBuf, RuncError)> {
    let dir = locked.dir().to_path_buf();
    let fail = |e: RuncError| (dir.clone(), e);
    let fifo = make_exec_fifo(&locked).map_err(fail)?;
    let exec_fifo = open_path(&fifo).map_err(fail)?;
    let console_socket = match &args.console_socket {
        Some(path) => Some(super::console::connect(path).map_err(fail)?),
        None => None,
    };
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut saved = Saved {
        id: args.id.clone(),
        bundle,
        pid: 0,
        pid_start: 0,
        created: super::now_rfc3339(),
        annotations,
        cgroup_dirs: Vec::new(),
        config,
        vm_socket: None,
    };
    let for_hooks = saved.clone();
    let created = launch::create(
        &saved.config,
        launch::Stdio {
            console_socket,
            ..Default::default()
        },
        CreateOptions {
            exec_fifo,
            state: Box::new(move |pid| {
                let mut s = for_hooks.clone();
                s.pid = pid;
                s.state_json(Status::Created).to_string().into_bytes()
            }),
        },
    )
    .map_err(|e| fail(e.into()))?;
    saved.pid = created.pid();
    saved.pid_start = state::proc_stat(saved.pid).map_or(0, |(start, _)| start);
    saved.cgroup_dirs = created.cgroup_dirs();
    locked.save(&saved).map_err(fail)?;
    if let Some(path) = &args.pid_file {
        write_pid_file(path, saved.pid).map_err(fail)?;
    }
    created.commit().map_err(|e| fail(e.into()))?;
    Ok(Made { locked, saved })
}

/// config.json as the spec and as the runtime's configuration.
fn read_bundle(bundle: &Path) -> Result<(Spec, ContainerConfig), RuncError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| {
        runtime::error::ContainerError::BundleUnreadable {
            path: path.clone(),
            source,
        }
    })?;
    let spec: Spec =
        serde_json::from_slice(&text).map_err(|e| runtime::error::ContainerError::InvalidSpec {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let config = config_from_spec(&spec, bundle)?;
    Ok((spec, config))
}

/// The level the annotation asks for: None for the container level (here, on the host),
/// else a microVM level, refused at once (before anything is made) on a host that cannot
/// boot Linux guests.
fn isolation(spec: &Spec) -> Result<Option<&'static str>, RuncError> {
    let level = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ISOLATION_ANNOTATION))
        .map_or("container", String::as_str);
    let level: &'static str = match level {
        "container" => return Ok(None),
        "vm" => "vm",
        "vm+container" => "vm+container",
        other => {
            return Err(RuncError::Unsupported(format!(
                "annotation {ISOLATION_ANNOTATION}={other:?}: use container, vm or vm+container"
            )))
        }
    };
    crate::run::check_can_boot_linux(level)
        .map_err(|e| RuncError::Unsupported(edge::error_chain(&e)))?;
    Ok(Some(level))
}

/// The exec FIFO of a new container, made in its state directory.
pub fn make_exec_fifo(locked: &Locked) -> Result<std::path::PathBuf, RuncError> {
    let fifo = locked.fifo();
    make_fifo(&fifo)?;
    Ok(fifo)
}

fn make_fifo(path: &Path) -> Result<(), RuncError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| RuncError::io(format!("mkfifo {path:?}"), e.into()))?;
    // 0622: the workload's user, whoever it is, must be able to open it for writing.
    // SAFETY: a NUL-terminated path and a mode.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o622) } != 0 {
        return Err(RuncError::io(
            format!("make the exec FIFO {path:?}"),
            std::io::Error::last_os_error(),
        ));
    }
    // mkfifo's mode is filtered by the umask: set it exactly.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| RuncError::io(format!("chmod {path:?}"), e))
}

fn open_path(path: &Path) -> Result<OwnedFd, RuncError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| RuncError::io(format!("open {path:?}"), e.into()))?;
    // SAFETY: a NUL-terminated path and flags; O_PATH opens neither end of the FIFO.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(RuncError::io(
            format!("open the exec FIFO {path:?}"),
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: open just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Written whole or not at all: clients read it as soon as it appears.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), RuncError> {
    let tmp = path.with_extension("vmm-runc-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| RuncError::io(format!("write the pid file {path:?}"), e))
}
