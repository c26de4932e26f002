//! A container's hostname: what the kernel takes (sethostname refuses more than
//! HOST_NAME_MAX bytes) and what a hostname looks like, checked before anything is made;
//! and the default one, the container's name.

use super::error::{ContainerError, Result};

/// The kernel's limit on a hostname (HOST_NAME_MAX): sethostname refuses longer ones.
pub const MAX: usize = 64;

/// Check a hostname given for the container (`--hostname`, config.json's `hostname`,
/// named `what` in the error): 1 to [`MAX`] bytes of letters, digits, '-', '_'
/// and '.', not starting with '-' or '.'. Refused here, before anything is made, rather
/// than by sethostname in the half-made container.
pub fn check(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "must not be empty".to_owned()
    } else if name.len() > MAX {
        format!("is {} bytes long, more than the kernel's {MAX}", name.len())
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        "use letters, digits, '-', '_' and '.'".to_owned()
    } else if name.starts_with(['-', '.']) {
        "must not start with '-' or '.'".to_owned()
    } else {
        return Ok(());
    };
    // A name past the limit is shown by its start: the error stays one readable line.
    let shown: String = name.chars().take(MAX).collect();
    let shown = if shown.len() < name.len() {
        shown + "…"
    } else {
        shown
    };
    Err(ContainerError::invalid(what, &shown, reason))
}

/// The hostname a container gets by default: its name, cut to [`MAX`] bytes
/// (names may be longer; they are ASCII).
pub fn default_for(id: &str) -> String {
    id.chars().take(MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_longer_than_the_kernel_takes_are_refused_by_length() {
        assert!(check("--hostname", &"a".repeat(MAX)).is_ok());
        let err = check("--hostname", &"a".repeat(300)).unwrap_err();
        assert!(err.is_bad_input());
        let text = err.to_string();
        assert!(text.contains("300 bytes") && text.contains("64"), "{text}");
        assert!(text.len() < 200, "the name is shown cut: {text}");
    }

    #[test]
    fn hostnames_with_other_characters_are_refused() {
        for bad in ["", "a b", "a/b", "-lead", ".lead", "é"] {
            assert!(check("--hostname", bad).is_err(), "{bad:?}");
        }
        assert!(check("--hostname", "web-1.example_a").is_ok());
    }

    #[test]
    fn a_long_name_gives_a_hostname_cut_to_the_kernels_limit() {
        let mut options =
            crate::options::RunOptions::new(std::env::temp_dir(), vec!["true".into()]);
        options.name = Some("n".repeat(100));
        let cfg = crate::options::config_from_options(&options).unwrap();
        assert_eq!(cfg.hostname, Some("n".repeat(MAX)));
        options.hostname = Some("h".repeat(65));
        assert!(crate::options::config_from_options(&options).is_err());
    }
}
