//! A TAP network interface opened through `/dev/net/tun`, the host side of virtio-net.
//!
//! The tap is opened with `IFF_VNET_HDR`, so every frame read from or written to it carries
//! the 12-byte `virtio_net_hdr_v1` in front, exactly as the guest's driver lays out its
//! buffers. No offloads are enabled (`TUNSETOFFLOAD 0`): the kernel hands us fully
//! checksummed, unsegmented frames, matching a device that offers no `GUEST_*` features.
//!
//! Opening does not configure the interface: bringing it up and giving it an address (or
//! a bridge) is left to the user, e.g. `ip link set NAME up`, as Firecracker does.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use vmm_sys_util::ioctl::{ioctl_with_ref, ioctl_with_val};

/// Size of the header in front of every frame on the tap: `virtio_net_hdr_v1`.
pub const VNET_HDR_LEN: usize = 12;

const TUN_PATH: &str = "/dev/net/tun";

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{TUN_PATH} is missing (is the tun module loaded?)")]
    TunMissing(#[source] io::Error),
    #[error("cannot open {TUN_PATH}")]
    OpenTun(#[source] io::Error),
    #[error("creating/opening tap {name} needs CAP_NET_ADMIN")]
    Permission {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("tap {name} is already attached to another process")]
    Busy {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot attach to tap {name} (is it a tun device, or set up with other flags?)")]
    SetIff {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot configure tap {name}: {what}")]
    Configure {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// TUNSETIFF's flags: a TAP device, no packet-information prefix, a virtio-net header on
/// every frame. `ifr_flags` is a C short; libc spells the flags as ints.
#[allow(clippy::cast_possible_truncation)] // 0x0002 | 0x1000 | 0x4000 fits an i16
const TAP_FLAGS: i16 = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;

/// An open, non-blocking TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to the tap `name`, creating it when it does not exist (creating needs
    /// CAP_NET_ADMIN; attaching to a persistent tap owned by this user does not).
    pub fn open_or_create(name: &str) -> Result<Tap, TapError> {
        validate_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => TapError::TunMissing(e),
                _ => TapError::OpenTun(e),
            })?;

        let mut ifr = ifreq_for(name);
        ifr.ifr_ifru.ifru_flags = TAP_FLAGS;
        // SAFETY: `file` is an open tun fd and `ifr` a valid, initialised ifreq; the kernel
        // reads it and writes back the interface name within its IFNAMSIZ bytes.
        let ret = unsafe { ioctl_with_ref(&file, libc::TUNSETIFF as _, &ifr) };
        if ret < 0 {
            let source = io::Error::last_os_error();
            let name = name.to_string();
            return Err(match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::Permission { name, source },
                Some(libc::EBUSY) => TapError::Busy { name, source },
                _ => TapError::SetIff { name, source },
            });
        }
        let name = name_from(&ifr);

        // VNET_HDR_LEN is 12.
        #[allow(clippy::cast_possible_truncation)]
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one c_int through the pointer, which is valid.
        let ret = unsafe { ioctl_with_ref(&file, libc::TUNSETVNETHDRSZ as _, &hdr_len) };
        check(ret, &name, "TUNSETVNETHDRSZ 12")?;
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        let ret = unsafe { ioctl_with_val(&file, libc::TUNSETOFFLOAD as _, 0) };
        check(ret, &name, "TUNSETOFFLOAD 0")?;

        Ok(Tap { file, name })
    }

    /// The interface name as the kernel reports it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Checks what the kernel's `dev_valid_name` checks, so the user gets a precise error
/// instead of a bare EINVAL from TUNSETIFF.
fn validate_name(name: &str) -> Result<(), TapError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() >= libc::IFNAMSIZ {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is . or ..")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        Some("it contains '/', ':', NUL or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TapError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is a plain C struct (arrays and a union of integers/sockaddrs) for
    // which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // `validate_name` guarantees the name fits with its NUL terminator.
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr
}

fn name_from(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check(ret: libc::c_int, name: &str, what: &'static str) -> Result<(), TapError> {
    if ret < 0 {
        return Err(TapError::Configure {
            name: name.to_string(),
            what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_name_longer_than_15_bytes_is_rejected() {
        let err = Tap::open_or_create("a-very-long-tap-name").unwrap_err();
        assert!(matches!(err, TapError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn tap_name_with_slash_or_empty_is_rejected() {
        for name in ["", "a/b", "..", "tap 0"] {
            let err = Tap::open_or_create(name).unwrap_err();
            assert!(
                matches!(err, TapError::InvalidName { .. }),
                "{name:?}: {err}"
            );
        }
    }

    #[test]
    fn tap_open_reports_a_clear_error_or_succeeds() {
        // Without CAP_NET_ADMIN (the usual test setup) this must be the permission error;
        // with it, a tap is created and configured.
        match Tap::open_or_create("vmmtest%d") {
            Ok(tap) => assert!(tap.name().starts_with("vmmtest")),
            Err(e) => assert!(
                matches!(
                    e,
                    TapError::Permission { .. } | TapError::TunMissing(_) | TapError::OpenTun(_)
                ),
                "{e}"
            ),
        }
    }
}
