//! `vmm demo`: boots the built-in test guest and prints its conformance report, checked a
//! second time on the host side against what the VMM was asked to build.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use edge::{error_chain, exit_code};

use crate::cli::DemoArgs;
use crate::guest_image::{GuestFile, TEST_GUEST_ELF};
use crate::vm::{self, VmConfig, VmOutcome};

const DEMO_MEM_MIB: u64 = 128;
const DEMO_TESTS: &str = "boot,serial,ioapic,timer,smp";

pub fn run(args: &DemoArgs, started: Instant) -> ExitCode {
    if let Some(path) = &args.export_guest {
        return export_guest(path);
    }
    let guest = match GuestFile::create() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("vmm: error: cannot stage the built-in guest: {e}");
            return ExitCode::from(exit_code::FAILED);
        }
    };
    if args.bench_run {
        return bench_run(args, &guest, started);
    }
    let capture = Arc::new(Mutex::new(Vec::new()));
    let cmdline = format!("console=ttyS0 tests={DEMO_TESTS}");
    let config = VmConfig {
        kernel: guest.path(),
        mem_mib: DEMO_MEM_MIB,
        cpus: u16::from(args.cpus),
        cmdline: cmdline.clone(),
        initrd: None,
        devices: Default::default(),
        boot_timer: None,
    };
    let options = vm::RunOptions {
        console: vm::Console::TerminalWithCopy(capture.clone()),
        ..Default::default()
    };
    let vm_started = Instant::now();
    let outcome = vm::run_with(&config, options);
    let elapsed = vm_started.elapsed();
    let output =
        String::from_utf8_lossy(&capture.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return crate::report_vm_error(&e),
    };
    let report = Report::from_guest_output(&output);
    let host_checks = host_checks(&report, &config);
    let passed = print_report(&report, &host_checks, &outcome, &config, elapsed);
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit_code::FAILED)
    }
}

fn export_guest(path: &std::path::Path) -> ExitCode {
    match std::fs::write(path, TEST_GUEST_ELF) {
        Ok(()) => {
            println!(
                "wrote the test guest ({} bytes) to {}; boot it with:\n  vmm --kernel {} --cpus 2 --cmdline 'console=ttyS0 tests={DEMO_TESTS}'",
                TEST_GUEST_ELF.len(),
                path.display(),
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "vmm: error: cannot write the test guest to {}: {e}",
                path.display()
            );
            ExitCode::from(exit_code::BAD_INPUT)
        }
    }
}

/// One run for `vmm bench start`: no tests, the boot-timer write first, then reset.
fn bench_run(args: &DemoArgs, guest: &GuestFile, started: Instant) -> ExitCode {
    let config = VmConfig {
        kernel: guest.path(),
        mem_mib: args.mem,
        cpus: 1,
        cmdline: "console=ttyS0 tests=none boottimer end=reset".into(),
        initrd: None,
        devices: Default::default(),
        boot_timer: Some(started),
    };
    let options = vm::RunOptions {
        report_resident: true,
        ..Default::default()
    };
    match vm::run_with(&config, options) {
        Ok(VmOutcome::Reset) => ExitCode::SUCCESS,
        Ok(other) => {
            eprintln!("vmm: bench run ended unexpectedly: {other:?}");
            ExitCode::from(exit_code::FAILED)
        }
        Err(e) => {
            eprintln!("vmm: error: {}", error_chain(&e));
            ExitCode::from(exit_code::FAILED)
        }
    }
}

/// What the guest reported: its verdicts and facts.
#[derive(Debug, Default)]
pub struct Report {
    pub ok: Vec<String>,
    pub failed: Vec<String>,
    pub facts: Vec<(String, String)>,
}

impl Report {
    pub fn from_guest_output(output: &str) -> Self {
        let mut report = Report::default();
        for line in output.lines() {
            let Some(rest) = line.trim_end_matches('\r').strip_prefix("vmmtest: ") else {
                continue;
            };
            if let Some(name) = rest.strip_prefix("ok ") {
                report.ok.push(name.to_string());
            } else if let Some(what) = rest.strip_prefix("FAIL ") {
                report.failed.push(what.to_string());
            } else if let Some(fact) = rest.strip_prefix("fact ") {
                if let Some((k, v)) = fact.split_once('=') {
                    report.facts.push((k.to_string(), v.to_string()));
                }
            }
        }
        report
    }

    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Checks of the guest's facts against what the VMM was configured to build.
fn host_checks(report: &Report, config: &VmConfig) -> Vec<(bool, String)> {
    let mem_bytes = config.mem_mib << 20;
    let expected_ram_kib: u64 = boot::e820::e820_map(mem_bytes)
        .iter()
        .filter(|e| e.kind == boot::e820::E820_RAM)
        .map(|e| e.size / 1024)
        .sum();
    let mut checks = Vec::new();
    let mut check_eq = |what: &str, key: &str, expected: String| {
        let seen = report.fact(key).unwrap_or("(not reported)");
        checks.push((
            seen == expected,
            format!("{what}: guest saw {seen}, expected {expected}"),
        ));
    };
    check_eq(
        "e820 RAM (KiB)",
        "e820_ram_kib",
        expected_ram_kib.to_string(),
    );
    check_eq("MP table CPUs", "mptable_cpus", config.cpus.to_string());
    check_eq("CPUs online", "cpus_online", config.cpus.to_string());
    check_eq("command line", "cmdline", config.cmdline.clone());
    checks
}

fn print_report(
    report: &Report,
    host_checks: &[(bool, String)],
    outcome: &VmOutcome,
    config: &VmConfig,
    elapsed: std::time::Duration,
) -> bool {
    println!();
    println!(
        "vmm demo: conformance report (built-in test guest, {} vCPUs, {} MiB)",
        config.cpus, config.mem_mib
    );
    println!(
        "  guest checks: {} passed, {} failed",
        report.ok.len(),
        report.failed.len()
    );
    for failure in &report.failed {
        println!("    FAIL {failure}");
    }
    println!("  host-side checks of the guest's facts:");
    for (ok, text) in host_checks {
        println!("    {} {text}", if *ok { "ok  " } else { "FAIL" });
    }
    let ended_well = matches!(outcome, VmOutcome::DebugExit(0));
    println!(
        "  VM ended: {outcome:?} after {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );
    let passed = ended_well
        && report.failed.is_empty()
        && !report.ok.is_empty()
        && host_checks.iter().all(|(ok, _)| *ok);
    println!("verdict: {}", if passed { "PASS" } else { "FAIL" });
    passed
}
