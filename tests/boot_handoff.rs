//! End to end: the test guest checks the boot handoff (zero page, e820, command line,
//! paging, segments, CPUID, MP table, initrd) and reports facts that are asserted here
//! against what `vmm` was asked to build.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{boot_guest, skip_without_kvm};

/// [EBDA_START, HIMEM_START) is reserved in the e820 map, so the guest sees this much less.
const RESERVED_BELOW_1M_KIB: u64 = (0x10_0000 - 0x9_fc00) / 1024;
const MIB: u64 = 1 << 20;

fn assert_all_passed(run: &common::Run) {
    assert!(
        run.failures().is_empty(),
        "guest failures: {:?}\n{}",
        run.failures(),
        run.describe()
    );
    assert!(
        run.guest_lines()
            .iter()
            .any(|l| l.starts_with("summary passed=") && l.ends_with(" failed=0")),
        "{}",
        run.describe()
    );
}

#[test]
fn boot_checks_pass_and_e820_ram_matches_mem() {
    if skip_without_kvm("boot_checks_pass_and_e820_ram_matches_mem") {
        return;
    }
    let run = boot_guest(&["--mem", "128"], "tests=boot");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_all_passed(&run);
    assert!(run.guest_lines().contains(&"ok boot"));
    let ram_kib: u64 = run.fact("e820_ram_kib").unwrap().parse().unwrap();
    assert_eq!(ram_kib, 128 * 1024 - RESERVED_BELOW_1M_KIB);
}

#[test]
fn e820_puts_ram_above_4g_past_the_mmio_gap() {
    if skip_without_kvm("e820_puts_ram_above_4g_past_the_mmio_gap") {
        return;
    }
    // 3.5 GiB: 3 GiB below the gap, 512 MiB above 4 GiB. Untouched RAM costs nothing.
    let run = boot_guest(&["--mem", "3584"], "tests=boot");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let entries = run.facts("e820");
    assert!(
        entries.contains(&"0xc0000000:0x40000000:2"),
        "MMIO gap reserved: {entries:?}"
    );
    assert!(
        entries.contains(&"0x100000000:0x20000000:1"),
        "high RAM: {entries:?}"
    );
    let ram_kib: u64 = run.fact("e820_ram_kib").unwrap().parse().unwrap();
    assert_eq!(ram_kib, 3584 * 1024 - RESERVED_BELOW_1M_KIB);
}

#[test]
fn command_line_reaches_the_guest_verbatim() {
    if skip_without_kvm("command_line_reaches_the_guest_verbatim") {
        return;
    }
    let run = boot_guest(&[], "tests=boot extra=value quiet");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(
        run.fact("cmdline"),
        Some("console=ttyS0 tests=boot extra=value quiet")
    );
}

#[test]
fn mp_table_lists_every_vcpu() {
    if skip_without_kvm("mp_table_lists_every_vcpu") {
        return;
    }
    for cpus in ["1", "3"] {
        let run = boot_guest(&["--cpus", cpus], "tests=boot");
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(run.fact("mptable_cpus"), Some(cpus), "{}", run.describe());
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[test]
fn initrd_is_page_aligned_at_top_of_low_ram_with_its_contents() {
    if skip_without_kvm("initrd_is_page_aligned_at_top_of_low_ram_with_its_contents") {
        return;
    }
    let dir = common::scratch_dir("initrd");
    let contents: Vec<u8> = (0..6000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let path = dir.join("initrd.img");
    std::fs::write(&path, &contents).unwrap();
    let run = boot_guest(
        &["--mem", "64", "--initrd", path.to_str().unwrap()],
        "tests=initrd",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let addr = u64::from_str_radix(
        run.fact("initrd_addr").unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert_eq!(addr % 4096, 0, "page aligned");
    assert!(addr + contents.len() as u64 <= 64 * MIB, "inside RAM");
    let top_aligned = (64 * MIB - contents.len() as u64) & !0xfff;
    assert_eq!(addr, top_aligned, "at the top of low RAM, page aligned");
    assert_eq!(run.fact("initrd_size"), Some("6000"));
    assert_eq!(
        run.fact("initrd_fnv1a"),
        Some(format!("{:#010x}", fnv1a(&contents)).as_str())
    );
}

#[test]
fn guest_without_initrd_fails_its_initrd_test() {
    if skip_without_kvm("guest_without_initrd_fails_its_initrd_test") {
        return;
    }
    // The guest's check must be able to fail: without --initrd it reports FAIL, exit 3.
    let run = boot_guest(&[], "tests=initrd");
    assert_eq!(run.code(), Some(3), "{}", run.describe());
    assert!(!run.failures().is_empty());
}

#[test]
fn cpuid_announces_the_tsc_deadline_timer_when_kvm_emulates_it() {
    if skip_without_kvm("cpuid_announces_the_tsc_deadline_timer_when_kvm_emulates_it") {
        return;
    }
    let kvm = kvm_ioctls::Kvm::new().expect("open /dev/kvm");
    let emulated = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    let run = boot_guest(&["--mem", "128"], "tests=boot");
    assert_all_passed(&run);
    assert_eq!(
        run.fact("tsc_deadline"),
        Some(if emulated { "1" } else { "0" }),
        "KVM_CAP_TSC_DEADLINE_TIMER={emulated}\n{}",
        run.describe()
    );
}
