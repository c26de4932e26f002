//! Whether the workload's command exists in its rootfs, checked on the host before a VM
//! boots, so that a typo costs no boot (the runtime checks again where it runs).

use std::path::{Path, PathBuf};

use runtime::config::ContainerConfig;

use super::error::RunError;

/// The command must exist in the rootfs: said at once, not after a boot.
pub fn check_command_in_rootfs(config: &ContainerConfig) -> Result<(), RunError> {
    let Some(command) = config.process.args.first() else {
        return Err(runtime::error::ContainerError::NoCommand.into());
    };
    let path_var = config
        .process
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(runtime::defaults::PATH);
    let candidates: Vec<PathBuf> = if command.contains('/') {
        vec![PathBuf::from(command)]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(command))
            .collect()
    };
    let found = candidates.iter().any(|candidate| {
        let on_host = runtime::paths::secure_join(&config.rootfs, candidate);
        std::fs::metadata(on_host).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    });
    if found {
        Ok(())
    } else {
        Err(runtime::error::ContainerError::CommandNotFound {
            command: command.clone(),
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use runtime::options::{config_from_options, RunOptions};

    use super::*;

    fn rootfs_with_busybox(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("vmm-cmd-check-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), b"#!/bin/true\n").unwrap();
        std::fs::set_permissions(
            root.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // An absolute link, as rootfs trees have: it must resolve inside the rootfs.
        symlink("/bin/busybox", root.join("bin/sh")).unwrap();
        std::fs::write(root.join("bin/data"), b"not a program").unwrap();
        root
    }

    fn check(root: &Path, command: &str) -> Result<(), RunError> {
        let config = config_from_options(&RunOptions::new(root, vec![command.into()])).unwrap();
        check_command_in_rootfs(&config)
    }

    #[test]
    fn command_found_through_path_and_an_absolute_link_inside_the_rootfs() {
        let root = rootfs_with_busybox("found");
        assert!(check(&root, "sh").is_ok());
        assert!(check(&root, "/bin/sh").is_ok());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_or_non_executable_command_is_bad_input() {
        let root = rootfs_with_busybox("missing");
        for command in ["nope", "/bin/nope", "data", "/bin"] {
            let err = check(&root, command).unwrap_err();
            assert!(err.is_bad_input(), "{command}: {err}");
            assert!(err.to_string().contains(command), "{err}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
