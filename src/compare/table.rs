//! The report on the terminal: the probe matrix (✓ expected, ✗ not, – not run) and the
//! benchmarks (median with min–max, and the ratio to the process level), then why any
//! cell is empty, then the literature values.

use std::fmt::Write;

use super::report::{BenchCell, CompareReport, Verdict};

const TITLE_WIDTH: usize = 44;
const CELL_WIDTH: usize = 24;

pub fn render(report: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "vmm compare: {} run(s) per benchmark, on {} ({} CPUs, {} MiB), in {:.1} s",
        report.runs,
        report.host.kernel_release,
        report.host.cpus,
        report.host.mem_total_mib,
        report.duration_s
    );
    let levels: Vec<&str> = report.levels.iter().map(|l| l.name.as_str()).collect();
    if !report.probes.is_empty() {
        out.push('\n');
        header(&mut out, "Isolation (✓ as expected, ✗ not)", &levels);
        for row in &report.probes {
            let cells = row.cells.iter().map(|c| match (&c.observed, c.verdict) {
                (Some(seen), Verdict::Expected) => format!("✓ {seen}"),
                (Some(seen), _) => format!("✗ {seen} (expected {})", c.expected),
                (None, _) => "–".into(),
            });
            line(&mut out, &row.title, cells);
        }
        let _ = writeln!(out, "{} unexpected result(s)", report.unexpected);
    }
    if !report.benchmarks.is_empty() {
        out.push('\n');
        header(
            &mut out,
            "Cost (median, min–max; ×ratio to process)",
            &levels,
        );
        for row in &report.benchmarks {
            let title = format!("{} ({})", row.title, row.unit);
            line(&mut out, &title, row.cells.iter().map(bench_cell));
        }
    }
    let mut notes: Vec<String> = Vec::new();
    for level in &report.levels {
        if let Some(why) = &level.skipped {
            notes.push(format!("{}: not run: {why}", level.name));
        }
    }
    for row in &report.benchmarks {
        for cell in &row.cells {
            let skipped = report
                .levels
                .iter()
                .any(|l| l.name == cell.level && l.skipped.is_some());
            if let (Some(why), false) = (&cell.unavailable, skipped) {
                let note = format!("{} at {}: {why}", row.id, cell.level);
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
    }
    if !notes.is_empty() {
        out.push_str("\nEmpty cells:\n");
        for note in notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    if !report.literature.is_empty() {
        out.push_str("\nLiterature (other hardware and software, for context):\n");
        for value in &report.literature {
            let _ = writeln!(
                out,
                "  {}: {} — {}",
                value.benchmark, value.note, value.source
            );
        }
    }
    out
}

fn bench_cell(cell: &BenchCell) -> String {
    match &cell.stats {
        Some(s) => {
            let mut text = format!("{} ({}–{})", number(s.median), number(s.min), number(s.max));
            if let Some(ratio) = cell.ratio_to_process {
                let _ = write!(text, " ×{ratio:.2}");
            }
            text
        }
        None => "–".into(),
    }
}

/// Three significant digits, without an exponent.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn header(out: &mut String, title: &str, levels: &[&str]) {
    line(out, title, levels.iter().map(|l| l.to_string()));
    let width = TITLE_WIDTH + levels.len() * (CELL_WIDTH + 1);
    out.push_str(&"─".repeat(width));
    out.push('\n');
}

fn line(out: &mut String, title: &str, cells: impl Iterator<Item = String>) {
    out.push_str(&fit(title, TITLE_WIDTH));
    for cell in cells {
        out.push(' ');
        out.push_str(&fit(&cell, CELL_WIDTH));
    }
    let trimmed = out.trim_end_matches(' ').len();
    out.truncate(trimmed);
    out.push('\n');
}

/// `text` padded or cut (with …) to `width` characters.
fn fit(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        format!("{text}{}", " ".repeat(width - count))
    } else {
        let cut: String = text.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_about_three_significant_digits() {
        assert_eq!(number(1234.5), "1234");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.2345), "1.23");
    }

    #[test]
    fn cells_are_padded_or_cut_to_width() {
        assert_eq!(fit("ab", 4), "ab  ");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("✓ ok", 4).chars().count(), 4);
    }
}
