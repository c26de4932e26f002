//! `vmm compare`: one probe program run at every isolation level — a plain process, a
//! container, a microVM, a container in a microVM — through `vmm run`, as a user would;
//! what it can see of the host (isolation probes, each with an expected result per level)
//! and what it costs (benchmarks, medians of fresh runs), side by side: a terminal table,
//! JSON (docs/compare.md) and a self-contained HTML report.

pub mod args;
mod benchmarks;
mod canaries;
pub(crate) mod clock;
pub mod html;
mod interrupt;
mod listing;
mod literature;
mod memory;
mod outputs;
mod probes;
pub mod report;
pub(crate) mod rootfs;
pub(crate) mod runner;
mod selection;
mod session;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use edge::{error_chain, exit_code};

use args::CompareArgs;

/// Why a comparison could not be made (an unexpected probe result is not an error: it is
/// reported, and the exit status is 1).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Canary(#[from] canaries::CanaryError),
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

impl CompareError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| CompareError::Io { what, source }
    }
}

pub fn run(args: &CompareArgs) -> ExitCode {
    match session::compare(args) {
        Ok(code) => code,
        Err(CompareError::Interrupted) => {
            eprintln!("vmm: compare interrupted; the canaries and runs were cleaned up");
            ExitCode::from(exit_code::signalled(libc::SIGINT))
        }
        Err(e) => {
            eprintln!("vmm: error: {}", error_chain(&e));
            ExitCode::from(exit_code::of_error(matches!(e, CompareError::BadInput(_))))
        }
    }
}

/// The probe binary: `--probe`, or `vmm-probe` beside this `vmm` (cargo builds both into
/// one directory).
pub(crate) fn probe_binary(given: Option<&PathBuf>) -> Result<PathBuf, CompareError> {
    let path = match given {
        Some(path) => path.clone(),
        None => runner::this_vmm()
            .map_err(CompareError::io("find the vmm binary"))?
            .with_file_name("vmm-probe"),
    };
    if runner::is_executable(&path) {
        Ok(path)
    } else if given.is_some() {
        Err(CompareError::BadInput(format!(
            "--probe {path:?}: not an executable file"
        )))
    } else {
        Err(CompareError::BadInput(format!(
            "no probe binary at {path:?}: build it with `cargo build --release` (the \
             workspace builds vmm-probe beside vmm), or pass --probe"
        )))
    }
}
