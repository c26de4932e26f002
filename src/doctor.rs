//! `vmm doctor`: what this host can do, as an aligned table or one JSON object. Probing
//! ([`Report::probe`]) is kept apart from rendering ([`render_table`], [`render_json`]) so
//! the rendering and the verdicts can be tested with a made-up [`Report`].

use std::io::Write;
use std::process::ExitCode;

use edge::exit_code;
use serde_json::{json, Map, Value};

use crate::host::{self, CgroupMode};

/// Prints the report; exit status 0 whenever a report was produced, whatever its verdict.
pub fn run(json: bool) -> ExitCode {
    let report = Report::probe();
    let text = if json {
        render_json(&report)
    } else {
        render_table(&report)
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        eprintln!("vmm doctor: cannot write the report: {e}");
        return ExitCode::from(exit_code::FAILED);
    }
    if report.nothing_probed() {
        eprintln!("vmm doctor: nothing about this host could be probed");
        return ExitCode::from(exit_code::FAILED);
    }
    ExitCode::SUCCESS
}

/// Everything `vmm doctor` found out about the host.
#[derive(Debug, Clone)]
pub struct Report {
    /// Ok, or why /dev/kvm cannot be used (a [`host::KvmOpenError`] message).
    pub kvm_access: Result<(), String>,
    /// The KVM API version, if /dev/kvm could be opened (also when it is the wrong one).
    pub api_version: Option<i32>,
    /// Each of [`host::REQUIRED_CAPS`] and whether KVM has it; None if KVM is unusable.
    pub caps: Option<Vec<(&'static str, bool)>>,
    /// `KVM_CAP_MAX_VCPUS` (falling back to `KVM_CAP_NR_VCPUS`).
    pub max_vcpus: Option<usize>,
    /// `KVM_CAP_NR_VCPUS`: the recommended number of vCPUs per VM.
    pub recommended_vcpus: Option<usize>,
    /// vmx / svm in /proc/cpuinfo; None if it could not be read.
    pub hw_virt: Option<Vec<&'static str>>,
    pub pvm: bool,
    pub cgroup: CgroupMode,
    pub namespaces: Vec<(&'static str, bool)>,
}

/// The PVM explanation; the caller appends whether the built-in test guest still runs.
const PVM_REASON: &str = "this host's KVM is PVM (kvm_pvm), a software virtualization whose \
     instruction emulator cannot run unmodified Linux (xrstor, int3, popcnt in early boot)";

impl Report {
    /// Probes this host. Never fails: what cannot be probed is reported as such.
    pub fn probe() -> Report {
        let (kvm, kvm_access, api_version) = match host::open_kvm() {
            Ok(kvm) => {
                let version = kvm.get_api_version();
                (Some(kvm), Ok(()), Some(version))
            }
            Err(e) => {
                let version = match e {
                    host::KvmOpenError::ApiVersion { found, .. } => Some(found),
                    _ => None,
                };
                (None, Err(e.to_string()), version)
            }
        };
        let caps = kvm.as_ref().map(|kvm| {
            let missing = host::missing_caps(kvm);
            host::REQUIRED_CAPS
                .iter()
                .map(|&(_, name)| (name, !missing.contains(&name)))
                .collect()
        });
        Report {
            kvm_access,
            api_version,
            caps,
            max_vcpus: kvm.as_ref().map(|kvm| kvm.get_max_vcpus()),
            recommended_vcpus: kvm.as_ref().map(|kvm| kvm.get_nr_vcpus()),
            hw_virt: host::hw_virt_flags(),
            pvm: host::pvm_detected(kvm.as_ref()),
            cgroup: host::cgroup_mode(),
            namespaces: host::namespaces_available(),
        }
    }

    /// True when not a single probe gave an answer (no KVM, no /proc, no cgroups).
    pub fn nothing_probed(&self) -> bool {
        self.kvm_access.is_err()
            && self.api_version.is_none()
            && self.hw_virt.is_none()
            && self.cgroup == CgroupMode::None
            && self.namespaces.iter().all(|(_, ok)| !ok)
    }

    /// Required capabilities KVM lacks; empty if KVM could not be probed.
    pub fn missing_caps(&self) -> Vec<&'static str> {
        self.caps
            .iter()
            .flatten()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Ok if the built-in test guest (`vmm demo`) can run, else why not.
    pub fn test_guest_verdict(&self) -> Result<(), String> {
        let mut reasons = Vec::new();
        if let Err(e) = &self.kvm_access {
            reasons.push(format!("/dev/kvm is unusable ({e})"));
        }
        let missing = self.missing_caps();
        if !missing.is_empty() {
            reasons.push(format!(
                "KVM lacks required capabilities: {}",
                missing.join(", ")
            ));
        }
        join_reasons(reasons)
    }

    /// Ok if unmodified Linux guests can boot, else why not.
    pub fn linux_verdict(&self) -> Result<(), String> {
        let test_guest = self.test_guest_verdict();
        let mut reasons: Vec<String> = test_guest.clone().err().into_iter().collect();
        if self.pvm {
            reasons.push(if test_guest.is_ok() {
                format!("{PVM_REASON}; the built-in test guest (`vmm demo`) still runs")
            } else {
                PVM_REASON.to_string()
            });
        }
        join_reasons(reasons)
    }
}

fn join_reasons(reasons: Vec<String>) -> Result<(), String> {
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons.join("; and "))
    }
}

/// "yes" or "no, because …".
fn verdict_text(verdict: &Result<(), String>) -> String {
    match verdict {
        Ok(()) => "yes".to_string(),
        Err(why) => format!("no, because {why}"),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn cgroup_description(mode: CgroupMode) -> &'static str {
    match mode {
        CgroupMode::V1 => "v1",
        CgroupMode::Hybrid => "hybrid (v1 controllers, v2 hierarchy at /sys/fs/cgroup/unified)",
        CgroupMode::V2 => "v2 (unified)",
        CgroupMode::None => "none (no cgroup filesystem at /sys/fs/cgroup)",
    }
}

/// The report as an aligned two-column table, then the two verdict lines.
pub fn render_table(report: &Report) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |label: &str, value: String| rows.push((label.to_string(), value));

    row(
        "/dev/kvm",
        match &report.kvm_access {
            Ok(()) => "ok".to_string(),
            Err(e) => e.clone(),
        },
    );
    row(
        "KVM API version",
        report
            .api_version
            .map_or("unknown".to_string(), |v| v.to_string()),
    );
    for &(_, name) in host::REQUIRED_CAPS {
        let status = match &report.caps {
            None => "unknown",
            Some(caps) => match caps.iter().find(|(n, _)| *n == name) {
                Some((_, true)) => "supported",
                _ => "missing",
            },
        };
        row(name, status.to_string());
    }
    row(
        "max vCPUs",
        match (report.max_vcpus, report.recommended_vcpus) {
            (Some(max), Some(rec)) => format!("{max} (recommended {rec})"),
            (Some(max), None) => max.to_string(),
            _ => "unknown".to_string(),
        },
    );
    row(
        "hardware virtualization",
        match &report.hw_virt {
            None => "unknown (cannot read /proc/cpuinfo)".to_string(),
            Some(flags) if flags.is_empty() => "none (no vmx or svm in /proc/cpuinfo)".to_string(),
            Some(flags) => flags.join(" "),
        },
    );
    row("PVM (kvm_pvm)", yes_no(report.pvm).to_string());
    row("cgroup mode", cgroup_description(report.cgroup).to_string());
    for &(name, ok) in &report.namespaces {
        let status = if ok { "available" } else { "unavailable" };
        row(&format!("{name} namespace"), status.to_string());
    }

    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in &rows {
        out.push_str(&format!("{label:<width$}  {value}\n"));
    }
    out.push('\n');
    out.push_str(&format!(
        "can boot unmodified Linux guests: {}\n",
        verdict_text(&report.linux_verdict())
    ));
    out.push_str(&format!(
        "can run the built-in test guest: {}",
        verdict_text(&report.test_guest_verdict())
    ));
    out
}

/// The report as one JSON object. Keys are stable; values not probed are null.
pub fn render_json(report: &Report) -> String {
    let caps = report.caps.as_ref().map(|caps| {
        caps.iter()
            .map(|&(name, ok)| (name.to_string(), Value::Bool(ok)))
            .collect::<Map<_, _>>()
    });
    let namespaces: Map<_, _> = report
        .namespaces
        .iter()
        .map(|&(name, ok)| (name.to_string(), Value::Bool(ok)))
        .collect();
    let linux = report.linux_verdict();
    let test_guest = report.test_guest_verdict();
    let value = json!({
        "kvm_access": match &report.kvm_access {
            Ok(()) => "ok",
            Err(e) => e.as_str(),
        },
        "kvm_usable": report.kvm_access.is_ok(),
        "kvm_api_version": report.api_version,
        "capabilities": caps,
        "missing_capabilities": report.caps.as_ref().map(|_| report.missing_caps()),
        "max_vcpus": report.max_vcpus,
        "recommended_vcpus": report.recommended_vcpus,
        "hw_virt_flags": report.hw_virt,
        "pvm_detected": report.pvm,
        "cgroup_mode": report.cgroup.as_str(),
        "namespaces": namespaces,
        "can_boot_unmodified_linux": linux.is_ok(),
        "can_boot_unmodified_linux_because": linux.err(),
        "can_run_test_guest": test_guest.is_ok(),
        "can_run_test_guest_because": test_guest.err(),
    });
    // `{:#}` is serde_json's pretty printer, which cannot fail for a Value.
    format!("{value:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_namespaces() -> Vec<(&'static str, bool)> {
        host::NAMESPACES.iter().map(|&n| (n, true)).collect()
    }

    fn good_host() -> Report {
        Report {
            kvm_access: Ok(()),
            api_version: Some(12),
            caps: Some(
                host::REQUIRED_CAPS
                    .iter()
                    .map(|&(_, n)| (n, true))
                    .collect(),
            ),
            max_vcpus: Some(1024),
            recommended_vcpus: Some(8),
            hw_virt: Some(vec!["vmx"]),
            pvm: false,
            cgroup: CgroupMode::V2,
            namespaces: all_namespaces(),
        }
    }

    fn pvm_host() -> Report {
        Report {
            hw_virt: Some(vec![]),
            pvm: true,
            cgroup: CgroupMode::Hybrid,
            ..good_host()
        }
    }

    fn no_kvm_host() -> Report {
        Report {
            kvm_access: Err(host::KvmOpenError::NotFound.to_string()),
            api_version: None,
            caps: None,
            max_vcpus: None,
            recommended_vcpus: None,
            ..good_host()
        }
    }

    fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
    }

    #[test]
    fn table_has_a_row_for_every_required_capability() {
        for report in [good_host(), no_kvm_host()] {
            let table = render_table(&report);
            for (_, name) in host::REQUIRED_CAPS {
                line_starting(&table, name);
            }
        }
    }

    #[test]
    fn table_values_start_in_one_column() {
        let table = render_table(&good_host());
        let rows: Vec<&str> = table.lines().take_while(|l| !l.is_empty()).collect();
        let column = rows[0].rfind(" ok").unwrap() + 1;
        for row in &rows {
            let (label, value) = row.split_at(column);
            assert!(label.ends_with("  ") && !value.starts_with(' '), "{row:?}");
        }
    }

    #[test]
    fn good_host_can_boot_linux_and_the_test_guest() {
        let table = render_table(&good_host());
        assert_eq!(
            line_starting(&table, "can boot unmodified Linux guests:"),
            "can boot unmodified Linux guests: yes"
        );
        assert_eq!(
            line_starting(&table, "can run the built-in test guest:"),
            "can run the built-in test guest: yes"
        );
    }

    #[test]
    fn pvm_host_cannot_boot_linux_but_runs_the_test_guest() {
        let table = render_table(&pvm_host());
        let linux = line_starting(&table, "can boot unmodified Linux guests:");
        assert!(
            linux.contains("no, because this host's KVM is PVM (kvm_pvm)"),
            "{linux}"
        );
        assert!(linux.contains("xrstor, int3, popcnt"), "{linux}");
        assert!(linux.ends_with("the built-in test guest (`vmm demo`) still runs"));
        assert_eq!(
            line_starting(&table, "can run the built-in test guest:"),
            "can run the built-in test guest: yes"
        );
    }

    #[test]
    fn host_without_kvm_can_run_nothing_and_says_why() {
        let report = no_kvm_host();
        let table = render_table(&report);
        assert!(line_starting(&table, "/dev/kvm").contains("does not exist"));
        let linux = line_starting(&table, "can boot unmodified Linux guests:");
        assert!(
            linux.contains("no, because /dev/kvm is unusable"),
            "{linux}"
        );
        let guest = line_starting(&table, "can run the built-in test guest:");
        assert!(
            guest.contains("no, because /dev/kvm is unusable"),
            "{guest}"
        );
        assert!(!report.nothing_probed());
    }

    #[test]
    fn missing_capability_is_named_in_both_verdicts() {
        let mut report = good_host();
        report.caps.as_mut().unwrap()[6].1 = false;
        let table = render_table(&report);
        assert!(line_starting(&table, "KVM_CAP_PIT2").ends_with("missing"));
        for prefix in ["can boot unmodified", "can run the built-in"] {
            let line = line_starting(&table, prefix);
            assert!(
                line.contains("lacks required capabilities: KVM_CAP_PIT2"),
                "{line}"
            );
        }
    }

    #[test]
    fn pvm_host_without_kvm_access_does_not_claim_the_test_guest_runs() {
        let report = Report {
            pvm: true,
            ..no_kvm_host()
        };
        let why = report.linux_verdict().unwrap_err();
        assert!(
            why.contains("/dev/kvm is unusable") && why.contains("PVM"),
            "{why}"
        );
        assert!(!why.contains("still runs"), "{why}");
    }

    #[test]
    fn json_has_every_key() {
        let v: Value = serde_json::from_str(&render_json(&pvm_host())).unwrap();
        for key in [
            "kvm_access",
            "kvm_usable",
            "kvm_api_version",
            "capabilities",
            "missing_capabilities",
            "max_vcpus",
            "recommended_vcpus",
            "hw_virt_flags",
            "pvm_detected",
            "cgroup_mode",
            "namespaces",
            "can_boot_unmodified_linux",
            "can_boot_unmodified_linux_because",
            "can_run_test_guest",
            "can_run_test_guest_because",
        ] {
            assert!(v.get(key).is_some(), "missing key {key} in {v}");
        }
        assert_eq!(
            v["capabilities"].as_object().unwrap().len(),
            host::REQUIRED_CAPS.len()
        );
        assert_eq!(v["pvm_detected"], true);
        assert_eq!(v["cgroup_mode"], "hybrid");
        assert_eq!(v["can_boot_unmodified_linux"], false);
        assert_eq!(v["can_run_test_guest"], true);
        assert_eq!(v["can_run_test_guest_because"], Value::Null);
    }

    #[test]
    fn json_for_host_without_kvm_has_nulls_and_the_open_error() {
        let v: Value = serde_json::from_str(&render_json(&no_kvm_host())).unwrap();
        assert_eq!(v["kvm_usable"], false);
        assert!(v["kvm_access"].as_str().unwrap().contains("does not exist"));
        assert_eq!(v["capabilities"], Value::Null);
        assert_eq!(v["kvm_api_version"], Value::Null);
        assert_eq!(v["can_boot_unmodified_linux"], false);
    }
}
