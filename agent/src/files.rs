//! Host files copied in for a workload's bind mounts (`create`'s `files`): each is written
//! to a directory of the workload's own, and the mount that named the host file binds
//! that copy instead. The directory goes when the workload does.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use agent_protocol::protocol::{FileCopy, MAX_COPIED_BYTES};
use runtime::config::ContainerConfig;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("file copy for mount {index}, but the config has {count} mounts")]
    NoSuchMount { index: usize, count: usize },
    #[error("file copy for mount {index} ({destination:?}), which is not a bind mount")]
    NotBind { index: usize, destination: PathBuf },
    #[error("two file copies for mount {0}")]
    Twice(usize),
    #[error("file copies of {0} bytes in all (at most {MAX_COPIED_BYTES})")]
    TooLarge(usize),
    #[error("write the copy of {destination:?} to {path:?}")]
    Write {
        destination: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FilesError {
    /// The host sent copies that cannot be right (as opposed to a guest that cannot write).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Self::Write { .. })
    }
}

/// A workload's directory of copies; removed, with them, when dropped.
#[derive(Debug)]
pub struct CopiedFiles {
    dir: PathBuf,
}

impl CopiedFiles {
    /// Checks `files` against `config`, writes each into `dir` (created, mode 0700) and
    /// points its mount there. Nothing is changed or left behind when it fails.
    pub fn write(
        dir: PathBuf,
        config: &mut ContainerConfig,
        files: Vec<FileCopy>,
    ) -> Result<Self, FilesError> {
        check(config, &files)?;
        let _ = std::fs::remove_dir_all(&dir); // a leftover of a workload of that name
        let copied = Self { dir };
        let mut sources = Vec::with_capacity(files.len());
        for file in &files {
            let mount = &config.mounts[file.mount];
            let path = copied.dir.join(file.mount.to_string());
            write_file(&copied.dir, &path, file).map_err(|source| FilesError::Write {
                destination: mount.destination.clone(),
                path: path.clone(),
                source,
            })?;
            sources.push((file.mount, path));
        }
        for (index, path) in sources {
            config.mounts[index].source = path;
        }
        Ok(copied)
    }
}

impl Drop for CopiedFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check(config: &ContainerConfig, files: &[FileCopy]) -> Result<(), FilesError> {
    let total: usize = files.iter().map(|f| f.content.len()).sum();
    if total > MAX_COPIED_BYTES {
        return Err(FilesError::TooLarge(total));
    }
    let mut seen = vec![false; config.mounts.len()];
    for file in files {
        let index = file.mount;
        let mount = config.mounts.get(index).ok_or(FilesError::NoSuchMount {
            index,
            count: config.mounts.len(),
        })?;
        if !mount.is_bind() {
            return Err(FilesError::NotBind {
                index,
                destination: mount.destination.clone(),
            });
        }
        if std::mem::replace(&mut seen[index], true) {
            return Err(FilesError::Twice(index));
        }
    }
    Ok(())
}

fn write_file(dir: &Path, path: &Path, file: &FileCopy) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode & 0o7777)
        .open(path)
        .and_then(|mut f| io::Write::write_all(&mut f, &file.content))
}

#[cfg(test)]
mod tests {
    use runtime::config::MountSpec;
    use runtime::options::{config_from_options, RunOptions};

    use super::*;

    fn config_with(mounts: Vec<MountSpec>) -> ContainerConfig {
        let options = RunOptions::new(std::env::temp_dir(), vec!["true".into()]);
        let mut config = config_from_options(&options).unwrap();
        config.mounts = mounts;
        config
    }

    fn bind(destination: &str) -> MountSpec {
        MountSpec {
            destination: destination.into(),
            fstype: "bind".into(),
            source: "/host/file".into(),
            flags: libc::MS_BIND,
            propagation: 0,
            data: String::new(),
        }
    }

    fn copy(mount: usize, content: &[u8]) -> FileCopy {
        FileCopy {
            mount,
            mode: 0o640,
            content: content.to_vec(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vmm-agent-files-{name}-{}", std::process::id()))
    }

    #[test]
    fn copies_are_written_and_their_mounts_point_at_them_until_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("written");
        let mut config = config_with(vec![bind("/etc/hosts"), bind("/etc/hostname")]);
        let copied = CopiedFiles::write(
            dir.clone(),
            &mut config,
            vec![copy(1, b"web-1\n"), copy(0, b"127.0.0.1 localhost\n")],
        )
        .unwrap();
        assert_eq!(config.mounts[0].source, dir.join("0"));
        assert_eq!(std::fs::read(dir.join("1")).unwrap(), b"web-1\n");
        assert_eq!(
            std::fs::read(&config.mounts[0].source).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        let mode = std::fs::metadata(dir.join("1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        drop(copied);
        assert!(!dir.exists());
    }

    #[test]
    fn copies_that_do_not_match_the_mounts_are_refused_and_change_nothing() {
        let dir = scratch("refused");
        let tmpfs = MountSpec {
            fstype: "tmpfs".into(),
            flags: 0,
            ..bind("/tmp")
        };
        let mounts = vec![bind("/etc/hosts"), tmpfs];
        let cases = [
            (
                vec![copy(2, b"x")],
                "file copy for mount 2, but the config has 2 mounts",
            ),
            (
                vec![copy(1, b"x")],
                "file copy for mount 1 (\"/tmp\"), which is not a bind mount",
            ),
            (
                vec![copy(0, b"x"), copy(0, b"y")],
                "two file copies for mount 0",
            ),
            (
                vec![copy(0, &vec![0; MAX_COPIED_BYTES + 1])],
                "file copies of 131073 bytes in all (at most 131072)",
            ),
        ];
        for (files, want) in cases {
            let mut config = config_with(mounts.clone());
            let err = CopiedFiles::write(dir.clone(), &mut config, files).unwrap_err();
            assert_eq!(err.to_string(), want);
            assert!(err.is_bad_input());
            assert_eq!(config.mounts, mounts);
            assert!(!dir.exists());
        }
    }
}
