use serde_json::json;

use super::super::report::{
    BenchCell, BenchRow, Better, CompareReport, HostFacts, LevelStatus, LiteratureValue, ProbeCell,
    ProbeRow, Stats, Verdict, SCHEMA_VERSION,
};
use super::{fmt_value, render, Esc};

const PVM: &str = "this host's KVM is PVM (a paravirtualised KVM inside a cloud VM), which \
                   cannot boot Linux guests";
const CITATION: &str = "Agache et al., Firecracker, NSDI 2020, https://www.usenix.org/nsdi20";

const LEVELS: [&str; 4] = ["process", "container", "vm", "vm+container"];

fn stats(median: f64, min: f64, max: f64) -> Stats {
    Stats {
        median,
        min,
        max,
        samples: vec![min, median, max],
    }
}

fn probe(id: &str, title: &str, results: [(&str, &str, Verdict); 2]) -> ProbeRow {
    let mut cells: Vec<ProbeCell> = results
        .iter()
        .zip(LEVELS)
        .map(|(&(observed, expected, verdict), level)| ProbeCell {
            level: level.to_string(),
            observed: Some(observed.to_string()),
            expected: expected.to_string(),
            reason: format!("at {level} the probe runs against its own {id}"),
            verdict,
        })
        .collect();
    for level in &LEVELS[2..] {
        cells.push(ProbeCell {
            level: level.to_string(),
            observed: None,
            expected: "hidden".to_string(),
            reason: "a guest has its own kernel".to_string(),
            verdict: Verdict::NotRun,
        });
    }
    ProbeRow {
        id: id.to_string(),
        title: title.to_string(),
        cells,
    }
}

fn bench(id: &str, unit: &str, better: Better, process: Stats, container: BenchCell) -> BenchRow {
    let skipped = |level: &str| BenchCell {
        level: level.to_string(),
        stats: None,
        ratio_to_process: None,
        unavailable: Some(PVM.to_string()),
    };
    BenchRow {
        id: id.to_string(),
        title: format!("{id} benchmark"),
        unit: unit.to_string(),
        better,
        cells: vec![
            BenchCell {
                level: "process".to_string(),
                stats: Some(process),
                ratio_to_process: None,
                unavailable: None,
            },
            container,
            skipped("vm"),
            skipped("vm+container"),
        ],
    }
}

fn measured(level: &str, s: Stats, ratio: f64) -> BenchCell {
    BenchCell {
        level: level.to_string(),
        stats: Some(s),
        ratio_to_process: Some(ratio),
        unavailable: None,
    }
}

/// Four levels (the two VM levels skipped), three probes with one unexpected result, three
/// benchmarks: one with literature values, one whose container level was unavailable.
fn sample() -> CompareReport {
    CompareReport {
        schema_version: SCHEMA_VERSION,
        vmm_version: "0.1.0".to_string(),
        started_at: "2025-01-02T03:04:05Z".to_string(),
        duration_s: 95.4,
        host: HostFacts {
            kernel_release: "6.1.0-31-amd64".to_string(),
            cpu_model: "AMD EPYC 7B13".to_string(),
            cpus: 2,
            mem_total_mib: 24_064,
            doctor: json!({
                "kvm_access": "ok",
                "kvm_usable": true,
                "kvm_api_version": 12,
                "capabilities": {"KVM_CAP_IRQCHIP": true, "KVM_CAP_USER_MEMORY": false},
                "hw_virt_flags": ["svm"],
                "missing_capabilities": [],
                "pvm_detected": true,
                "can_boot_unmodified_linux_because": PVM,
                "can_run_test_guest_because": null,
            }),
        },
        runs: 5,
        levels: LEVELS
            .iter()
            .map(|name| LevelStatus {
                name: name.to_string(),
                skipped: name.starts_with("vm").then(|| PVM.to_string()),
            })
            .collect(),
        probes: vec![
            probe(
                "canary.shm",
                "host SysV shared memory visible",
                [
                    ("visible", "visible", Verdict::Expected),
                    ("hidden", "hidden", Verdict::Expected),
                ],
            ),
            probe(
                "kernel.same",
                "same kernel as the host",
                [
                    ("same", "same", Verdict::Expected),
                    ("different", "same", Verdict::Unexpected),
                ],
            ),
            probe(
                "net.host",
                "host loopback reachable",
                [
                    ("reachable", "reachable", Verdict::Expected),
                    ("unreachable", "unreachable", Verdict::Expected),
                ],
            ),
        ],
        benchmarks: vec![
            bench(
                "null_syscall",
                "ns",
                Better::Lower,
                stats(52.0, 50.0, 61.0),
                measured("container", stats(55.0, 51.0, 70.0), 1.06),
            ),
            bench(
                "start",
                "ms",
                Better::Lower,
                stats(1.2, 1.1, 1.6),
                measured("container", stats(45.0, 41.0, 58.0), 37.5),
            ),
            bench(
                "blk_read",
                "MB/s",
                Better::Higher,
                stats(2150.0, 2010.0, 2230.0),
                BenchCell {
                    level: "container".to_string(),
                    stats: None,
                    ratio_to_process: None,
                    unavailable: Some("overlayfs upper dir has no O_DIRECT".to_string()),
                },
            ),
        ],
        literature: vec![
            LiteratureValue {
                benchmark: "null_syscall".to_string(),
                label: "Firecracker guest getpid".to_string(),
                value: Some(64.0),
                note: "measured in a microVM on bare metal".to_string(),
                source: CITATION.to_string(),
            },
            LiteratureValue {
                benchmark: "start".to_string(),
                label: "gVisor start".to_string(),
                value: None,
                note: "about twice runc's start time".to_string(),
                source: "Young et al., HotCloud 2019".to_string(),
            },
        ],
        unexpected: 1,
    }
}

/// The `<figure class="chart">` for `id`, up to its `</figure>`.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let open = format!("<figure class=\"chart\" data-benchmark=\"{id}\">");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("no figure for {id}"));
    let len = html[start..].find("</figure>").expect("figure is closed");
    &html[start..start + len]
}

/// Every string field set to something that would break out of the markup if not escaped.
fn hostile() -> CompareReport {
    const EVIL: &str = "<script>alert(\"x\")</script>'\"><img src=x onerror=alert(1)>";
    let mut r = sample();
    r.vmm_version = EVIL.to_string();
    r.started_at = EVIL.to_string();
    r.host.kernel_release = EVIL.to_string();
    r.host.doctor = json!({ EVIL: EVIL, "nested": { EVIL: true, "k": [EVIL] } });
    r.levels[0].name = format!("</svg>{EVIL}");
    r.levels[2].skipped = Some(EVIL.to_string());
    r.probes[0].title = EVIL.to_string();
    r.probes[0].cells[0].observed = Some(EVIL.to_string());
    r.probes[0].cells[0].expected = EVIL.to_string();
    r.probes[0].cells[0].reason = EVIL.to_string();
    r.benchmarks[0].id = format!("x\" onmouseover=\"alert(1){EVIL}");
    r.benchmarks[0].title = EVIL.to_string();
    r.benchmarks[0].unit = EVIL.to_string();
    r.benchmarks[0].cells[0].level = r.levels[0].name.clone();
    r.benchmarks[2].cells[1].unavailable = Some(EVIL.to_string());
    r.literature[0].benchmark = r.benchmarks[0].id.clone();
    r.literature[0].label = EVIL.to_string();
    r.literature[1].source = EVIL.to_string();
    r
}

fn escape(s: &str) -> String {
    Esc(s).to_string()
}

#[test]
fn escape_turns_markup_and_quotes_into_entities() {
    assert_eq!(
        escape("<script>alert(\"x\") & 'y'</script>"),
        "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
    );
    assert_eq!(escape("plain text"), "plain text");
    assert_eq!(escape(""), "");
}

#[test]
fn each_benchmark_has_one_chart_figure_with_an_svg() {
    let html = render(&sample());
    assert_eq!(html.matches("<figure class=\"chart\"").count(), 3);
    for id in ["null_syscall", "start", "blk_read"] {
        let fig = figure(&html, id);
        assert_eq!(fig.matches("<svg").count(), 1, "figure {id}: {fig}");
        assert!(fig.contains("</svg>"), "figure {id}");
    }
}

#[test]
fn probe_matrix_has_its_id_and_one_row_per_probe() {
    let html = render(&sample());
    let start = html
        .find("<table id=\"probe-matrix\"")
        .expect("probe matrix");
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    assert_eq!(table.matches("<tr><th scope=\"row\">").count(), 3);
    assert_eq!(table.matches("<td class=\"cell").count(), 12);
}

#[test]
fn skipped_level_reason_is_shown_prominently() {
    let html = render(&sample());
    let callout = html.find("class=\"callout skipped\"").expect("callout");
    assert!(html[callout..].contains(&escape(PVM)));
    // Both VM levels share one reason, so one callout names both.
    assert_eq!(html.matches("class=\"callout skipped\"").count(), 1);
    assert!(html.contains("Levels <q>vm</q> and <q>vm+container</q> did not run."));
}

#[test]
fn unexpected_cell_has_the_unexpected_class() {
    let html = render(&sample());
    let cells: Vec<&str> = html
        .split("<td class=\"cell unexpected\"")
        .skip(1)
        .collect();
    assert_eq!(cells.len(), 1);
    assert!(cells[0].contains("different"));
    assert!(cells[0].contains("expected: same"));
    assert_eq!(html.matches("<td class=\"cell expected\"").count(), 5);
    assert_eq!(html.matches("<td class=\"cell not-run\"").count(), 6);
}

#[test]
fn summary_counts_unexpected_results() {
    let html = render(&sample());
    assert!(html.contains("<strong>1 unexpected</strong> of 6 probe results"));
}

#[test]
fn cell_title_and_small_text_give_expected_and_reason() {
    let html = render(&sample());
    assert!(html.contains(
        "title=\"expected: same\nwhy: at container the probe runs against its own kernel.same\""
    ));
    assert!(html.contains("<small class=\"why\">at container the probe runs"));
}

#[test]
fn missing_levels_are_labelled_not_run_with_the_reason_in_the_chart() {
    let html = render(&sample());
    let fig = figure(&html, "blk_read");
    let svg = &fig[fig.find("<svg").unwrap()..fig.find("</svg>").unwrap()];
    assert_eq!(svg.matches(">\nnot run\n<").count(), 3, "{svg}");
    assert!(svg.contains("overlayfs upper"), "{svg}");
    assert!(fig.contains("not run: overlayfs upper dir has no O_DIRECT"));
}

#[test]
fn literature_value_is_a_labelled_reference_line_and_a_note() {
    let html = render(&sample());
    let fig = figure(&html, "null_syscall");
    assert!(
        fig.contains(">\nliterature: Firecracker guest getpid\n<"),
        "{fig}"
    );
    assert!(fig.contains("stroke-dasharray") || fig.matches("<polyline").count() > 3);
    assert!(fig.contains("<span class=\"lit-tag\">literature</span>"));
    assert!(fig.contains(&escape(CITATION)));
    // A finding without a value is a note, not a line.
    let fig = figure(&html, "start");
    assert!(!fig.contains("literature: gVisor"));
    assert!(fig.contains("<strong>gVisor start</strong> &mdash; about twice"));
}

#[test]
fn stats_table_has_median_min_max_and_ratio() {
    let html = render(&sample());
    let fig = figure(&html, "start");
    assert!(fig.contains("<td>45</td><td>41</td><td>58</td><td>37.50&times;</td>"));
    assert!(fig.contains("<td>1.2</td><td>1.1</td><td>1.6</td><td>&ndash;</td>"));
}

#[test]
fn host_and_doctor_facts_are_listed() {
    let html = render(&sample());
    for fact in [
        "6.1.0-31-amd64",
        "AMD EPYC 7B13",
        "23.5 GiB",
        "kvm_api_version",
    ] {
        assert!(html.contains(fact), "{fact}");
    }
    assert!(html.contains("<span class=\"chip yes\">&#10003; KVM_CAP_IRQCHIP</span>"));
    assert!(html.contains("<span class=\"chip no\">&#10007; KVM_CAP_USER_MEMORY</span>"));
}

#[test]
fn hostile_strings_cannot_open_tags_or_attributes() {
    let html = render(&hostile());
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"), "a <script> got through");
    assert!(!lower.contains("<img"), "an <img> got through");
    assert!(!lower.contains("</svg><"), "a label closed the svg");
    assert!(
        !html.contains("\" onmouseover=\""),
        "an attribute got through"
    );
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    // The hostile benchmark id still gets its figure.
    assert_eq!(html.matches("<figure class=\"chart\"").count(), 3);
}

#[test]
fn page_has_no_script_and_references_nothing_on_the_network() {
    let html = render(&sample());
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"));
    for attr in [
        "src=", "href=", "url(", "@import", "<link", "<iframe", "<object",
    ] {
        assert!(!lower.contains(attr), "page has {attr}");
    }
    // The only URLs are the SVG namespace name (an identifier, never fetched) and the
    // literature citation's text.
    let rest = html
        .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace(&escape(CITATION), "");
    assert!(!rest.contains("http://") && !rest.contains("https://"));
}

#[test]
fn page_is_one_complete_document() {
    let html = render(&sample());
    assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(html.trim_end().ends_with("</html>"));
    assert!(html.contains("<meta charset=\"utf-8\">"));
}

#[test]
fn values_are_shown_with_about_three_significant_digits() {
    assert_eq!(fmt_value(52.0), "52");
    assert_eq!(fmt_value(12.34), "12.3");
    assert_eq!(fmt_value(1.2), "1.2");
    assert_eq!(fmt_value(0.5), "0.5");
    assert_eq!(fmt_value(0.0), "0");
    assert_eq!(fmt_value(1234.5), "1,235");
    assert_eq!(fmt_value(1_234_567.0), "1,234,567");
    assert_eq!(fmt_value(-2500.0), "-2,500");
    assert_eq!(fmt_value(f64::NAN), "–");
}
