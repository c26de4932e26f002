//! Capability names and numbers (linux/capability.h), and the masks built from them.

use super::error::{ContainerError, Result};

/// Every capability the kernel headers name, indexed by number.
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The highest capability number this table knows.
pub const LAST_KNOWN: u32 = NAMES.len() as u32 - 1;

/// A mask with every known capability.
pub const ALL: u64 = (1u64 << NAMES.len()) - 1;

/// The capability number of `name` (`CAP_CHOWN` or `chown`, any case).
pub fn number(name: &str) -> Result<u32> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES
        .iter()
        .position(|n| *n == full)
        .map(|i| i as u32)
        .ok_or_else(|| ContainerError::invalid("capability", name, "no such capability"))
}

/// The mask of a list of capability names. `ALL` stands for every capability.
pub fn mask_of<S: AsRef<str>>(names: &[S]) -> Result<u64> {
    let mut mask = 0u64;
    for name in names {
        let name = name.as_ref();
        if name.eq_ignore_ascii_case("ALL") {
            mask |= ALL;
        } else {
            mask |= 1u64 << number(name)?;
        }
    }
    Ok(mask)
}

/// The names in a mask, in number order.
#[cfg(test)]
pub fn names_of(mask: u64) -> Vec<&'static str> {
    NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kernel_numbers() {
        assert_eq!(number("CAP_CHOWN").unwrap(), 0);
        assert_eq!(number("sys_admin").unwrap(), 21);
        assert_eq!(number("CAP_CHECKPOINT_RESTORE").unwrap(), 40);
    }

    #[test]
    fn unknown_capability_is_rejected() {
        let err = number("CAP_FLY").unwrap_err();
        assert!(err.is_bad_input());
        assert!(err.to_string().contains("CAP_FLY"));
    }

    #[test]
    fn mask_round_trips_through_names() {
        let mask = mask_of(&["CAP_KILL", "CAP_NET_RAW"]).unwrap();
        assert_eq!(mask, (1 << 5) | (1 << 13));
        assert_eq!(names_of(mask), ["CAP_KILL", "CAP_NET_RAW"]);
        assert_eq!(mask_of(&["all"]).unwrap(), ALL);
    }
}
