//! End to end: serial output and input, interrupts through the IOAPIC and the LAPIC
//! timer, SMP bring-up with INIT/SIPI, and every way a guest can end the VM.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{boot_guest, run_vmm_with, skip_without_kvm, TEST_GUEST};

#[test]
fn serial_output_reaches_stdout() {
    if skip_without_kvm("serial_output_reaches_stdout") {
        return;
    }
    let run = boot_guest(&[], "tests=serial");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(run.fact("serial_line"), Some("the quick brown fox"));
}

#[test]
fn piped_stdin_reaches_the_guest_serial_port() {
    if skip_without_kvm("piped_stdin_reaches_the_guest_serial_port") {
        return;
    }
    let run = run_vmm_with(
        &[
            "--kernel",
            TEST_GUEST,
            "--cmdline",
            "console=ttyS0 tests=echo",
        ],
        b"hello from the host\n",
        common::GUEST_TIMEOUT,
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(run.fact("echo"), Some("hello from the host"));
}

#[test]
fn serial_interrupt_arrives_through_the_ioapic() {
    if skip_without_kvm("serial_interrupt_arrives_through_the_ioapic") {
        return;
    }
    let run = boot_guest(&[], "tests=ioapic");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let irqs: u32 = run.fact("ioapic_irqs").unwrap().parse().unwrap();
    assert!(irqs >= 1, "{}", run.describe());
}

#[test]
fn lapic_timer_interrupt_arrives() {
    if skip_without_kvm("lapic_timer_interrupt_arrives") {
        return;
    }
    let run = boot_guest(&[], "tests=timer");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let irqs: u32 = run.fact("timer_irqs").unwrap().parse().unwrap();
    assert!(irqs >= 1, "{}", run.describe());
}

fn assert_smp(cpus: usize) {
    let n = cpus.to_string();
    let run = boot_guest(&["--cpus", &n], "tests=smp");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(
        run.fact("cpus_online"),
        Some(n.as_str()),
        "{}",
        run.describe()
    );
    let mut ids: Vec<String> = run
        .facts("cpu")
        .iter()
        .map(|f| f.split("apic_id=").nth(1).unwrap().to_string())
        .collect();
    ids.sort();
    let expected: Vec<String> = (0..cpus).map(|i| i.to_string()).collect();
    assert_eq!(
        ids,
        expected,
        "one distinct APIC ID per vCPU\n{}",
        run.describe()
    );
}

#[test]
fn two_vcpus_start_and_report_their_apic_ids() {
    if skip_without_kvm("two_vcpus_start_and_report_their_apic_ids") {
        return;
    }
    assert_smp(2);
}

#[test]
fn four_vcpus_start_and_report_their_apic_ids() {
    if skip_without_kvm("four_vcpus_start_and_report_their_apic_ids") {
        return;
    }
    assert_smp(4);
}

#[test]
fn i8042_reset_ends_the_vm_with_status_0() {
    if skip_without_kvm("i8042_reset_ends_the_vm_with_status_0") {
        return;
    }
    let run = boot_guest(&[], "tests=none end=reset");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stdout.contains("summary passed=0 failed=0"));
}

#[test]
fn debug_exit_ends_the_vm_with_the_guests_status() {
    if skip_without_kvm("debug_exit_ends_the_vm_with_the_guests_status") {
        return;
    }
    for code in [0, 42, 255] {
        let run = boot_guest(&[], &format!("tests=none end=exit:{code}"));
        assert_eq!(run.code(), Some(code), "{}", run.describe());
    }
}

#[test]
fn triple_fault_is_reported_and_exits_1() {
    if skip_without_kvm("triple_fault_is_reported_and_exits_1") {
        return;
    }
    let run = boot_guest(&["--cpus", "2"], "tests=none end=triplefault");
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(run.stderr.contains("triple-faulted"), "{}", run.describe());
}

#[test]
fn boot_timer_reports_time_since_vmm_start() {
    if skip_without_kvm("boot_timer_reports_time_since_vmm_start") {
        return;
    }
    let run = boot_guest(&["--boot-timer"], "boottimer tests=none end=reset");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("boot-timer:"))
        .unwrap_or_else(|| panic!("{}", run.describe()));
    assert!(line.contains("ms after the VMM started"), "{line}");
}

#[test]
fn boot_timer_write_is_ignored_without_the_flag() {
    if skip_without_kvm("boot_timer_write_is_ignored_without_the_flag") {
        return;
    }
    let run = boot_guest(&[], "boottimer tests=none end=reset");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(!run.stderr.contains("boot-timer"), "{}", run.describe());
}

#[test]
#[should_panic(expected = "overran")]
fn guest_that_hangs_is_killed_and_reported() {
    if skip_without_kvm("guest_that_hangs_is_killed_and_reported") {
        panic!("overran: (skipped, no KVM)");
    }
    run_vmm_with(
        &[
            "--kernel",
            TEST_GUEST,
            "--cmdline",
            "console=ttyS0 tests=none end=halt",
        ],
        b"",
        Duration::from_secs(2),
    );
}

#[test]
fn sigterm_stops_a_running_vm_with_status_143() {
    if skip_without_kvm("sigterm_stops_a_running_vm_with_status_143") {
        return;
    }
    let mut child = std::process::Command::new(common::VMM)
        .args([
            "--kernel",
            TEST_GUEST,
            "--cpus",
            "2",
            "--cmdline",
            "console=ttyS0 tests=none end=halt",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "vmm did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(143));
}

#[test]
fn demo_passes_its_conformance_report() {
    if skip_without_kvm("demo_passes_its_conformance_report") {
        return;
    }
    let run = common::run_vmm(&["demo"]);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stdout.contains("verdict: PASS"), "{}", run.describe());
}

#[test]
fn bench_start_reports_measured_numbers() {
    if skip_without_kvm("bench_start_reports_measured_numbers") {
        return;
    }
    let run = common::run_vmm(&["bench", "start", "--runs", "3"]);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stdout.contains("3 runs"), "{}", run.describe());
    assert!(run.stdout.contains("median"), "{}", run.describe());
    assert!(run.stdout.contains("peak RSS"), "{}", run.describe());
}

#[test]
fn instruction_kvm_cannot_run_ends_the_vm_with_a_clear_report() {
    if skip_without_kvm("instruction_kvm_cannot_run_ends_the_vm_with_a_clear_report") {
        return;
    }
    let run = boot_guest(&[], "tests=none end=unsupported");
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        // PVM's emulator cannot run popcnt: the VM fails, and the message says why.
        assert_eq!(run.code(), Some(1), "{}", run.describe());
        assert!(
            run.stderr.contains("KVM_EXIT_INTERNAL_ERROR"),
            "{}",
            run.describe()
        );
        assert!(run.stderr.contains("PVM"), "{}", run.describe());
    } else {
        // Hardware virtualization runs it natively.
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(run.fact("unsupported_instruction"), Some("ran"));
    }
}
