//! Resolving a container path under the rootfs on the host, so that a symlink in the rootfs
//! (`/var/run -> /run`, or a hostile `/etc -> /`) cannot lead a mount outside of it: every
//! symlink is followed as if the rootfs were `/` (the semantics of securejoin).

use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up (as the kernel's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// `root` joined with `path`, with `..` and symlinks resolved inside `root`. Components that
/// do not exist are taken as they are.
pub fn secure_join(root: &Path, path: &Path) -> PathBuf {
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = components(path);
    pending.reverse();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = build(root, &resolved).join(&part);
        match std::fs::read_link(&candidate) {
            Ok(target) if links < MAX_SYMLINKS => {
                links += 1;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut parts = components(&target);
                parts.reverse();
                pending.extend(parts);
            }
            _ => resolved.push(part),
        }
    }
    build(root, &resolved)
}

fn components(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn build(root: &Path, parts: &[std::ffi::OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotdot_cannot_leave_the_root() {
        assert_eq!(
            secure_join(
                Path::new("/nonexistent/root"),
                Path::new("/../../etc/passwd")
            ),
            PathBuf::from("/nonexistent/root/etc/passwd")
        );
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("vmm-securejoin-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("real")).unwrap();
        let _ = std::fs::remove_file(dir.join("escape"));
        std::os::unix::fs::symlink("/real", dir.join("escape")).unwrap();
        let joined = secure_join(&dir, Path::new("/escape/x"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(joined, dir.join("real/x"));
    }
}
