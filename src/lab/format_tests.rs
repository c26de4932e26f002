use super::*;

const GOOD: &str = r#"# Lab 3: A title

```lab
needs = ["root"]
summary = "One line."
```

## Goal

Learn.

## Background

Why.

## Steps

### Step 1: first

```lab-step
run = "echo hi"
stdout_matches = '^hi$'
hint = "echo prints its arguments."
```

You should see: hi.

```lab-step
run = "exit 3"
exit = 3
needs = ["linux-guests"]
hint = "exit sets the status."
```

## Questions

1. Why?

## Further reading

- A book.
"#;

#[test]
fn a_well_formed_lab_parses_with_its_steps_and_header() {
    let lab = parse("03-title.md", GOOD).unwrap();
    assert_eq!(lab.number, 3);
    assert_eq!(lab.title, "Lab 3: A title");
    assert_eq!(lab.header.needs, vec![Need::Root]);
    assert_eq!(lab.steps.len(), 2);
    assert_eq!(lab.steps[0].title, "Step 1: first");
    assert_eq!(lab.steps[1].title, "Step 1: first (2)");
    assert_eq!(lab.steps[1].spec.exit, 3);
    assert_eq!(
        lab.needs_of(&lab.steps[1]),
        vec![Need::Root, Need::LinuxGuests]
    );
    assert!(lab.steps[0]
        .stdout_regex
        .as_ref()
        .unwrap()
        .is_match("x\nhi\ny"));
    assert!(lab.lint().is_empty(), "{:?}", lab.lint());
}

#[test]
fn an_unknown_step_field_is_an_error_with_its_line() {
    let bad = GOOD.replace(
        "hint = \"echo prints",
        "stdout_match = 'x'\nhint = \"echo prints",
    );
    let err = parse("03-title.md", &bad).unwrap_err();
    assert_eq!(err.line, 23, "the line of the unknown field: {err}");
    assert!(err.reason.contains("stdout_match"), "{err}");
}

#[test]
fn an_unclosed_block_is_an_error() {
    let bad = GOOD.replace("hint = \"exit sets the status.\"\n```", "hint = \"x\"");
    let err = parse("03-title.md", &bad).unwrap_err();
    assert!(err.reason.contains("not closed"), "{err}");
}

#[test]
fn a_bad_regex_is_an_error() {
    let bad = GOOD.replace("'^hi$'", "'^(hi$'");
    let err = parse("03-title.md", &bad).unwrap_err();
    assert!(err.reason.contains("stdout_matches"), "{err}");
}

#[test]
fn a_missing_section_is_an_error() {
    let bad = GOOD.replace("## Questions\n\n1. Why?\n\n", "");
    let err = parse("03-title.md", &bad).unwrap_err();
    assert!(err.reason.contains("sections"), "{err}");
}

#[test]
fn a_file_name_without_a_number_is_an_error() {
    assert!(parse("title.md", GOOD).is_err());
    assert_eq!(number_of("11-cost.md"), Some(11));
    assert_eq!(number_of("README.md"), None);
}

#[test]
fn a_shown_command_that_is_no_step_fails_the_lint() {
    let text = GOOD.replace(
        "You should see: hi.",
        "You should see: hi.\n\n```sh\nrm -rf /tmp/x\n```",
    );
    let lab = parse("03-title.md", &text).unwrap();
    let problems = lab.lint();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("rm -rf /tmp/x"));
    let shown_step = GOOD.replace("You should see: hi.", "```sh\n$ echo hi\n```");
    assert!(parse("03-title.md", &shown_step).unwrap().lint().is_empty());
}

#[test]
fn a_step_that_checks_nothing_fails_the_lint() {
    let text = GOOD.replace("stdout_matches = '^hi$'\n", "");
    let problems = parse("03-title.md", &text).unwrap().lint();
    assert!(
        problems.iter().any(|p| p.contains("checks only")),
        "{problems:?}"
    );
}
