//! `vmm --trace-exits`: the summary of KVM exits printed at the end of a run, on the
//! built-in test guest (which prints through COM1 and ends through the debug-exit port).

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{boot_guest, scratch_dir, skip_without_kvm};

/// The summary as printed: the header's total and per-vCPU counts, and one
/// (reason, count, rest of the line) per reason line.
#[derive(Debug)]
struct Summary {
    total: u64,
    per_vcpu: Vec<u64>,
    reasons: Vec<(String, u64, String)>,
}

impl Summary {
    fn reason(&self, name: &str) -> Option<&(String, u64, String)> {
        self.reasons.iter().find(|(r, _, _)| r == name)
    }
}

/// Parses `vmm: KVM exits: N in T (vCPU 0: A, vCPU 1: B)` and the `vmm:   REASON COUNT …`
/// lines after it.
fn parse_summary(stderr: &str) -> Summary {
    let mut lines = stderr
        .lines()
        .skip_while(|l| !l.starts_with("vmm: KVM exits: "));
    let header = lines.next().expect("a `vmm: KVM exits:` line on stderr");
    let rest = header.strip_prefix("vmm: KVM exits: ").unwrap();
    let (total, rest) = rest.split_once(" in ").expect("`N in T`");
    let (_, vcpus) = rest.split_once(" (").expect("per-vCPU counts");
    let per_vcpu = vcpus
        .trim_end_matches(')')
        .split(", ")
        .map(|part| {
            let (_, n) = part.split_once(": ").expect("`vCPU I: N`");
            n.parse().expect("a vCPU's count")
        })
        .collect();
    let reasons = lines
        .map_while(|l| l.strip_prefix("vmm:   "))
        .map(|l| {
            let mut words = l.split_whitespace();
            let reason = words.next().unwrap().to_string();
            let count = words.next().unwrap().parse().expect("a reason's count");
            (reason, count, words.collect::<Vec<_>>().join(" "))
        })
        .collect();
    Summary {
        total: total.parse().expect("the total"),
        per_vcpu,
        reasons,
    }
}

#[test]
fn trace_exits_counts_serial_output_and_the_counts_add_up() {
    if skip_without_kvm("trace_exits_counts_serial_output_and_the_counts_add_up") {
        return;
    }
    let run = boot_guest(&["--trace-exits"], "tests=serial");
    assert_eq!(run.code(), Some(0), "{}", run.describe());

    let summary = parse_summary(&run.stderr);

    assert!(summary.total > 0, "{}", run.stderr);
    let by_reason: u64 = summary.reasons.iter().map(|(_, n, _)| n).sum();
    assert_eq!(by_reason, summary.total, "{}", run.stderr);
    assert_eq!(summary.per_vcpu.iter().sum::<u64>(), summary.total);
    let (_, io_out, ports) = summary.reason("io-out").expect("an io-out line");
    // Every byte the guest prints is one OUT to COM1's data register.
    assert!(
        ports.contains("port 0x3f8 serial (COM1) data"),
        "{}",
        run.stderr
    );
    assert!(
        *io_out >= "vmmtest: ok serial\n".len() as u64,
        "{}",
        run.stderr
    );
    assert!(ports.contains("port 0xf4 debug-exit 1"), "{}", run.stderr);
}

#[test]
fn without_trace_exits_nothing_is_counted_or_printed() {
    if skip_without_kvm("without_trace_exits_nothing_is_counted_or_printed") {
        return;
    }
    let run = boot_guest(&[], "tests=none");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(!run.stderr.contains("KVM exits"), "{}", run.stderr);
}

#[test]
fn trace_exits_merges_every_vcpu() {
    if skip_without_kvm("trace_exits_merges_every_vcpu") {
        return;
    }
    let run = boot_guest(&["--cpus", "2", "--trace-exits"], "tests=smp");
    assert_eq!(run.code(), Some(0), "{}", run.describe());

    let summary = parse_summary(&run.stderr);

    assert_eq!(summary.per_vcpu.len(), 2, "{}", run.stderr);
    assert_eq!(summary.per_vcpu.iter().sum::<u64>(), summary.total);
    let by_reason: u64 = summary.reasons.iter().map(|(_, n, _)| n).sum();
    assert_eq!(by_reason, summary.total, "{}", run.stderr);
}

#[test]
fn trace_exits_names_virtio_registers_and_queue_notify_never_exits() {
    if skip_without_kvm("trace_exits_names_virtio_registers_and_queue_notify_never_exits") {
        return;
    }
    let dir = scratch_dir("trace-exits-blk");
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 64 * 1024]).unwrap();
    let disk_arg = disk.to_str().unwrap();
    let run = boot_guest(&["--disk", disk_arg, "--trace-exits"], "tests=blk");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run.code(), Some(0), "{}", run.describe());

    let summary = parse_summary(&run.stderr);

    let (_, _, writes) = summary.reason("mmio-write").expect("an mmio-write line");
    // The guest acknowledges each request's interrupt through the window: those exit.
    assert!(
        writes.contains("0xd0000064 virtio-mmio (blk) InterruptACK"),
        "{}",
        run.stderr
    );
    // Its notifies, one per request (as many as the acknowledgements), would rank among
    // the listed registers; they reach the device through a KVM ioeventfd instead.
    assert!(!run.stderr.contains("QueueNotify"), "{}", run.stderr);
    let reads = &summary.reason("mmio-read").expect("an mmio-read line").2;
    assert!(reads.contains("virtio-mmio (blk)"), "{}", run.stderr);
}
