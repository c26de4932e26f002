//! Where the labs come from: the ones compiled into `vmm` (resources/labs/, embedded by
//! build.rs), or a directory given with `--labs-dir` (a teacher's own, or a copy being
//! edited). Every lab is parsed when the catalog loads, so a malformed one is reported at
//! once, whatever the command.

use std::fs;
use std::path::Path;

use super::format::{self, FormatError, Lab};
use super::LabError;

/// (file name, text) of every embedded lab, sorted by name.
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/labs.rs"));

pub fn load(dir: Option<&Path>) -> Result<Vec<Lab>, LabError> {
    let sources: Vec<(String, String)> = match dir {
        None => EMBEDDED
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect(),
        Some(dir) => read_dir(dir)?,
    };
    let mut labs = sources
        .iter()
        .map(|(name, text)| format::parse(name, text))
        .collect::<Result<Vec<Lab>, FormatError>>()?;
    labs.sort_by_key(|lab| lab.number);
    if let Some(pair) = labs.windows(2).find(|w| w[0].number == w[1].number) {
        return Err(LabError::BadInput(format!(
            "two labs are number {}: {} and {}",
            pair[0].number, pair[0].file, pair[1].file
        )));
    }
    Ok(labs)
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, LabError> {
    let entries =
        fs::read_dir(dir).map_err(|e| LabError::BadInput(format!("--labs-dir {dir:?}: {e}")))?;
    let mut sources = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if format::number_of(&name).is_none() {
            continue;
        }
        let text = fs::read_to_string(entry.path())
            .map_err(|e| LabError::BadInput(format!("{:?}: {e}", entry.path())))?;
        sources.push((name, text));
    }
    if sources.is_empty() {
        return Err(LabError::BadInput(format!(
            "--labs-dir {dir:?}: no lab files (NN-name.md) there"
        )));
    }
    Ok(sources)
}

/// The lab numbered `number`.
pub fn find(labs: &[Lab], number: u32) -> Result<&Lab, LabError> {
    labs.iter().find(|lab| lab.number == number).ok_or_else(|| {
        LabError::BadInput(format!(
            "no lab {number} (there are {}; `vmm lab list` shows them)",
            labs.iter()
                .map(|l| l.number.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_lab_parses_and_passes_the_lint() {
        let labs = load(None).unwrap();
        assert!(!labs.is_empty());
        let problems: Vec<String> = labs.iter().flat_map(|l| l.lint()).collect();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn every_lab_file_in_the_source_tree_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("resources/labs");
        let mut on_disk: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| format::number_of(n).is_some())
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = EMBEDDED.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn an_unknown_lab_number_names_the_ones_there_are() {
        let labs = load(None).unwrap();
        let err = find(&labs, 99).unwrap_err().to_string();
        assert!(
            err.contains("no lab 99") && err.contains("vmm lab list"),
            "{err}"
        );
    }
}
