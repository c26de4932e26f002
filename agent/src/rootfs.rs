//! A workload's root from a disk: the block device (the read-only image the host packed)
//! mounted read-only at `/run/vmm/<id>/lower`, under an overlay whose upper layer lives on
//! a tmpfs at `/run/vmm/<id>/rw`, so the workload can write and its writes vanish with it.
//! The overlay is mounted at `/run/vmm/<id>/root`, which becomes the config's rootfs.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// Where the agent keeps its workloads' mounts.
pub const RUN_DIR: &str = "/run/vmm";

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("create the directory {path:?}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the disk {device:?} shows {found} bytes, not the {expected} of the image swapped in \
         ({waited:?} after the request)"
    )]
    DiskSize {
        device: PathBuf,
        found: u64,
        expected: u64,
        waited: Duration,
    },
    #[error("drop the cached blocks of {device:?}")]
    FlushDisk {
        device: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mount {source_name} ({fstype}) on {target:?}")]
    Mount {
        source_name: String,
        fstype: String,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The directories of one workload's overlay root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayRoot {
    base: PathBuf,
}

impl OverlayRoot {
    /// The layout for container `id` (already checked by `check_id`: no `/`, `,` or `:`,
    /// so the paths need no escaping in the overlay's option string).
    pub fn new(run_dir: &Path, id: &str) -> Self {
        Self {
            base: run_dir.join(id),
        }
    }

    pub fn lower(&self) -> PathBuf {
        self.base.join("lower")
    }

    pub fn rw(&self) -> PathBuf {
        self.base.join("rw")
    }

    /// The merged tree: the workload's root.
    pub fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    /// The overlay's mount options.
    pub fn options(&self) -> String {
        let rw = self.rw();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower().display(),
            rw.join("upper").display(),
            rw.join("work").display()
        )
    }

    /// Mounts `device` (a file system of type `fstype`) read-only under a writable
    /// overlay. On failure, what was mounted already is undone.
    pub fn mount(&self, device: &Path, fstype: &str) -> Result<(), RootError> {
        let result = self.try_mount(device, fstype);
        if result.is_err() {
            self.unmount();
        }
        result
    }

    fn try_mount(&self, device: &Path, fstype: &str) -> Result<(), RootError> {
        for dir in [self.lower(), self.rw(), self.root()] {
            mkdir(&dir)?;
        }
        let device_name = device.display().to_string();
        mount(&device_name, &self.lower(), fstype, libc::MS_RDONLY, None)?;
        mount("tmpfs", &self.rw(), "tmpfs", 0, Some("mode=0755"))?;
        for dir in [self.rw().join("upper"), self.rw().join("work")] {
            mkdir(&dir)?;
        }
        mount("overlay", &self.root(), "overlay", 0, Some(&self.options()))
    }

    /// Detaches the overlay, the tmpfs and the disk (lazily: a process that lingers in
    /// them does not stop the cleanup), then removes the now empty directories. Only
    /// empty directories are removed, so a mount that failed to go away keeps its files.
    pub fn unmount(&self) {
        for target in [self.root(), self.rw(), self.lower()] {
            // EINVAL: not mounted (a failed or partial setup); nothing to undo.
            let _ = sys::unmount_detach(&target);
        }
        for dir in [self.root(), self.rw(), self.lower(), self.base.clone()] {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn mkdir(path: &Path) -> Result<(), RootError> {
    std::fs::create_dir_all(path).map_err(|source| RootError::Mkdir {
        path: path.to_owned(),
        source,
    })
}

fn mount(
    source_name: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), RootError> {
    sys::mount(source_name, target, fstype, flags, data).map_err(|source| RootError::Mount {
        source_name: source_name.to_owned(),
        fstype: fstype.to_owned(),
        target: target.to_owned(),
        source,
    })
}

/// How long a disk swapped in by the host may take to show its new size: the host swaps
/// the file before it asks, and the guest's driver reads the new capacity on the
/// configuration-change interrupt, in a work item that may still be queued.
const SWAP_SETTLE: Duration = Duration::from_secs(2);

/// Waits until `device` (a whole disk, `/dev/vda`) shows `bytes`, the size of the image
/// the host swapped in for a placeholder, then drops the blocks the kernel cached of the
/// placeholder (the partition scan at boot read its first page), so that the mount reads
/// the new image.
pub fn wait_for_swapped_disk(device: &Path, bytes: u64) -> Result<(), RootError> {
    let name = device.file_name().unwrap_or_default();
    let size_file = Path::new("/sys/class/block").join(name).join("size");
    wait_for_size(&size_file, device, bytes, SWAP_SETTLE)?;
    flush_cached_blocks(device)
}

/// Polls `size_file` (sysfs: 512-byte sectors) until it shows `bytes`, for at most `limit`.
fn wait_for_size(
    size_file: &Path,
    device: &Path,
    bytes: u64,
    limit: Duration,
) -> Result<(), RootError> {
    let started = Instant::now();
    loop {
        let found = std::fs::read_to_string(size_file)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map_or(0, |sectors| sectors.saturating_mul(512));
        if found == bytes {
            return Ok(());
        }
        if started.elapsed() >= limit {
            return Err(RootError::DiskSize {
                device: device.to_owned(),
                found,
                expected: bytes,
                waited: started.elapsed(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn flush_cached_blocks(device: &Path) -> Result<(), RootError> {
    let failed = |source| RootError::FlushDisk {
        device: device.to_owned(),
        source,
    };
    let fd = sys::open(device, libc::O_RDONLY | libc::O_CLOEXEC).map_err(failed)?;
    sys::flush_block_device(&fd).map_err(failed)
}

/// Detaches every mount under [`RUN_DIR`] still in the mount table (a shutdown's last
/// sweep), deepest first.
pub fn unmount_all_under_run_dir() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets = mounts_under(&mountinfo, Path::new(RUN_DIR));
    targets.sort_by_key(|t| std::cmp::Reverse(t.components().count()));
    for target in targets {
        let _ = sys::unmount_detach(&target);
    }
}

/// The mount points under `dir` in `/proc/self/mountinfo` text.
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_name_the_workloads_layers() {
        let root = OverlayRoot::new(Path::new(RUN_DIR), "web-1");
        assert_eq!(
            root.options(),
            "lowerdir=/run/vmm/web-1/lower,upperdir=/run/vmm/web-1/rw/upper,\
             workdir=/run/vmm/web-1/rw/work"
        );
        assert_eq!(root.root(), Path::new("/run/vmm/web-1/root"));
    }

    #[test]
    fn a_failed_mount_names_device_and_mount_point_and_leaves_no_directories() {
        let run_dir = std::env::temp_dir().join(format!("vmm-agent-run-{}", std::process::id()));
        let root = OverlayRoot::new(&run_dir, "c1");
        let err = root
            .mount(Path::new("/nonexistent/vda"), "ext4")
            .unwrap_err();
        let text = edge::error_chain(&err);
        assert!(text.contains("/nonexistent/vda"), "{text}");
        assert!(text.contains("lower"), "{text}");
        assert!(text.contains("os error"), "{text}");
        assert!(!run_dir.join("c1").exists());
        let _ = std::fs::remove_dir(&run_dir);
    }

    #[test]
    fn a_swapped_disk_is_awaited_until_its_size_file_shows_the_image() {
        let dir = std::env::temp_dir().join(format!("vmm-agent-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let size_file = dir.join("size");
        std::fs::write(&size_file, "8\n").unwrap();
        let grower = {
            let size_file = size_file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                std::fs::write(size_file, "2048\n").unwrap();
            })
        };
        let vda = Path::new("/dev/vda");
        let waited = Instant::now();
        wait_for_size(&size_file, vda, 2048 * 512, Duration::from_secs(5)).unwrap();
        assert!(waited.elapsed() >= Duration::from_millis(25));
        grower.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_swapped_disk_that_keeps_its_old_size_is_an_error_naming_both_sizes() {
        let dir = std::env::temp_dir().join(format!("vmm-agent-stuck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let size_file = dir.join("size");
        std::fs::write(&size_file, "8\n").unwrap();
        let err = wait_for_size(
            &size_file,
            Path::new("/dev/vda"),
            1 << 20,
            Duration::from_millis(20),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("4096 bytes") && text.contains("1048576"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_mounts_below_the_run_dir_are_swept() {
        let mountinfo = "\
22 1 0:21 / /run rw - tmpfs tmpfs rw
90 22 8:0 / /run/vmm/c1/lower ro - ext4 /dev/vda ro
91 22 0:50 / /run/vmm/c1/root rw - overlay overlay rw
92 22 0:51 / /run/vmmx rw - tmpfs tmpfs rw";
        assert_eq!(
            mounts_under(mountinfo, Path::new(RUN_DIR)),
            [
                PathBuf::from("/run/vmm/c1/lower"),
                PathBuf::from("/run/vmm/c1/root")
            ]
        );
    }
}
