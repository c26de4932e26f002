//! Why a benchmark could not be measured. The probe either measures a figure or says what
//! stopped it: a half-measured number would be compared as if it were real.

use std::error::Error;
use std::fmt;
use std::io;

/// A measurement that failed: what was being done, and the error that stopped it.
#[derive(Debug)]
pub struct Failure {
    what: String,
    source: io::Error,
}

impl Failure {
    /// `what` names the step, e.g. "fsync /tmp/.vmm-probe-io-42"; `source` says why.
    pub fn new(what: impl Into<String>, source: io::Error) -> Self {
        Failure {
            what: what.into(),
            source,
        }
    }

    /// A failure the OS did not report: a wrong result, an unexpected status.
    pub fn wrong(what: impl Into<String>, why: impl Into<String>) -> Self {
        Failure::new(what, io::Error::other(why.into()))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// Names the step of an `io::Result`: `file.sync_all().or_fail(|| format!("fsync {path}"))`.
pub trait OrFail<T> {
    fn or_fail(self, what: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T> OrFail<T> for io::Result<T> {
    fn or_fail(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_prints_as_the_step_then_the_os_error() {
        let e = Failure::new("fsync /x", io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(
            edge::error_chain(&e),
            "fsync /x: No space left on device (os error 28)"
        );
    }
}
