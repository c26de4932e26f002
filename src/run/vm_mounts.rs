//! A bundle's bind mounts of host paths at the VM levels, where the guest shares no file
//! system with the host. As Kata does where it has no shared file system (Firecracker):
//! - a bind of a host *file* (what Podman and Docker add: /etc/hosts, /etc/hostname,
//!   /etc/resolv.conf, /run/.containerenv) is copied into the guest when the workload is
//!   created, and the mount binds the copy;
//! - a bind of a directory at /dev/shm (the engine's tmpfs for the container's shared
//!   memory, which cannot be shared across the VM boundary anyway) becomes a tmpfs of the
//!   guest's, of the same size;
//! - any other bind of a host directory is refused: its files would have to be copied,
//!   and writes to them would never reach the host.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use agent_protocol::protocol::{FileCopy, MAX_COPIED_BYTES};
use devices::user_file::{self, Allowed};
use runtime::config::{ContainerConfig, MountSpec};

use super::error::RunError;

/// The guest's /dev/shm when the host's size cannot be read: Podman's and Docker's default.
const DEFAULT_SHM_BYTES: u64 = 64 << 20;

/// Makes `config`'s mounts fit a VM (see the module's doc), or says why they cannot.
pub fn adapt(config: &mut ContainerConfig) -> Result<(), RunError> {
    let mut copied = 0;
    for mount in config.mounts.iter_mut().filter(|m| host_bind(m)) {
        let meta = std::fs::metadata(&mount.source).map_err(|e| {
            RunError::BadInput(format!(
                "the bundle binds the host path {:?} at {:?}: {e}",
                mount.source, mount.destination
            ))
        })?;
        if meta.is_file() {
            copied += meta.len();
            if copied > MAX_COPIED_BYTES as u64 {
                return Err(too_large(mount));
            }
        } else if meta.is_dir() && mount.destination == Path::new("/dev/shm") {
            let size = tmpfs_size(&mount.source).unwrap_or(DEFAULT_SHM_BYTES);
            *mount = guest_shm(mount, size);
        } else {
            return Err(RunError::BadInput(format!(
                "the bundle binds the host path {:?} into the workload, which cannot reach \
                 inside a VM (host files are copied in, and a directory only at /dev/shm, \
                 which becomes the guest's own tmpfs): remove the mount or use --isolation \
                 container",
                mount.source
            )));
        }
    }
    Ok(())
}

/// The copies of the host files that `config`'s bind mounts name (after [`adapt`]), for
/// the agent's `create`.
pub fn copies(config: &ContainerConfig) -> Result<Vec<FileCopy>, RunError> {
    let mut files = Vec::new();
    let mut total = 0;
    for (index, mount) in config.mounts.iter().enumerate() {
        if !host_bind(mount) {
            continue;
        }
        let file = read_file(mount, MAX_COPIED_BYTES - total)?;
        total += file.content.len();
        files.push(FileCopy {
            mount: index,
            ..file
        });
    }
    Ok(files)
}

/// A bind mount of a host path (the baseline's own /proc, /sys and /dev binds are made by
/// the agent from the guest's, so they do not count).
pub fn host_bind(m: &MountSpec) -> bool {
    m.is_bind()
        && !runtime::options::BASELINE_BINDS
            .iter()
            .any(|b| m.source.as_os_str() == *b && m.destination.as_os_str() == *b)
}

/// The file a mount names, at most `room` bytes of it (more is refused).
fn read_file(mount: &MountSpec, room: usize) -> Result<FileCopy, RunError> {
    let failed = |e: std::io::Error| {
        RunError::BadInput(format!(
            "copy the host file {:?} (bound at {:?}) into the VM: {e}",
            mount.source, mount.destination
        ))
    };
    // The file may have been replaced since `adapt` looked: a plain open of a FIFO would
    // block for ever.
    let file = user_file::open(&mount.source, false, Allowed::RegularFile)
        .map_err(|e| failed(std::io::Error::other(e)))?;
    let meta = file.metadata().map_err(failed)?;
    let mut content = Vec::new();
    file.take(room as u64 + 1)
        .read_to_end(&mut content)
        .map_err(failed)?;
    if content.len() > room {
        return Err(too_large(mount));
    }
    Ok(FileCopy {
        mount: 0,
        mode: meta.permissions().mode() & 0o7777,
        content,
    })
}

fn too_large(mount: &MountSpec) -> RunError {
    RunError::BadInput(format!(
        "the bundle binds host files of more than {} KiB in all (the last: {:?}), which are \
         copied into the VM: bind fewer or smaller files, or use --isolation container",
        MAX_COPIED_BYTES >> 10,
        mount.source
    ))
}

/// The guest's own tmpfs in place of a bind of the host's /dev/shm directory.
fn guest_shm(bind: &MountSpec, size: u64) -> MountSpec {
    MountSpec {
        destination: bind.destination.clone(),
        fstype: "tmpfs".into(),
        source: "shm".into(),
        flags: bind.flags & !(libc::MS_BIND | libc::MS_REC),
        propagation: bind.propagation,
        data: format!("mode=1777,size={size}"),
    }
}

/// The size of the file system at `path` in bytes.
fn tmpfs_size(path: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs only writes the struct it is given; zeroed is a valid value of it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_blocks as u64 * st.f_frsize as u64).filter(|&size| size > 0)
}

#[cfg(test)]
#[path = "vm_mounts/tests.rs"]
mod tests;
