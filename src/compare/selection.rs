//! `--only`: which probes and benchmarks run.

use super::benchmarks::BENCHMARKS;
use super::probes::PROBES;

/// The probes and benchmarks chosen, by index into [`PROBES`] and [`BENCHMARKS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub probes: Vec<usize>,
    pub benchmarks: Vec<usize>,
}

/// `--only` names: "probes", "bench", an id ("canary.shm") or a group ("canary"). Empty
/// selects everything. An unknown name is an error naming it and where to find the list.
pub fn select(only: &[String]) -> Result<Selection, String> {
    if only.is_empty() {
        return Ok(Selection {
            probes: (0..PROBES.len()).collect(),
            benchmarks: (0..BENCHMARKS.len()).collect(),
        });
    }
    let mut probes = Vec::new();
    let mut benchmarks = Vec::new();
    for name in only.iter().map(|n| n.trim()) {
        let matches = |id: &str| id == name || id.split('.').next() == Some(name);
        let p: Vec<usize> = match name {
            "probes" => (0..PROBES.len()).collect(),
            "bench" => Vec::new(),
            _ => (0..PROBES.len())
                .filter(|&i| matches(PROBES[i].id))
                .collect(),
        };
        let b: Vec<usize> = match name {
            "bench" => (0..BENCHMARKS.len()).collect(),
            "probes" => Vec::new(),
            _ => (0..BENCHMARKS.len())
                .filter(|&i| matches(BENCHMARKS[i].id))
                .collect(),
        };
        if p.is_empty() && b.is_empty() {
            return Err(format!(
                "--only {name:?}: no such probe or benchmark (`vmm compare --list` shows them)"
            ));
        }
        probes.extend(p);
        benchmarks.extend(b);
    }
    probes.sort_unstable();
    probes.dedup();
    benchmarks.sort_unstable();
    benchmarks.dedup();
    Ok(Selection { probes, benchmarks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_named_selects_everything() {
        let all = select(&[]).unwrap();
        assert_eq!(all.probes.len(), PROBES.len());
        assert_eq!(all.benchmarks.len(), BENCHMARKS.len());
    }

    #[test]
    fn probes_and_bench_select_one_kind_each() {
        let probes = select(&["probes".into()]).unwrap();
        assert!(probes.benchmarks.is_empty() && probes.probes.len() == PROBES.len());
        let bench = select(&["bench".into()]).unwrap();
        assert!(bench.probes.is_empty() && bench.benchmarks.len() == BENCHMARKS.len());
    }

    #[test]
    fn a_group_selects_its_members_and_an_id_itself() {
        let canaries = select(&["canary".into()]).unwrap();
        assert!(canaries.probes.len() >= 7);
        assert!(canaries
            .probes
            .iter()
            .all(|&i| PROBES[i].id.starts_with("canary.")));
        let one = select(&["net.rtt".into(), "net.rtt".into()]).unwrap();
        assert_eq!(one.benchmarks.len(), 1, "duplicates collapse");
        assert!(one.probes.is_empty());
    }

    #[test]
    fn an_unknown_name_is_refused_with_its_name() {
        let err = select(&["canary".into(), "bogus".into()]).unwrap_err();
        assert!(err.contains("\"bogus\""), "{err}");
    }
}
