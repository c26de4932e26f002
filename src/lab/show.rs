//! `vmm lab show N` (the lab as text for a terminal: the Markdown, with each machine-read
//! block shown as the command to type and what it should print) and `vmm lab run N` (the
//! same, running each step as it comes and, on a terminal, pausing before the next).

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};

use super::check::{self, StepEnv};
use super::format::{Lab, Need, Part, Step};
use super::LabError;

fn needs_text(needs: &[Need]) -> String {
    needs
        .iter()
        .map(|n| match n {
            Need::Root => "root",
            Need::LinuxGuests => "a host that boots Linux guests",
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

fn header_text(lab: &Lab) -> String {
    let mut text = format!("> {}\n", lab.header.summary);
    if !lab.header.needs.is_empty() {
        let _ = writeln!(text, "> Needs: {}.", needs_text(&lab.header.needs));
    }
    text
}

fn step_text(step: &Step) -> String {
    let mut text = format!("    $ {}\n", step.spec.run);
    if !step.spec.needs.is_empty() {
        let _ = writeln!(text, "    (needs {})", needs_text(&step.spec.needs));
    }
    text
}

pub fn render(lab: &Lab) -> String {
    let mut out = String::new();
    for part in &lab.parts {
        match part {
            Part::Prose(text) => out.push_str(text),
            Part::Header => out.push_str(&header_text(lab)),
            Part::Step(i) => out.push_str(&step_text(&lab.steps[*i])),
        }
    }
    out
}

/// Walks through the lab: prose, then each step's command run with its output shown live,
/// and whether it matched what the lab expects.
pub fn run(lab: &Lab, env: &StepEnv) -> Result<(), LabError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    for part in &lab.parts {
        match part {
            Part::Prose(text) => print!("{text}"),
            Part::Header => print!("{}", header_text(lab)),
            Part::Step(i) => {
                let step = &lab.steps[*i];
                print!("{}", step_text(step));
                if let Some(why) = check::skip_reason(&lab.needs_of(step)) {
                    println!("    (not run here: {why})\n");
                    continue;
                }
                if interactive {
                    print!("    [Enter runs it] ");
                    let _ = std::io::stdout().flush();
                    let mut line = String::new();
                    let _ = std::io::stdin().lock().read_line(&mut line);
                }
                let seen = check::run_captured(env, &step.spec.run)?;
                for line in seen.stdout.lines() {
                    println!("    {line}");
                }
                for line in seen.stderr.lines() {
                    println!("    {line}");
                }
                let failed = check::judge(step, &seen);
                if failed.is_empty() {
                    println!("    ✓ as expected\n");
                } else {
                    println!("    ✗ not as expected: {}", failed.join("; "));
                    println!("    hint: {}\n", step.spec.hint);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_replaces_blocks_with_commands_and_keeps_the_prose() {
        let labs = crate::lab::catalog::load(None).unwrap();
        let lab = &labs[0];
        let text = render(lab);
        assert!(text.starts_with(&format!("# {}", lab.title)));
        assert!(!text.contains("```lab"), "a raw block is shown");
        assert!(text.contains(&format!("    $ {}", lab.steps[0].spec.run)));
        assert!(text.contains("## Questions"));
    }
}
