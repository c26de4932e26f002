use std::path::PathBuf;

use runtime::options::{config_from_options, RunOptions};

use super::*;

/// A scratch directory of one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vmm-vm-mounts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bind(source: &Path, destination: &str) -> MountSpec {
    MountSpec {
        destination: destination.into(),
        fstype: "bind".into(),
        source: source.to_owned(),
        flags: libc::MS_BIND | libc::MS_REC | libc::MS_NOSUID | libc::MS_NODEV,
        propagation: libc::MS_PRIVATE,
        data: String::new(),
    }
}

fn config_with(mounts: Vec<MountSpec>) -> ContainerConfig {
    let options = RunOptions::new(std::env::temp_dir(), vec!["true".into()]);
    let mut config = config_from_options(&options).unwrap();
    config.mounts.extend(mounts);
    config
}

fn bad_input(result: Result<(), RunError>) -> String {
    match result {
        Err(RunError::BadInput(msg)) => msg,
        other => panic!("want bad input, got {other:?}"),
    }
}

#[test]
fn host_files_are_copied_with_their_mode_and_mount_index() {
    let scratch = Scratch::new("files");
    let hosts = scratch.file("hosts", b"127.0.0.1 localhost\n", 0o644);
    let env = scratch.file("containerenv", b"engine=\"podman\"\n", 0o400);
    let mut config = config_with(vec![
        bind(&hosts, "/etc/hosts"),
        bind(&env, "/run/.containerenv"),
    ]);
    let first = config.mounts.len() - 2;
    adapt(&mut config).unwrap();
    let files = copies(&config).unwrap();
    assert_eq!(
        files,
        [
            FileCopy {
                mount: first,
                mode: 0o644,
                content: b"127.0.0.1 localhost\n".to_vec()
            },
            FileCopy {
                mount: first + 1,
                mode: 0o400,
                content: b"engine=\"podman\"\n".to_vec()
            },
        ]
    );
    // The mounts themselves are left for the agent to point at its copies.
    assert_eq!(config.mounts[first].source, hosts);
}

#[test]
fn a_host_dev_shm_directory_becomes_a_guest_tmpfs_of_its_size() {
    let scratch = Scratch::new("shm");
    let mut config = config_with(vec![bind(&scratch.0, "/dev/shm")]);
    adapt(&mut config).unwrap();
    let shm = config.mounts.last().unwrap();
    assert_eq!(shm.fstype, "tmpfs");
    assert_eq!(shm.flags, libc::MS_NOSUID | libc::MS_NODEV);
    assert_eq!(shm.propagation, libc::MS_PRIVATE);
    let size = tmpfs_size(&scratch.0).unwrap();
    assert_eq!(shm.data, format!("mode=1777,size={size}"));
    assert!(copies(&config).unwrap().is_empty());
}

#[test]
fn other_host_directories_and_missing_paths_are_refused() {
    let scratch = Scratch::new("dirs");
    let msg = bad_input(adapt(&mut config_with(vec![bind(&scratch.0, "/data")])));
    assert!(msg.contains(&format!("{:?}", scratch.0)), "{msg}");
    assert!(msg.contains("--isolation container"), "{msg}");

    let missing = scratch.0.join("missing");
    let msg = bad_input(adapt(&mut config_with(vec![bind(&missing, "/etc/hosts")])));
    assert!(msg.contains("\"/etc/hosts\""), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn host_files_beyond_the_copy_limit_are_refused() {
    let scratch = Scratch::new("large");
    let half = scratch.file("half", &vec![b'x'; MAX_COPIED_BYTES / 2], 0o644);
    let over = scratch.file("over", &vec![b'y'; MAX_COPIED_BYTES / 2 + 1], 0o644);
    let mut fits = config_with(vec![bind(&half, "/a"), bind(&half, "/b")]);
    adapt(&mut fits).unwrap();
    assert_eq!(copies(&fits).unwrap().len(), 2);

    let mut too_much = config_with(vec![bind(&half, "/a"), bind(&over, "/b")]);
    let msg = bad_input(adapt(&mut too_much));
    assert!(msg.contains("more than 128 KiB"), "{msg}");
    // A file that grew after the check is caught when it is read.
    std::fs::write(&half, vec![b'z'; MAX_COPIED_BYTES / 2 + 1]).unwrap();
    let msg = match copies(&fits) {
        Err(RunError::BadInput(msg)) => msg,
        other => panic!("want bad input, got {other:?}"),
    };
    assert!(msg.contains("more than 128 KiB"), "{msg}");
}
