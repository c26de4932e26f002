//! An error and its causes on one line, each said once.
//!
//! Errors in vmm name the thing and the problem, and keep the error that caused it as
//! their `source()`; this is where the whole chain becomes text, once, at a program's edge.

use std::error::Error;

/// The error and its sources on one line: "disk \"/x\": cannot open: Is a directory".
///
/// A source whose text the line already holds is not repeated: many messages embed their
/// cause (`"{op}: {source}"`) so that they read whole when printed alone.
pub fn error_chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;
    use std::io;

    /// A step that failed, with its cause kept as `source()` and not in its own text.
    #[derive(Debug)]
    struct Step {
        what: &'static str,
        cause: io::Error,
    }

    impl fmt::Display for Step {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.what)
        }
    }

    impl Error for Step {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.cause)
        }
    }

    /// A step whose text already ends with its cause's.
    #[derive(Debug)]
    struct Embedding(Step);

    impl fmt::Display for Embedding {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "outer: {}: {}", self.0, self.0.cause)
        }
    }

    impl Error for Embedding {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(28)
    }

    #[test]
    fn error_chain_names_the_step_then_its_cause() {
        let e = Step {
            what: "fsync /x",
            cause: enospc(),
        };
        assert_eq!(
            error_chain(&e),
            "fsync /x: No space left on device (os error 28)"
        );
    }

    #[test]
    fn error_chain_says_a_cause_already_in_the_text_once() {
        let e = Embedding(Step {
            what: "fsync /x",
            cause: enospc(),
        });
        assert_eq!(
            error_chain(&e),
            "outer: fsync /x: No space left on device (os error 28)"
        );
    }

    #[test]
    fn error_chain_of_an_error_without_source_is_its_text() {
        assert_eq!(error_chain(&io::Error::other("plain")), "plain");
    }
}
