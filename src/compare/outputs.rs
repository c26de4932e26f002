//! The report's files (`--json`, `--html`), checked before the comparison runs so that a
//! path that cannot be written is bad input at once, not an error after minutes of runs;
//! and the host's description that the report carries.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::report::{CompareReport, HostFacts};
use super::CompareError;

pub struct Outputs {
    json: Option<PathBuf>,
    html: Option<PathBuf>,
}

impl Outputs {
    pub fn check(json: Option<&Path>, html: Option<&Path>) -> Result<Self, CompareError> {
        for (option, path) in [("--json", json), ("--html", html)] {
            if let Some(path) = path {
                check_writable(option, path)?;
            }
        }
        Ok(Self {
            json: json.map(Path::to_owned),
            html: html.map(Path::to_owned),
        })
    }

    pub fn write(&self, report: &CompareReport) -> Result<(), CompareError> {
        if let Some(path) = &self.json {
            let text = serde_json::to_string_pretty(report)
                .map_err(|e| CompareError::io("serialize the JSON report")(e.into()))?;
            fs::write(path, text + "\n").map_err(CompareError::io(format!(
                "write the JSON report to {path:?}"
            )))?;
        }
        if let Some(path) = &self.html {
            fs::write(path, super::html::render(report)).map_err(CompareError::io(format!(
                "write the HTML report to {path:?}"
            )))?;
        }
        Ok(())
    }
}

/// Opens `path` for writing without truncating it; a file made by the check is removed
/// again, so a comparison that fails later leaves no empty report behind.
fn check_writable(option: &str, path: &Path) -> Result<(), CompareError> {
    let existed = path.exists();
    if path.is_dir() {
        return Err(CompareError::BadInput(format!(
            "{option} {path:?}: is a directory"
        )));
    }
    match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(_) => {
            if !existed {
                let _ = fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(CompareError::BadInput(format!(
            "{option} {path:?}: cannot write there ({e})"
        ))),
    }
}

/// The host as the report describes it: kernel, CPU, memory, and `vmm doctor`'s facts.
pub fn host_facts(doctor: &crate::doctor::Report) -> HostFacts {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    HostFacts {
        kernel_release: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        mem_total_mib: crate::vm::memory::host_ram_mib().unwrap_or(0),
        doctor: serde_json::from_str(&crate::doctor::render_json(doctor))
            .unwrap_or(serde_json::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_in_a_missing_directory_is_bad_input() {
        let err = Outputs::check(Some(Path::new("/nonexistent-dir/r.json")), None)
            .err()
            .expect("refused");
        assert!(
            matches!(err, CompareError::BadInput(ref m) if m.contains("--json")),
            "{err}"
        );
    }

    #[test]
    fn a_directory_as_output_is_bad_input() {
        let err = Outputs::check(None, Some(Path::new("/tmp")))
            .err()
            .expect("refused");
        assert!(
            matches!(err, CompareError::BadInput(ref m) if m.contains("--html")),
            "{err}"
        );
    }

    #[test]
    fn the_check_leaves_no_file_behind() {
        let path =
            std::env::temp_dir().join(format!("vmm-compare-out-{}.json", std::process::id()));
        Outputs::check(Some(&path), None).unwrap();
        assert!(!path.exists());
    }
}
