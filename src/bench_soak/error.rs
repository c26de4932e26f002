//! Why a soak could not run or a run in it failed (a run that fails ends the soak: a
//! cycle that does not complete could hide or fake a leak).

use crate::compare::CompareError;
use crate::vm::VmError;

#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("{0}")]
    BadInput(String),
    #[error("cannot {what}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the containers' probe")]
    Probe(#[source] CompareError),
    #[error("VM run {run} could not be built or run")]
    Vm {
        run: u32,
        #[source]
        source: VmError,
    },
    #[error("VM run {run} ended as {outcome}, not with its `up` test passed; the guest said last: {console}")]
    VmEnded {
        run: u32,
        outcome: String,
        console: String,
    },
    #[error("container run {run} could not run")]
    Container {
        run: u32,
        #[source]
        source: runtime::error::ContainerError,
    },
    #[error("container run {run} exited with status {status}")]
    ContainerStatus { run: u32, status: u8 },
}

impl SoakError {
    pub fn setup(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| SoakError::Setup { what, source }
    }

    /// Whether the input was at fault (exit status 2) rather than a run (1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            SoakError::BadInput(_) => true,
            SoakError::Probe(e) => matches!(e, CompareError::BadInput(_)),
            SoakError::Vm { source, .. } => source.is_bad_input(),
            SoakError::Container { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }
}
