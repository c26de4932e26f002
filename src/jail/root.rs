//! The jail's root: what it holds ([`plan`], pure, with the VM's options rewritten to the
//! paths inside) and how it is made ([`build`], in the jailed VMM's private mount
//! namespace). The root is a tmpfs mounted on the jail directory, so the host sees that
//! directory unchanged and nothing is left to remove when the namespace goes: each host
//! file is bound onto an empty file at `/NAME`, the vsock socket's directory onto
//! `/vsock`, and the device nodes are made afresh (as the jailer's `mknod`) and given to
//! the jail's user. The tmpfs is then made read-only and becomes the root by pivot_root
//! (or, on a host whose root is the initial ramfs, by a move over `/` and a chroot).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use runtime::sys::Syscall;

use super::error::JailError;
use crate::vm::VmConfig;

/// Where the vsock socket's directory appears in the jail.
pub const VSOCK_DIR: &str = "vsock";
/// The device nodes every jail has, under /dev.
const ALWAYS_DEVICES: [&str; 2] = ["kvm", "urandom"];
/// The TAP clone device, made only for a VM with a network interface.
const TUN_DEVICE: &str = "net/tun";

/// A host file the VM opens, and its name in the jail's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBind {
    /// What it is, for messages: "kernel image", "disk image".
    pub what: &'static str,
    pub host: PathBuf,
    /// `/NAME` in the jail.
    pub name: String,
    /// The VM writes it (a disk that is not read-only).
    pub writable: bool,
    /// A disk: it may be a block device, so its mount keeps device access.
    pub disk: bool,
}

/// What the jail's root holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPlan {
    /// The jail directory, where the root is mounted.
    pub dir: PathBuf,
    pub files: Vec<FileBind>,
    /// The host directory of the vsock socket, bound on `/vsock`.
    pub vsock_dir: Option<PathBuf>,
    /// Device nodes under /dev, copied from the host's: "kvm", "net/tun".
    pub devices: Vec<&'static str>,
}

/// What the root of a jail for `config` holds, and `config` with its paths rewritten to
/// the jail's. Relative host paths are taken from `cwd`.
pub fn plan(dir: &Path, config: &VmConfig, cwd: &Path) -> Result<(RootPlan, VmConfig), JailError> {
    let mut plan = RootPlan {
        dir: dir.to_owned(),
        files: Vec::new(),
        vsock_dir: None,
        devices: ALWAYS_DEVICES.to_vec(),
    };
    let mut jailed = config.clone();
    jailed.kernel = plan.add(cwd, "kernel image", &config.kernel, false, false);
    if let Some(initrd) = &config.initrd {
        jailed.initrd = Some(plan.add(cwd, "initrd", initrd, false, false));
    }
    if let (Some(host), Some(inside)) = (&config.devices.rootfs, &mut jailed.devices.rootfs) {
        inside.path = plan.add(cwd, "root disk image", &host.path, !host.read_only, true);
    }
    for (host, inside) in config.devices.disks.iter().zip(&mut jailed.devices.disks) {
        inside.path = plan.add(cwd, "disk image", &host.path, !host.read_only, true);
    }
    if let Some(vsock) = &mut jailed.devices.vsock {
        let socket = cwd.join(&vsock.uds_path);
        let (Some(parent), Some(name)) = (socket.parent(), socket.file_name()) else {
            return Err(JailError::VsockDirectory { path: socket });
        };
        if parent == Path::new("/") {
            return Err(JailError::VsockDirectory { path: socket });
        }
        vsock.uds_path = Path::new("/").join(VSOCK_DIR).join(name);
        plan.vsock_dir = Some(parent.to_owned());
    }
    if !config.devices.nets.is_empty() {
        plan.devices.push(TUN_DEVICE);
    }
    Ok((plan, jailed))
}

impl RootPlan {
    /// Gives the host file a name of its own in the root (its file name, numbered when
    /// taken) and returns its path in the jail.
    fn add(
        &mut self,
        cwd: &Path,
        what: &'static str,
        host: &Path,
        writable: bool,
        disk: bool,
    ) -> PathBuf {
        let base = host
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "file".into());
        let taken = |name: &str| {
            name == "dev" || name == VSOCK_DIR || self.files.iter().any(|f| f.name == name)
        };
        let mut name = base.clone();
        let mut n = 2;
        while taken(&name) {
            name = format!("{n}-{base}");
            n += 1;
        }
        self.files.push(FileBind {
            what,
            host: cwd.join(host),
            name: name.clone(),
            writable,
            disk,
        });
        Path::new("/").join(name)
    }

    /// Checks, before anything is made, that each host file is there and is not a
    /// directory (the VM's own checks of what it opens follow, inside the jail).
    pub fn check_host_files(&self) -> Result<(), JailError> {
        for f in &self.files {
            let meta = std::fs::metadata(&f.host).map_err(|source| JailError::HostFile {
                what: f.what,
                path: f.host.clone(),
                source,
            })?;
            if meta.is_dir() {
                return Err(JailError::HostFileIsDirectory {
                    what: f.what,
                    path: f.host.clone(),
                });
            }
        }
        if let Some(dir) = &self.vsock_dir {
            let meta = std::fs::metadata(dir).map_err(|source| JailError::HostFile {
                what: "vsock socket directory",
                path: dir.clone(),
                source,
            })?;
            if !meta.is_dir() {
                return Err(JailError::NotADirectory { path: dir.clone() });
            }
        }
        Ok(())
    }
}

/// Makes the root of `plan` in this process's (new, private) mount namespace and switches
/// into it; device nodes belong to `uid`:`gid`.
pub fn build<S: Syscall>(sys: &S, plan: &RootPlan, uid: u32, gid: u32) -> Result<(), JailError> {
    let dir = plan.dir.as_path();
    // Nothing mounted from here on may reach the host's mount namespace.
    sys.mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(JailError::setup("make / private"))?;
    sys.mount(
        Some(Path::new("tmpfs")),
        dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=755,size=64k"),
    )
    .map_err(JailError::setup(format!("mount a tmpfs on {dir:?}")))?;
    for f in &plan.files {
        bind_file(sys, dir, f)?;
    }
    if let Some(host) = &plan.vsock_dir {
        let target = dir.join(VSOCK_DIR);
        sys.mkdir_all(&target)
            .map_err(JailError::setup("create /vsock"))?;
        bind(
            sys,
            host,
            &target,
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        )?;
    }
    for name in &plan.devices {
        make_device(sys, dir, name, uid, gid)?;
    }
    sys.mount(
        None,
        dir,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
        None,
    )
    .map_err(JailError::setup("make the jail's root read-only"))?;
    super::phases::mark("root built");
    enter_root(sys, dir, || {
        std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
    })
}

/// Makes `dir` the root: pivot_root, and the old root detached. `mountinfo` is read only
/// when pivot_root refuses with EINVAL, as it does on a host whose `/` is the initial
/// ramfs (the nested tier's outer guest boots from an initramfs): then the jail's root is
/// moved over `/` and chrooted into (runc's msMoveRoot). The old root stays under it, out
/// of reach: getting back out of a chroot takes CAP_SYS_CHROOT, which the jailed VMM drops
/// next. (Reading mountinfo every time cost ~0.1 ms: the host's mount table, copied into
/// the new namespace, rendered as text.)
fn enter_root<S: Syscall>(
    sys: &S,
    dir: &Path,
    mountinfo: impl FnOnce() -> String,
) -> Result<(), JailError> {
    sys.chdir(dir)
        .map_err(JailError::setup(format!("chdir into {dir:?}")))?;
    match sys.pivot_root(Path::new("."), Path::new(".")) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && root_is_initial_ramfs(&mountinfo()) => {
            return move_root(sys, dir);
        }
        Err(e) => return Err(JailError::setup(format!("pivot_root into {dir:?}"))(e)),
    }
    super::phases::mark("pivot_root");
    sys.umount2(Path::new("."), libc::MNT_DETACH)
        .map_err(JailError::setup("detach the old root"))?;
    super::phases::mark("old root detached");
    sys.chdir(Path::new("/"))
        .map_err(JailError::setup("chdir / in the jail"))
}

/// Whether `/` is the kernel's initial ramfs (fs type `rootfs` in mountinfo).
fn root_is_initial_ramfs(mountinfo: &str) -> bool {
    mountinfo.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(mount), Some(fs)) = (halves.next(), halves.next()) else {
            return false;
        };
        mount.split(' ').nth(4) == Some("/") && fs.split(' ').next() == Some("rootfs")
    })
}

fn move_root<S: Syscall>(sys: &S, dir: &Path) -> Result<(), JailError> {
    sys.chdir(dir)
        .map_err(JailError::setup(format!("chdir into {dir:?}")))?;
    sys.mount(Some(dir), Path::new("/"), None, libc::MS_MOVE, None)
        .map_err(JailError::setup(format!(
            "move the jail's root {dir:?} over /"
        )))?;
    sys.chroot(Path::new("."))
        .map_err(JailError::setup(format!("chroot into {dir:?}")))?;
    sys.chdir(Path::new("/"))
        .map_err(JailError::setup("chdir / in the jail"))
}

fn bind_file<S: Syscall>(sys: &S, dir: &Path, f: &FileBind) -> Result<(), JailError> {
    let target = dir.join(&f.name);
    sys.create_file(&target)
        .map_err(JailError::setup(format!("create /{}", f.name)))?;
    let mut flags = libc::MS_NOSUID | libc::MS_NOEXEC;
    if !f.disk {
        flags |= libc::MS_NODEV;
    }
    if !f.writable {
        flags |= libc::MS_RDONLY;
    }
    bind(sys, &f.host, &target, flags)
}

/// Binds `host` on `target`, then gives the new mount `flags` (a bind takes none itself).
fn bind<S: Syscall>(sys: &S, host: &Path, target: &Path, flags: u64) -> Result<(), JailError> {
    sys.mount(Some(host), target, None, libc::MS_BIND, None)
        .map_err(JailError::setup(format!("bind {host:?} into the jail")))?;
    sys.mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | flags,
        None,
    )
    .map_err(JailError::setup(format!(
        "set the flags of {host:?} in the jail"
    )))
}

/// `/dev/NAME` in the jail: a node with the host's device number, mode 0600, owned by the
/// jail's user.
fn make_device<S: Syscall>(
    sys: &S,
    dir: &Path,
    name: &str,
    uid: u32,
    gid: u32,
) -> Result<(), JailError> {
    let host = Path::new("/dev").join(name);
    let rdev = std::fs::metadata(&host)
        .map_err(JailError::setup(format!("stat {host:?}")))?
        .rdev();
    let node = dir.join("dev").join(name);
    if let Some(parent) = node.parent() {
        sys.mkdir_all(parent)
            .map_err(JailError::setup(format!("create {parent:?}")))?;
    }
    sys.mknod(&node, libc::S_IFCHR | 0o600, rdev)
        .map_err(JailError::setup(format!("mknod /dev/{name}")))?;
    std::os::unix::fs::chown(&node, Some(uid), Some(gid))
        .map_err(JailError::setup(format!("chown /dev/{name}")))
}

/// Checks, as the jail's user inside the jail, that it may open every file as the VM
/// will (and write in the vsock directory), so that a file it may not use is named by its
/// host path rather than failing later under its name in the jail.
pub fn check_access(plan: &RootPlan, uid: u32, gid: u32) -> Result<(), JailError> {
    let inside = |name: &str| Path::new("/").join(name);
    let mut wanted: Vec<(&'static str, PathBuf, PathBuf, libc::c_int)> = plan
        .files
        .iter()
        .map(|f| {
            let mode = if f.writable {
                libc::R_OK | libc::W_OK
            } else {
                libc::R_OK
            };
            (f.what, f.host.clone(), inside(&f.name), mode)
        })
        .collect();
    if let Some(host) = &plan.vsock_dir {
        let mode = libc::W_OK | libc::X_OK;
        wanted.push((
            "vsock socket directory",
            host.clone(),
            inside(VSOCK_DIR),
            mode,
        ));
    }
    for (what, host, path, mode) in wanted {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
        // SAFETY: `c` is a NUL-terminated string that outlives the call.
        if unsafe { libc::access(c.as_ptr(), mode) } != 0 {
            return Err(JailError::NoAccess {
                what,
                path: host,
                uid,
                gid,
                need: if mode & libc::W_OK != 0 {
                    "write"
                } else {
                    "read"
                },
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_initial_ramfs_is_told_from_a_mounted_root() {
        let initramfs = "1 1 0:2 / / rw - rootfs rootfs rw\n22 1 0:21 / /proc rw - proc proc rw\n";
        let disk = "25 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
        assert!(super::root_is_initial_ramfs(initramfs));
        assert!(!super::root_is_initial_ramfs(disk));
        assert!(!super::root_is_initial_ramfs(""));
    }

    use super::*;
    use crate::vm::device_specs::{DeviceSpecs, DiskSpec, NetSpec, VsockSpec};
    use runtime::sys::fake::FakeSyscall;
    use std::cell::Cell;

    const INITRAMFS: &str = "1 1 0:2 / / rw - rootfs rootfs rw\n";

    #[test]
    fn mountinfo_is_not_read_when_pivot_root_works() {
        let sys = FakeSyscall::default();
        let read = Cell::new(false);
        enter_root(&sys, Path::new("/srv/jail"), || {
            read.set(true);
            INITRAMFS.to_owned()
        })
        .unwrap();
        assert!(!read.get(), "mountinfo read: {:?}", sys.calls.borrow());
        assert_eq!(
            *sys.calls.borrow(),
            [
                "chdir /srv/jail",
                "pivot_root . .",
                "umount2 . 2",
                "chdir /"
            ]
        );
    }

    #[test]
    fn an_initial_ramfs_root_is_moved_over_when_pivot_root_refuses() {
        let sys = FakeSyscall {
            fail_on: Some("pivot_root".into()),
            fail_errno: Some(libc::EINVAL),
            ..Default::default()
        };
        enter_root(&sys, Path::new("/srv/jail"), || INITRAMFS.to_owned()).unwrap();
        assert_eq!(sys.count("chroot ."), 1, "{:?}", sys.calls.borrow());
        assert_eq!(sys.count("umount2"), 0, "{:?}", sys.calls.borrow());
    }

    #[test]
    fn pivot_root_refusing_on_a_mounted_root_is_an_error() {
        let sys = FakeSyscall {
            fail_on: Some("pivot_root".into()),
            fail_errno: Some(libc::EINVAL),
            ..Default::default()
        };
        let disk = "25 1 254:0 / / rw - ext4 /dev/vda rw\n";
        let err = enter_root(&sys, Path::new("/srv/jail"), || disk.to_owned()).unwrap_err();
        assert!(err.to_string().contains("pivot_root"), "{err}");
        assert_eq!(sys.count("chroot"), 0);
    }

    fn disk(path: &str, read_only: bool) -> DiskSpec {
        DiskSpec {
            path: path.into(),
            read_only,
            id: None,
            rate_limiter: None,
        }
    }

    fn config(devices: DeviceSpecs) -> VmConfig {
        VmConfig {
            kernel: "/images/vmlinux".into(),
            mem_mib: 128,
            cpus: 1,
            cmdline: String::new(),
            initrd: Some("initrd.img".into()),
            devices,
            boot_timer: None,
        }
    }

    fn plan_of(devices: DeviceSpecs) -> (RootPlan, VmConfig) {
        plan(
            Path::new("/srv/jail"),
            &config(devices),
            Path::new("/home/u"),
        )
        .unwrap()
    }

    #[test]
    fn files_appear_at_the_root_under_their_names_and_the_options_follow() {
        let (plan, jailed) = plan_of(DeviceSpecs {
            rootfs: Some(disk("/images/root.ext4", false)),
            disks: vec![disk("data.img", true)],
            ..Default::default()
        });
        assert_eq!(jailed.kernel, Path::new("/vmlinux"));
        assert_eq!(jailed.initrd.as_deref(), Some(Path::new("/initrd.img")));
        assert_eq!(jailed.devices.rootfs.unwrap().path, Path::new("/root.ext4"));
        assert_eq!(jailed.devices.disks[0].path, Path::new("/data.img"));
        let hosts: Vec<(&Path, bool)> = plan
            .files
            .iter()
            .map(|f| (f.host.as_path(), f.writable))
            .collect();
        assert_eq!(
            hosts,
            [
                (Path::new("/images/vmlinux"), false),
                (Path::new("/home/u/initrd.img"), false),
                (Path::new("/images/root.ext4"), true),
                (Path::new("/home/u/data.img"), false),
            ]
        );
        assert_eq!(plan.devices, ["kvm", "urandom"]);
        assert_eq!(plan.vsock_dir, None);
    }

    #[test]
    fn files_with_the_same_name_or_a_reserved_one_are_numbered() {
        let (plan, jailed) = plan_of(DeviceSpecs {
            disks: vec![
                disk("/a/disk.img", false),
                disk("/b/disk.img", false),
                disk("/c/dev", false),
            ],
            ..Default::default()
        });
        let paths: Vec<&Path> = jailed
            .devices
            .disks
            .iter()
            .map(|d| d.path.as_path())
            .collect();
        assert_eq!(
            paths,
            [
                Path::new("/disk.img"),
                Path::new("/2-disk.img"),
                Path::new("/2-dev")
            ]
        );
        assert_eq!(plan.files.len(), 5);
    }

    #[test]
    fn the_vsock_socket_moves_to_the_jails_vsock_directory() {
        let (plan, jailed) = plan_of(DeviceSpecs {
            vsock: Some(VsockSpec {
                guest_cid: 3,
                uds_path: "/run/vm1/v.sock".into(),
            }),
            ..Default::default()
        });
        assert_eq!(
            jailed.devices.vsock.unwrap().uds_path,
            Path::new("/vsock/v.sock")
        );
        assert_eq!(plan.vsock_dir.as_deref(), Some(Path::new("/run/vm1")));
    }

    #[test]
    fn a_vsock_socket_directly_in_the_host_root_is_refused() {
        let devices = DeviceSpecs {
            vsock: Some(VsockSpec {
                guest_cid: 3,
                uds_path: "/v.sock".into(),
            }),
            ..Default::default()
        };
        let err = plan(Path::new("/j"), &config(devices), Path::new("/")).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
    }

    #[test]
    fn tun_is_made_only_for_a_vm_with_a_network_interface() {
        let (plan, _) = plan_of(DeviceSpecs {
            nets: vec![NetSpec {
                tap: "tap0".into(),
                mac: None,
                rx_rate_limiter: None,
                tx_rate_limiter: None,
            }],
            ..Default::default()
        });
        assert_eq!(plan.devices, ["kvm", "urandom", "net/tun"]);
    }
}
