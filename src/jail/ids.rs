//! Who the jailed VMM is: its numeric user and group, its resource limits, and the last
//! step of the jail, dropping to that user with no capabilities and no_new_privs (in the
//! order of the container runtime's `exec_workload`, whose system calls it uses).

use runtime::config::{CapabilitySets, Rlimit};
use runtime::sys::Syscall;

use super::error::JailError;

/// Firecracker's jailer's default limit on open files.
pub const DEFAULT_NO_FILE: u64 = 2048;

/// A numeric user or group id given as `option`.
pub fn parse_id(option: &'static str, what: &'static str, value: &str) -> Result<u32, JailError> {
    value.trim().parse().map_err(|_| JailError::NotANumber {
        option,
        value: value.to_owned(),
        what,
    })
}

/// The rlimits of `--resource-limit` values (`no-file=N`, `fsize=BYTES`), with the open
/// files limited to [`DEFAULT_NO_FILE`] unless one says otherwise.
pub fn parse_rlimits(values: &[String]) -> Result<Vec<Rlimit>, JailError> {
    let mut no_file = DEFAULT_NO_FILE;
    let mut fsize = None;
    for value in values {
        let bad = |reason| JailError::ResourceLimit {
            value: value.clone(),
            reason,
        };
        let (name, n) = value
            .split_once('=')
            .ok_or_else(|| bad("not NAME=VALUE (no-file=N or fsize=BYTES)"))?;
        let n: u64 = n
            .trim()
            .parse()
            .map_err(|_| bad("the value is not a number"))?;
        match name.trim() {
            "no-file" if n == 0 => return Err(bad("no-file=0 leaves the VMM no descriptor")),
            "no-file" => no_file = n,
            "fsize" => fsize = Some(n),
            _ => return Err(bad("unknown limit (no-file or fsize)")),
        }
    }
    let limit = |resource: u32, n: u64| Rlimit {
        resource,
        soft: n,
        hard: n,
    };
    let mut limits = vec![limit(libc::RLIMIT_NOFILE, no_file)];
    limits.extend(fsize.map(|n| limit(libc::RLIMIT_FSIZE, n)));
    Ok(limits)
}

/// Sets the resource limits (while still privileged: raising a hard limit needs it).
pub fn apply_rlimits<S: Syscall>(sys: &S, limits: &[Rlimit]) -> Result<(), JailError> {
    for limit in limits {
        sys.setrlimit(limit)
            .map_err(JailError::setup(format!("set rlimit {}", limit.resource)))?;
    }
    Ok(())
}

/// The highest capability number the running kernel knows, from
/// /proc/sys/kernel/cap_last_cap (read before the jail hides /proc); 63, the most a
/// capability set holds, when it cannot be read.
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(63)
}

/// Becomes `uid`:`gid` with no supplementary groups, every capability set empty (the
/// bounding set and the ambient set too) and no_new_privs, so that nothing it executes
/// could regain a privilege; the parent-death signal, which the change of user clears, is
/// set again.
pub fn drop_privileges<S: Syscall>(
    sys: &S,
    uid: u32,
    gid: u32,
    last_cap: u32,
) -> Result<(), JailError> {
    // The bounding set first: dropping from it takes CAP_SETPCAP, gone after set_ids. Up to
    // the kernel's last capability, even past those this build knows, and no further: a
    // capability the kernel does not know is in no set (each drop past it was a prctl
    // for nothing, 23 of them on a kernel that knows 41).
    for cap in 0..=last_cap {
        sys.drop_bounding_cap(cap)
            .map_err(JailError::setup("drop a capability from the bounding set"))?;
    }
    sys.set_keep_caps(false)
        .map_err(JailError::setup("clear keepcaps"))?;
    sys.setgroups(&[])
        .map_err(JailError::setup("clear the supplementary groups"))?;
    sys.set_ids(uid, gid)
        .map_err(JailError::setup(format!("become uid {uid} gid {gid}")))?;
    // Leaving uid 0 has emptied the permitted and effective sets; this empties the
    // inheritable and ambient ones too (and every set when uid is 0).
    sys.set_capabilities(&CapabilitySets::default())
        .map_err(JailError::setup("clear the capability sets"))?;
    sys.set_no_new_privs()
        .map_err(JailError::setup("set no_new_privs"))?;
    sys.set_parent_death_signal(libc::SIGKILL)
        .map_err(JailError::setup("set the parent-death signal"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::sys::fake::FakeSyscall;

    #[test]
    fn the_bounding_set_is_dropped_up_to_the_kernels_last_capability_only() {
        let sys = FakeSyscall::default();
        drop_privileges(&sys, 65534, 65534, 45).unwrap();
        assert_eq!(sys.count("capbset_drop "), 46);
        assert_eq!(sys.count("capbset_drop 45"), 1);
        assert_eq!(sys.count("capbset_drop 46"), 0);
    }

    #[test]
    fn the_kernels_last_capability_is_read() {
        let last = last_capability();
        // Linux has known CAP_AUDIT_READ (37) since 3.16.
        assert!((37..=63).contains(&last), "{last}");
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ids_must_be_numbers() {
        assert_eq!(parse_id("--uid", "user", "65534").unwrap(), 65534);
        let err = parse_id("--uid", "user", "nobody").unwrap_err();
        assert!(err.is_bad_input());
        assert_eq!(
            err.to_string(),
            "--uid \"nobody\" is not a number (a numeric user id)"
        );
        assert!(parse_id("--gid", "group", "-1").is_err());
    }

    #[test]
    fn open_files_default_to_the_jailers_2048_and_file_size_is_inherited() {
        let limits = parse_rlimits(&[]).unwrap();
        assert_eq!(limits.len(), 1);
        assert_eq!(limits[0].resource, libc::RLIMIT_NOFILE);
        assert_eq!((limits[0].soft, limits[0].hard), (2048, 2048));
    }

    #[test]
    fn resource_limits_set_open_files_and_file_size() {
        let limits = parse_rlimits(&strings(&["fsize=1048576", "no-file=64"])).unwrap();
        let of = |r| limits.iter().find(|l| l.resource == r).unwrap().soft;
        assert_eq!(of(libc::RLIMIT_NOFILE), 64);
        assert_eq!(of(libc::RLIMIT_FSIZE), 1_048_576);
    }

    #[test]
    fn unknown_or_malformed_resource_limits_are_refused() {
        for bad in ["cpu=1", "fsize", "fsize=big", "no-file=0"] {
            let err = parse_rlimits(&strings(&[bad])).unwrap_err();
            assert!(err.is_bad_input(), "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
