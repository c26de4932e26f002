//! What the container's first process does between `clone` and `execve`: the file system
//! ([`super::rootfs`]), then hostname, loopback (and the container's end of a link to the
//! host), rlimits, identity, capabilities, no_new_privs and seccomp, in the order runc's
//! `linuxStandardInit` uses.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::caps;
use super::config::{ContainerConfig, LINK_INTERFACE};
use super::defaults;
use super::error::{ContainerError, Result};
use super::netif::LinkAddresses;
use super::rootfs::{prepare_rootfs, HostInfo};
use super::sys::{BpfInstruction, Syscall};

fn sys_err(action: &str) -> impl FnOnce(std::io::Error) -> ContainerError + '_ {
    move |e| ContainerError::sys(action, e)
}

/// Set the container up and exec its command. Returns only with the error that stopped it.
pub fn setup_and_exec<S: Syscall>(
    sys: &S,
    cfg: &ContainerConfig,
    host: HostInfo,
    seccomp: Option<&[BpfInstruction]>,
) -> Result<Infallible> {
    let p = &cfg.process;
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
    prepare_rootfs(sys, cfg, host)?;
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
    for limit in &p.rlimits {
        sys.setrlimit(limit).map_err(sys_err("set an rlimit"))?;
    }
    if p.no_new_privileges {
        sys.set_no_new_privs()
            .map_err(sys_err("set no_new_privs"))?;
    }
    // Without no_new_privs the kernel wants CAP_SYS_ADMIN to install a filter: do it now.
    if let (Some(prog), false) = (seccomp, p.no_new_privileges) {
        sys.apply_seccomp(prog)
            .map_err(sys_err("install the seccomp filter"))?;
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
    sys.set_parent_death_signal(libc::SIGKILL)
        .map_err(sys_err("set the parent death signal"))?;
    sys.chdir(&p.cwd).map_err(|e| {
        ContainerError::sys(format!("chdir to the working directory {:?}", p.cwd), e)
    })?;
    let program = resolve_command(sys, &p.args[0], &p.env)?;
    sys.umask(p.umask);
    sys.close_on_exec_from(3)
        .map_err(sys_err("mark descriptors close-on-exec"))?;
    if let (Some(prog), true) = (seccomp, p.no_new_privileges) {
        sys.apply_seccomp(prog)
            .map_err(sys_err("install the seccomp filter"))?;
    }
    let argv = to_cstrings(&p.args)?;
    let envp = to_cstrings(&p.env)?;
    sys.restore_signals()
        .map_err(sys_err("restore the signal mask"))?;
    let path = CString::new(program.as_os_str().as_bytes()).unwrap_or_default();
    let err = sys.execve(&path, &argv, &envp);
    Err(ContainerError::sys(format!("execute {program:?}"), err))
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
