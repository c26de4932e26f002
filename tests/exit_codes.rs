//! Every exit status a vmm program chooses comes from `edge::exit_code`: a literal status in
//! an exit call is how two programs came to disagree on what 2 means. This reads the
//! sources of every program (vmm, vmm-runc, vmm-agent, vmm-probe, the runtime crate).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

/// Where the programs' sources are, from the workspace root.
const SOURCE_DIRS: &[&str] = &["src", "agent/src", "runtime/src", "probe/src"];

/// Calls that take an exit status. `exit(` covers `process::exit(` and `libc::_exit(`.
const EXIT_CALLS: &[&str] = &["ExitCode::from(", "exit("];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir:?}: {e}"));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// "file:line: text" for each exit call in `text` whose argument starts with a digit.
fn literal_statuses(path: &Path, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for call in EXIT_CALLS {
            let literal = line.match_indices(call).any(|(at, _)| {
                line[at + call.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            });
            if literal {
                found.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn literal_statuses_finds_a_literal_and_passes_a_constant() {
    let path = Path::new("example.rs");
    let text = "return ExitCode::from(2);\nExitCode::from(exit_code::FAILED)\nlibc::_exit(1)";
    assert_eq!(literal_statuses(path, text).len(), 2);
}

#[test]
fn no_program_exits_with_a_literal_status() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files", files.len());
    let literals: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            literal_statuses(path, &text)
        })
        .collect();
    assert!(
        literals.is_empty(),
        "use edge::exit_code instead of a literal status:\n{}",
        literals.join("\n")
    );
}
