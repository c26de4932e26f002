//! `vmm lab` end to end: every lab's steps pass on this host (those needing Linux guests
//! are skipped with the reason here, and run in the nested-SVM tier); a lab whose
//! expectation is broken on purpose fails with a useful message; bad input is one line and
//! exit 2. Checking the labs needs root (prints SKIP otherwise).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{run_vmm_with, Run};

/// Every lab, with `vmm compare` steps among them.
const CHECK_TIMEOUT: Duration = Duration::from_secs(900);

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no arguments.
    unsafe { libc::geteuid() == 0 }
}

fn lab(args: &[&str]) -> Run {
    let mut all = vec!["lab"];
    all.extend_from_slice(args);
    run_vmm_with(&all, b"", CHECK_TIMEOUT)
}

fn labs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("resources/labs")
}

/// A copy of the labs in a scratch directory, `edit` applied to `file`'s text.
fn copy_of_labs(name: &str, file: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-labs-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for entry in fs::read_dir(labs_dir()).unwrap() {
        let entry = entry.unwrap();
        let text = fs::read_to_string(entry.path()).unwrap();
        let text = if entry.file_name() == file {
            edit(&text)
        } else {
            text
        };
        fs::write(dir.join(entry.file_name()), text).unwrap();
    }
    dir
}

fn assert_bad_input(run: &Run, naming: &str) {
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "not one line\n{}",
        run.describe()
    );
    assert!(
        run.stderr.contains(naming),
        "stderr does not name {naming:?}\n{}",
        run.describe()
    );
}

#[test]
fn every_lab_passes_on_this_host() {
    if !is_root() {
        println!("SKIP every_lab_passes_on_this_host: needs root");
        return;
    }
    let run = lab(&["check", "all"]);
    println!("{}", run.stdout);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(!run.stdout.contains("FAIL"), "{}", run.stdout);
    // Only what this host lacks may be skipped, and each skip says why.
    for line in run.stdout.lines().filter(|l| l.contains(": skipped")) {
        assert!(line.contains("needs"), "a skip without its reason: {line}");
    }
    let listed = lab(&["list"]);
    let labs = listed
        .stdout
        .lines()
        .filter(|l| {
            l.starts_with(|c: char| c == ' ' || c.is_ascii_digit())
                && l.trim_start().starts_with(|c: char| c.is_ascii_digit())
        })
        .count();
    assert!(labs >= 1, "{}", listed.stdout);
    assert_eq!(
        run.stdout.matches(" passed, ").count(),
        labs,
        "every lab was checked"
    );
}

#[test]
fn a_broken_expectation_fails_the_check_with_what_was_expected_seen_and_a_hint() {
    if !is_root() {
        println!("SKIP a_broken_expectation_fails_…: needs root");
        return;
    }
    let dir = copy_of_labs("broken", "01-pid-namespace.md", |text| {
        text.replace(
            "stdout_matches = '^my pid is 1$'",
            "stdout_matches = '^my pid is 2$'",
        )
    });
    let run = lab(&["check", "1", "--labs-dir", dir.to_str().unwrap()]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("expected: exit 0, a stdout line matching \"^my pid is 2$\""),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("stdout: my pid is 1"), "{}", run.stdout);
    assert!(run.stdout.contains("hint: "), "{}", run.stdout);
    assert!(run.stdout.contains("1 failed"), "{}", run.stdout);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_lab_showing_a_command_no_step_checks_fails_its_lint() {
    if !is_root() {
        println!("SKIP a_lab_showing_a_command_no_step_checks_fails_its_lint: needs root");
        return;
    }
    let dir = copy_of_labs("lint", "01-pid-namespace.md", |text| {
        text.replace(
            "## Questions",
            "```sh\nvmm run --isolation vm -- reboot\n```\n\n## Questions",
        )
    });
    let run = lab(&["check", "1", "--labs-dir", dir.to_str().unwrap()]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.stdout.contains("lint: FAIL") && run.stdout.contains("reboot"),
        "{}",
        run.stdout
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn show_prints_the_lab_with_its_commands() {
    let run = lab(&["show", "1"]);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stdout.contains("# Lab 1"), "{}", run.stdout);
    assert!(
        run.stdout.contains("    $ vmm run --isolation container"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("```lab"), "{}", run.stdout);
}

#[test]
fn an_unknown_lab_number_is_bad_input() {
    assert_bad_input(&lab(&["show", "99"]), "no lab 99");
}

#[test]
fn a_lab_that_is_not_a_number_is_bad_input() {
    let run = lab(&["check", "abc"]);
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stderr.contains("abc"), "{}", run.describe());
}

#[test]
fn a_malformed_step_block_is_bad_input_naming_file_and_line() {
    let dir = copy_of_labs("malformed", "01-pid-namespace.md", |text| {
        text.replacen("stdout_matches =", "stdout_matchez =", 1)
    });
    let run = lab(&["list", "--labs-dir", dir.to_str().unwrap()]);
    assert_bad_input(&run, "01-pid-namespace.md:");
    assert!(run.stderr.contains("stdout_matchez"), "{}", run.describe());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn only_needing_checks_just_those_steps() {
    let run = lab(&["check", "5", "--only-needing", "linux-guests"]);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let steps = run
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .count();
    assert_eq!(
        steps, 2,
        "lab 5 has two steps that need Linux guests\n{}",
        run.stdout
    );
    assert!(run.stdout.contains("a VM's link"), "{}", run.stdout);
    assert!(run.stdout.contains("a container in a VM"), "{}", run.stdout);
}
