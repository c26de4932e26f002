//! What the container's first process does between `clone` and `execve`: the file system
//! ([`super::rootfs`]), then hostname, loopback (and the container's end of a link to the
//! host), rlimits, identity, capabilities, no_new_privs and seccomp, in the order runc's
//! `linuxStandardInit` uses.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::caps;
use super::config::{ContainerConfig, LINK_INTERFACE};
use super::defaults;
use super::error::{ContainerError, Result};
use super::netif::LinkAddresses;
use super::rootfs::{finalize_rootfs, prepare_rootfs, HostInfo};
use super::sys::{BpfInstruction, Syscall};

fn sys_err(action: &str) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
    move |e| ContainerError::sys(action, e)
}

/// What the first process gets besides its configuration.
#[derive(Default)]
pub struct Extras<'a> {
    /// The seccomp filters to install, in order (none: no filter).
    pub seccomp: &'a [Vec<BpfInstruction>],
    /// A connected unix socket that takes the primary end of the workload's pty
    /// (`cfg.terminal`), as runc's `--console-socket`.
    pub console_socket: Option<RawFd>,
    /// Called once the container is set up and the command found, before the last steps
    /// (seccomp with no_new_privs, exec): an OCI runtime's `create` holds the process
    /// here until `start`. An error ends the process.
    pub gate: Option<&'a mut dyn FnMut() -> Result<()>>,
    /// Called in the container's namespaces just before its root changes, with the
    /// runtime's file system still in view: the OCI createContainer hooks.
    pub before_root_switch: Option<&'a mut dyn FnMut() -> Result<()>>,
    /// The workload is meant to outlive the runtime (a detached `exec`): no parent-death
    /// signal.
    pub outlives_runtime: bool,
}

/// Set the container up and exec its command. Returns only with the error that stopped it.
pub fn setup_and_exec<S: Syscall>(
    sys: &S,
    cfg: &ContainerConfig,
    host: HostInfo,
    mut extras: Extras<'_>,
) -> Result<Infallible> {
    for ns in &cfg.join_namespaces {
        sys.setns(&ns.path, ns.flag)
            .map_err(|e| ContainerError::sys(format!("join the namespace at {:?}", ns.path), e))?;
    }
    // Files and nodes get exactly the modes asked for; the workload's umask comes last.
    sys.umask(0);
    if cfg.namespaces.user {
        // Until now our ids are the host's, unmapped in the new namespace (files we create
        // would fail with EOVERFLOW): become its root, which keeps the namespace's caps.
        sys.set_ids(0, 0)
            .map_err(sys_err("become root of the user namespace"))?;
    }
    if cfg.namespaces.cgroup {
        // Now that the parent has put us in our cgroup, it becomes our cgroup root.
        sys.unshare(libc::CLONE_NEWCGROUP)
            .map_err(sys_err("unshare the cgroup namespace"))?;
    }
    let mut nothing = || Ok(());
    let before_switch = match extras.before_root_switch.take() {
        Some(f) => f,
        None => &mut nothing,
    };
    prepare_rootfs(sys, cfg, host, before_switch)?;
    if cfg.terminal {
        // After the rootfs: the pty comes from the container's own devpts.
        let socket = extras.console_socket.ok_or_else(|| {
            ContainerError::Unsupported(
                "process.terminal=true without a console socket (--console-socket)".into(),
            )
        })?;
        sys.attach_console(socket, cfg.console_size)
            .map_err(sys_err(
                "make the workload's terminal and send it to the console socket",
            ))?;
    }
    if cfg.namespaces.uts {
        if let Some(name) = &cfg.hostname {
            sys.sethostname(name).map_err(sys_err("set the hostname"))?;
        }
    }
    if cfg.namespaces.net {
        sys.loopback_up().map_err(sys_err("bring up lo"))?;
        if let Some(link) = &cfg.net_link {
            configure_link(sys, &link.addresses)?;
        }
    }
    // Through the container's /proc, so per-namespace parameters land in its namespaces;
    // before /proc/sys turns read-only.
    for (key, value) in &cfg.sysctl {
        let path = sysctl_path(key)?;
        sys.write_file(&path, value)
            .map_err(|e| ContainerError::sys(format!("set the sysctl {key} to {value:?}"), e))?;
    }
    finalize_rootfs(sys, cfg)?;
    exec_workload(sys, cfg, extras)
}

/// The workload's own steps, in a container that is set up (by [`setup_and_exec`], or the
/// one an `exec` joined): limits, privileges, identity, working directory, then exec.
pub fn exec_workload<S: Syscall>(
    sys: &S,
    cfg: &ContainerConfig,
    extras: Extras<'_>,
) -> Result<Infallible> {
    let p = &cfg.process;
    for limit in &p.rlimits {
        sys.setrlimit(limit).map_err(sys_err("set an rlimit"))?;
    }
    if let Some(adj) = cfg.oom_score_adj {
        // Before the capabilities go: lowering it takes CAP_SYS_RESOURCE.
        sys.write_file(Path::new("/proc/self/oom_score_adj"), &adj.to_string())
            .map_err(sys_err("set oom_score_adj"))?;
    }
    if p.no_new_privileges {
        sys.set_no_new_privs()
            .map_err(sys_err("set no_new_privs"))?;
    }
    // Without no_new_privs the kernel wants CAP_SYS_ADMIN to install a filter: do it now.
    if !p.no_new_privileges {
        install_seccomp(sys, extras.seccomp)?;
    }
    if p.inherit_capabilities {
        sys.setgroups(&p.additional_gids)
            .map_err(sys_err("set the supplementary groups"))?;
        sys.set_ids(p.uid, p.gid)
            .map_err(sys_err("switch to the workload's user"))?;
    } else {
        for cap in 0..=caps::LAST_KNOWN {
            if p.capabilities.bounding & (1u64 << cap) == 0 {
                sys.drop_bounding_cap(cap)
                    .map_err(sys_err("drop a capability from the bounding set"))?;
            }
        }
        sys.set_keep_caps(true).map_err(sys_err("set keepcaps"))?;
        sys.setgroups(&p.additional_gids)
            .map_err(sys_err("set the supplementary groups"))?;
        sys.set_ids(p.uid, p.gid)
            .map_err(sys_err("switch to the container user"))?;
        sys.set_keep_caps(false)
            .map_err(sys_err("clear keepcaps"))?;
        sys.set_capabilities(&p.capabilities)
            .map_err(sys_err("set the capabilities"))?;
    }
    // The death signal is cleared by the identity change: set it again.
    if !extras.outlives_runtime {
        sys.set_parent_death_signal(libc::SIGKILL)
            .map_err(sys_err("set the parent death signal"))?;
    }
    // A missing working directory is the caller's mistake, refused before the workload
    // runs. It is not made, as runc would make it: that would write into the caller's
    // rootfs (and fail on a read-only one); Podman and Docker make WORKDIR themselves.
    sys.chdir(&p.cwd).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => ContainerError::MissingWorkdir(p.cwd.clone()),
        _ => ContainerError::sys(format!("chdir to the working directory {:?}", p.cwd), e),
    })?;
    let program = resolve_command(sys, &p.args[0], &p.env)?;
    sys.umask(p.umask);
    sys.close_on_exec_from(3)
        .map_err(sys_err("mark descriptors close-on-exec"))?;
    if let Some(gate) = extras.gate {
        gate()?;
    }
    if p.no_new_privileges {
        install_seccomp(sys, extras.seccomp)?;
    }
    let argv = to_cstrings(&p.args)?;
    let envp = to_cstrings(&p.env)?;
    sys.restore_signals()
        .map_err(sys_err("restore the signal mask"))?;
    let path = CString::new(program.as_os_str().as_bytes()).unwrap_or_default();
    let err = sys.execve(&path, &argv, &envp);
    Err(ContainerError::sys(format!("execute {program:?}"), err))
}

/// `/proc/sys/...` of a sysctl key (`net.ipv4.ping_group_range`); a key that would leave
/// /proc/sys is refused.
fn sysctl_path(key: &str) -> Result<PathBuf> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.contains('/') || *p == "..")
    {
        return Err(ContainerError::invalid(
            "sysctl",
            key,
            "not a kernel parameter name",
        ));
    }
    Ok(Path::new("/proc/sys").join(parts.join("/")))
}

fn install_seccomp<S: Syscall>(sys: &S, programs: &[Vec<BpfInstruction>]) -> Result<()> {
    for program in programs {
        sys.apply_seccomp(program)
            .map_err(sys_err("install the seccomp filter"))?;
    }
    Ok(())
}

/// The container's end of its link to the host, which the runtime has put in this network
/// namespace: its address, up, and the host's end as the default gateway.
fn configure_link<S: Syscall>(sys: &S, link: &LinkAddresses) -> Result<()> {
    let name = LINK_INTERFACE;
    sys.set_ipv4(name, link.workload, link.prefix_len)
        .map_err(|e| {
            let addr = format!("{}/{}", link.workload, link.prefix_len);
            ContainerError::sys(format!("give {name} the address {addr}"), e)
        })?;
    sys.link_up(name)
        .map_err(|e| ContainerError::sys(format!("bring up {name}"), e))?;
    sys.add_default_route(link.host)
        .map_err(|e| ContainerError::sys(format!("add the default route via {}", link.host), e))
}

fn to_cstrings(list: &[String]) -> Result<Vec<CString>> {
    list.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| ContainerError::invalid("argument", s, "contains a NUL byte"))
        })
        .collect()
}

/// The program `command` names inside the container: as given when it has a `/`,
/// otherwise the first executable match in `PATH`.
pub fn resolve_command<S: Syscall>(sys: &S, command: &str, env: &[String]) -> Result<PathBuf> {
    let not_found = || ContainerError::CommandNotFound {
        command: command.to_owned(),
    };
    if command.contains('/') {
        return if sys.is_executable(Path::new(command)) {
            Ok(PathBuf::from(command))
        } else {
            Err(not_found())
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(defaults::PATH);
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(command))
        .find(|candidate| sys.is_executable(candidate))
        .ok_or_else(not_found)
}
