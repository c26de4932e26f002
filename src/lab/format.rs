//! A lab's Markdown (resources/labs/README.md describes the format): the prose for people,
//! and the fenced `lab` header and `lab-step` blocks that `vmm lab` reads. Parsing is
//! strict — an unknown field or a missing section is an error naming the file and line —
//! so a typo in a lab can never turn into a step that checks nothing.

use regex::Regex;
use serde::Deserialize;

/// Sections every lab has, in this order.
pub const SECTIONS: [&str; 5] = [
    "Goal",
    "Background",
    "Steps",
    "Questions",
    "Further reading",
];

/// What a lab or a step needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Need {
    Root,
    LinuxGuests,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    #[serde(default)]
    pub needs: Vec<Need>,
    pub summary: String,
}

/// A step's machine-readable block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// One shell command line, run with `sh -c`: what the student types.
    pub run: String,
    pub stdout_matches: Option<String>,
    #[serde(default)]
    pub stdout_contains: Vec<String>,
    #[serde(default)]
    pub stdout_lacks: Vec<String>,
    #[serde(default)]
    pub stderr_contains: Vec<String>,
    #[serde(default)]
    pub exit: i32,
    #[serde(default)]
    pub needs: Vec<Need>,
    pub hint: String,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// "Step 2: in a container, the workload is PID 1" (the `###` heading above it, with
    /// "(2)" for a heading's second block).
    pub title: String,
    pub spec: StepSpec,
    /// `stdout_matches`, compiled (multi-line: ^ and $ match at line ends).
    pub stdout_regex: Option<Regex>,
}

/// One piece of a lab, in order: prose, or a block rendered in its place.
#[derive(Debug, Clone)]
pub enum Part {
    Prose(String),
    Header,
    /// Index into [`Lab::steps`].
    Step(usize),
}

#[derive(Debug, Clone)]
pub struct Lab {
    pub number: u32,
    /// The file name, e.g. "01-pid-namespace.md".
    pub file: String,
    pub title: String,
    pub header: Header,
    pub steps: Vec<Step>,
    pub parts: Vec<Part>,
    /// Commands of the prose's ```sh blocks (each must be a step's `run`).
    pub shown_commands: Vec<String>,
}

/// What is wrong with a lab file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct FormatError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// The lab number of a file name `NN-slug.md`.
pub fn number_of(file: &str) -> Option<u32> {
    let (digits, rest) = file.split_once('-')?;
    if rest.ends_with(".md") && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

pub fn parse(file: &str, text: &str) -> Result<Lab, FormatError> {
    let error = |line: usize, reason: String| FormatError {
        file: file.to_owned(),
        line,
        reason,
    };
    let number = number_of(file).ok_or_else(|| error(0, "the name is not NN-slug.md".into()))?;
    let mut title = None;
    let mut header = None;
    let mut steps = Vec::new();
    let mut parts = Vec::new();
    let mut shown_commands = Vec::new();
    let mut sections = Vec::new();
    let mut heading = String::new();
    let mut blocks_under_heading = 0;
    let mut prose = String::new();

    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(fence) = line.strip_prefix("```") {
            let kind = fence.trim();
            let start = i;
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim_end() == "```")
                .ok_or_else(|| error(start + 1, format!("the ```{kind} block is not closed")))?;
            let body = lines[i + 1..end].join("\n");
            i = end + 1;
            match kind {
                "lab" => {
                    if header.is_some() {
                        return Err(error(start + 1, "a second ```lab header block".into()));
                    }
                    header = Some(toml::from_str::<Header>(&body).map_err(|e| {
                        error(
                            line_in_block(start, &body, &e),
                            format!("the ```lab block: {}", e.message()),
                        )
                    })?);
                    flush(&mut prose, &mut parts);
                    parts.push(Part::Header);
                }
                "lab-step" => {
                    let spec = toml::from_str::<StepSpec>(&body).map_err(|e| {
                        error(
                            line_in_block(start, &body, &e),
                            format!("a ```lab-step block: {}", e.message()),
                        )
                    })?;
                    let stdout_regex = spec
                        .stdout_matches
                        .as_deref()
                        .map(|re| {
                            regex::RegexBuilder::new(re)
                                .multi_line(true)
                                .build()
                                .map_err(|e| error(start + 1, format!("stdout_matches: {e}")))
                        })
                        .transpose()?;
                    if heading.is_empty() {
                        return Err(error(start + 1, "a step before any ### heading".into()));
                    }
                    blocks_under_heading += 1;
                    let title = if blocks_under_heading == 1 {
                        heading.clone()
                    } else {
                        format!("{heading} ({blocks_under_heading})")
                    };
                    flush(&mut prose, &mut parts);
                    parts.push(Part::Step(steps.len()));
                    steps.push(Step {
                        title,
                        spec,
                        stdout_regex,
                    });
                }
                "sh" | "shell" | "console" | "bash" => {
                    shown_commands.push(body.trim().trim_start_matches("$ ").to_owned());
                    prose.push_str(&lines[start..end + 1].join("\n"));
                    prose.push('\n');
                }
                _ => {
                    prose.push_str(&lines[start..end + 1].join("\n"));
                    prose.push('\n');
                }
            }
            continue;
        }
        if let Some(t) = line.strip_prefix("# ") {
            if title.is_some() {
                return Err(error(i + 1, "a second # title".into()));
            }
            title = Some(t.trim().to_owned());
        } else if let Some(s) = line.strip_prefix("## ") {
            sections.push((s.trim().to_owned(), i + 1));
        } else if let Some(h) = line.strip_prefix("### ") {
            heading = h.trim().to_owned();
            blocks_under_heading = 0;
        }
        prose.push_str(line);
        prose.push('\n');
        i += 1;
    }
    flush(&mut prose, &mut parts);

    let title = title.ok_or_else(|| error(1, "no # title line".into()))?;
    let header = header.ok_or_else(|| error(1, "no ```lab header block".into()))?;
    let names: Vec<&str> = sections.iter().map(|(s, _)| s.as_str()).collect();
    if names != SECTIONS {
        return Err(error(
            sections.first().map_or(1, |s| s.1),
            format!("the sections are {names:?}; a lab has {SECTIONS:?}, in that order"),
        ));
    }
    if steps.is_empty() {
        return Err(error(1, "no ```lab-step block".into()));
    }
    Ok(Lab {
        number,
        file: file.to_owned(),
        title,
        header,
        steps,
        parts,
        shown_commands,
    })
}

/// The file's line (1-based) of a TOML error in the block whose fence is at index `fence`:
/// the line of the offending field when the error has a position, else the fence's.
fn line_in_block(fence: usize, body: &str, e: &toml::de::Error) -> usize {
    match e.span() {
        Some(span) => fence + 2 + body[..span.start.min(body.len())].matches('\n').count(),
        None => fence + 1,
    }
}

fn flush(prose: &mut String, parts: &mut Vec<Part>) {
    if !prose.trim().is_empty() {
        parts.push(Part::Prose(std::mem::take(prose)));
    }
    prose.clear();
}

impl Lab {
    /// What the whole lab and a step need.
    pub fn needs_of(&self, step: &Step) -> Vec<Need> {
        let mut needs = self.header.needs.clone();
        for need in &step.spec.needs {
            if !needs.contains(need) {
                needs.push(*need);
            }
        }
        needs
    }

    /// The lint: every command shown in a ```sh block is one of the steps' `run` lines,
    /// and every step has a hint. Returns the problems found.
    pub fn lint(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .shown_commands
            .iter()
            .filter(|c| !self.steps.iter().any(|s| s.spec.run == **c))
            .map(|c| {
                format!(
                    "{}: the command {c:?} is shown but is no step's `run`",
                    self.file
                )
            })
            .collect();
        for step in &self.steps {
            if step.spec.hint.trim().is_empty() {
                problems.push(format!("{}: {} has an empty hint", self.file, step.title));
            }
            let checks = step.spec.stdout_matches.is_some()
                || !step.spec.stdout_contains.is_empty()
                || !step.spec.stdout_lacks.is_empty()
                || !step.spec.stderr_contains.is_empty();
            if !checks && step.spec.exit == 0 {
                problems.push(format!(
                    "{}: {} checks only that the command succeeds; say what it shows",
                    self.file, step.title
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
