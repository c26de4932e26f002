//! What the fuzz harnesses share (docs/fuzzing.md).
//!
//! Why proptest: the harnesses must run on stable Rust as ordinary `#[test]`s inside
//! `cargo test --workspace`. libFuzzer (cargo-fuzz) needs nightly; bolero runs on stable
//! too, but as a plain test it only samples random inputs (its coverage-guided engines
//! need `cargo bolero`, i.e. nightly or a sanitizer toolchain) and it brings a larger
//! dependency tree. proptest gives structured generation, shrinking to a minimal failing
//! input, seeds that reproduce a run, and failure files that replay on every later run.
//!
//! - [`check`] runs one target within the budget the environment sets.
//! - [`Reach`] counts the cases that reached what a target checks, so that inputs which
//!   stopped reaching it fail the target instead of passing it quietly.
//! - [`json`] generates arbitrary and near-valid JSON, the input of three of the parsers,
//!   and bytes as [`Text`].
//! - [`fail`] and [`accepted_or_refused`]: a case's failure from any error, and the check
//!   every parser target makes of an answer.

pub mod json;
mod reach;
mod runner;

use std::fmt;
use std::ops::Deref;

use proptest::prop_assert;
use proptest::test_runner::{TestCaseError, TestCaseResult};

pub use reach::Reach;
pub use runner::{check, Budget};

/// A failed case, from an error the harness itself met (a temporary file, a socket).
pub fn fail(e: impl fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// A parser's answer: what it accepted passes `check`, and a refusal says why (a message
/// that is not empty).
pub fn accepted_or_refused<T, E: fmt::Display>(
    answer: Result<T, E>,
    check: impl FnOnce(&T) -> TestCaseResult,
) -> TestCaseResult {
    match answer {
        Ok(value) => check(&value),
        Err(e) => {
            prop_assert!(
                !e.to_string().trim().is_empty(),
                "a refusal without a reason"
            );
            Ok(())
        }
    }
}

/// Bytes that a failure report shows as (lossy, escaped) text rather than as a column of
/// numbers; past 4 KiB it shows the start and how much more there is.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(pub Vec<u8>);

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 4096;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "Text({:?}", String::from_utf8_lossy(shown))?;
        if self.0.len() > SHOWN {
            write!(f, " and {} more bytes", self.0.len() - SHOWN)?;
        }
        write!(f, ")")
    }
}

impl Deref for Text {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_must_say_why_and_an_acceptance_must_pass_the_check() {
        let refused: Result<u8, &str> = Err("bad");
        assert!(accepted_or_refused(refused, |_| Ok(())).is_ok());
        let silent: Result<u8, &str> = Err(" ");
        assert!(accepted_or_refused(silent, |_| Ok(())).is_err());
        let accepted: Result<u8, &str> = Ok(3);
        assert!(accepted_or_refused(accepted, |&v| {
            prop_assert!(v == 4);
            Ok(())
        })
        .is_err());
    }
}
