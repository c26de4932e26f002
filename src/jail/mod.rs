//! `vmm --jail DIR --uid U --gid G`: the VMM in a jail, after Firecracker's jailer.
//!
//! The VMM checks the jail's options and makes the VM's cgroup (so that bad input ends it
//! before anything is jailed), blocks the signals it forwards, unshares a PID namespace and
//! forks. The child, PID 1 of that namespace, joins the cgroup and
//! the network namespace of `--netns`, unshares mount and IPC namespaces, builds the
//! jail's root and pivots into it ([`root`]), sets its rlimits and drops to U:G without
//! capabilities ([`ids`]), then runs the VM in-process with the options rewritten to the
//! jail's paths; its seccomp filters come later, per thread, as without a jail. The parent
//! stays outside: it forwards signals, removes the cgroup and exits with the child's
//! status. [`phases`] times each step.
//!
//! In-process rather than a re-exec: the static `vmm` binary is running already, so
//! nothing executable has to be in the jail (the jailer copies Firecracker's binary in),
//! and the VM's options need no second parse. Call it while the process has one thread.

pub mod args;
mod cgroup;
mod error;
mod ids;
pub mod phases;
mod root;

use std::path::PathBuf;
use std::process::ExitCode;

use runtime::config::Rlimit;
use runtime::launch::{self, SignalMask};
use runtime::sys::linux::LinuxSyscall;
use runtime::sys::Syscall;

pub use args::JailArgs;
use cgroup::{CgroupSetting, VmCgroup};
pub use error::JailError;
use root::RootPlan;

use crate::vm::VmConfig;

/// A checked `--jail` and its options.
#[derive(Debug, Clone)]
pub struct JailSpec {
    pub dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub netns: Option<PathBuf>,
    pub cgroup: Vec<CgroupSetting>,
    pub rlimits: Vec<Rlimit>,
}

impl JailSpec {
    /// The jail the options ask for (`None` without `--jail`), or the first mistake in them.
    pub fn from_args(args: &JailArgs) -> Result<Option<Self>, JailError> {
        let Some(dir) = &args.jail else {
            return match args.given_without_dir() {
                Some(option) => Err(JailError::NeedsJail { option }),
                None => Ok(None),
            };
        };
        let (Some(uid), Some(gid)) = (&args.uid, &args.gid) else {
            return Err(JailError::NeedsIds);
        };
        let uid = ids::parse_id("--uid", "user", uid)?;
        let gid = ids::parse_id("--gid", "group", gid)?;
        let meta = std::fs::metadata(dir).map_err(|source| JailError::JailDir {
            path: dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(JailError::NotADirectory { path: dir.clone() });
        }
        let cgroup = args
            .cgroup
            .iter()
            .map(|s| CgroupSetting::parse(s))
            .collect::<Result<_, _>>()?;
        Ok(Some(Self {
            dir: std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
            uid,
            gid,
            netns: args.netns.clone(),
            cgroup,
            rlimits: ids::parse_rlimits(&args.resource_limit)?,
        }))
    }
}

/// Which side of the fork returned from [`enter`].
pub enum Entered {
    /// The VMM outside the jail, after the jailed one ended: exit with this status.
    Parent(ExitCode),
    /// The jailed VMM: run this VM (its paths are the jail's).
    Jailed(Box<VmConfig>),
}

/// Makes the jail of `spec` for `config` and forks the VMM into it; see the module's text.
pub fn enter(spec: &JailSpec, config: &VmConfig) -> Result<Entered, JailError> {
    phases::start();
    let cwd = std::env::current_dir().map_err(JailError::setup("read the working directory"))?;
    let (plan, jailed) = root::plan(&spec.dir, config, &cwd)?;
    plan.check_host_files()?;
    let cgroup = VmCgroup::create(&spec.cgroup, &format!("vmm-jail-{}", std::process::id()))?;
    // Read here: the jail has no /proc.
    let last_cap = ids::last_capability();
    let mask = SignalMask::block()?;
    let sys = LinuxSyscall::new(mask.saved);
    phases::mark("plan and signal mask");
    sys.unshare(libc::CLONE_NEWPID)
        .map_err(JailError::setup("unshare a PID namespace"))?;
    phases::mark("unshare PID");
    // SAFETY: the process has one thread (the caller's promise), so the child's copy of
    // it is whole: no lock is held by a thread that does not exist there.
    match unsafe { libc::fork() } {
        -1 => Err(JailError::setup("fork into the new PID namespace")(
            std::io::Error::last_os_error(),
        )),
        0 => {
            // The parent removes the cgroup; this copy only names its directories.
            let dirs = cgroup
                .as_ref()
                .map(|c| c.dirs().to_vec())
                .unwrap_or_default();
            std::mem::forget(cgroup);
            phases::mark("fork (child)");
            drop(mask);
            jail_self(&sys, spec, &plan, &dirs, last_cap)?;
            phases::mark("jailed");
            Ok(Entered::Jailed(Box::new(jailed)))
        }
        child => {
            let status = launch::wait_forwarding(child, &mask.set)?;
            phases::mark("child reaped (parent)");
            drop(cgroup);
            let outcome = launch::Outcome::from_wait_status(status, false);
            Ok(Entered::Parent(ExitCode::from(outcome.status)))
        }
    }
}

/// The child's side: from the host's namespaces into the jail, as U:G.
fn jail_self<S: Syscall>(
    sys: &S,
    spec: &JailSpec,
    plan: &RootPlan,
    cgroup_dirs: &[PathBuf],
    last_cap: u32,
) -> Result<(), JailError> {
    sys.set_parent_death_signal(libc::SIGKILL)
        .map_err(JailError::setup("set the parent-death signal"))?;
    VmCgroup::join(cgroup_dirs)?;
    if let Some(netns) = &spec.netns {
        sys.setns(netns, libc::CLONE_NEWNET)
            .map_err(|source| JailError::Netns {
                path: netns.clone(),
                source,
            })?;
    }
    sys.unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC)
        .map_err(JailError::setup("unshare mount and IPC namespaces"))?;
    phases::mark("unshare mount and IPC");
    root::build(sys, plan, spec.uid, spec.gid)?;
    phases::mark("root built and pivoted");
    ids::apply_rlimits(sys, &spec.rlimits)?;
    ids::drop_privileges(sys, spec.uid, spec.gid, last_cap)?;
    phases::mark("privileges dropped");
    root::check_access(plan, spec.uid, spec.gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(jail: Option<&str>, uid: Option<&str>, gid: Option<&str>) -> JailArgs {
        JailArgs {
            jail: jail.map(PathBuf::from),
            uid: uid.map(String::from),
            gid: gid.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn no_jail_options_mean_no_jail() {
        assert!(JailSpec::from_args(&JailArgs::default()).unwrap().is_none());
    }

    #[test]
    fn jail_without_uid_or_gid_is_refused() {
        for a in [
            args(Some("/tmp"), None, Some("1")),
            args(Some("/tmp"), Some("1"), None),
        ] {
            let err = JailSpec::from_args(&a).unwrap_err();
            assert!(matches!(err, JailError::NeedsIds), "{err}");
        }
    }

    #[test]
    fn uid_without_jail_is_refused() {
        let err = JailSpec::from_args(&args(None, Some("1"), None)).unwrap_err();
        assert_eq!(err.to_string(), "--uid needs --jail");
    }

    #[test]
    fn jail_that_is_a_file_is_refused() {
        let file = std::env::temp_dir().join(format!("vmm-jail-file-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let err = JailSpec::from_args(&args(file.to_str(), Some("1"), Some("1"))).unwrap_err();
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(err, JailError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn a_checked_jail_has_numeric_ids_and_the_default_open_files_limit() {
        let spec = JailSpec::from_args(&args(Some("/tmp"), Some("65534"), Some("65533")))
            .unwrap()
            .unwrap();
        assert_eq!((spec.uid, spec.gid), (65534, 65533));
        assert_eq!(spec.rlimits[0].soft, ids::DEFAULT_NO_FILE);
    }
}
