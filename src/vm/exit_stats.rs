//! `--trace-exits`: what made the vCPUs leave KVM_RUN, counted per vCPU and summed at the end.
//!
//! Every return of KVM_RUN to the VMM is one exit. Each vCPU thread counts its own exits in
//! a [`VcpuExitStats`] (an array of integers by reason, and a small map for the port and
//! MMIO addresses the guest touched), with no locks and no shared cache lines; the VM
//! merges them into an [`ExitSummary`] once the vCPUs have stopped. Without the option the
//! run loop has no stats at all, so the cost is one `Option` test per exit.
//!
//! The summary names each reason as kvm-ioctls' `VcpuExit` variant does, in kebab case
//! (`IoOut` → `io-out`), and each address by the device the VMM placed there
//! ([`DeviceNames`]):
//!
//! ```text
//! vmm: KVM exits: 1234 in 5.2 ms (vCPU 0: 1200, vCPU 1: 34)
//! vmm:   io-out              812  port 0x3f8 serial (COM1) data 800, port 0xf4 debug-exit 1
//! vmm:   mmio-write          300  0xd0000050 virtio-mmio (blk) QueueNotify 120, …
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;

/// Why KVM_RUN returned: the `VcpuExit` variants a VM sees, and `Intr` for a KVM_RUN that
/// a signal interrupted (the ioctl fails with EINTR, or EAGAIN for an AP still waiting for
/// INIT/SIPI: KVM_EXIT_INTR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Hlt,
    Shutdown,
    SystemEvent,
    InternalError,
    FailEntry,
    IrqWindowOpen,
    Intr,
    /// Any other `VcpuExit` (debug, hypercall, …): the VMM stops on those.
    Other,
}

impl Reason {
    pub(super) const ALL: [Reason; 12] = [
        Reason::IoIn,
        Reason::IoOut,
        Reason::MmioRead,
        Reason::MmioWrite,
        Reason::Hlt,
        Reason::Shutdown,
        Reason::SystemEvent,
        Reason::InternalError,
        Reason::FailEntry,
        Reason::IrqWindowOpen,
        Reason::Intr,
        Reason::Other,
    ];
    pub(super) const COUNT: usize = Self::ALL.len();

    /// The `VcpuExit` variant's name in kebab case.
    pub fn name(self) -> &'static str {
        match self {
            Reason::IoIn => "io-in",
            Reason::IoOut => "io-out",
            Reason::MmioRead => "mmio-read",
            Reason::MmioWrite => "mmio-write",
            Reason::Hlt => "hlt",
            Reason::Shutdown => "shutdown",
            Reason::SystemEvent => "system-event",
            Reason::InternalError => "internal-error",
            Reason::FailEntry => "fail-entry",
            Reason::IrqWindowOpen => "irq-window-open",
            Reason::Intr => "intr",
            Reason::Other => "other",
        }
    }

    pub(super) fn of(exit: &VcpuExit) -> Reason {
        match exit {
            VcpuExit::IoIn(..) => Reason::IoIn,
            VcpuExit::IoOut(..) => Reason::IoOut,
            VcpuExit::MmioRead(..) => Reason::MmioRead,
            VcpuExit::MmioWrite(..) => Reason::MmioWrite,
            VcpuExit::Hlt => Reason::Hlt,
            VcpuExit::Shutdown => Reason::Shutdown,
            VcpuExit::SystemEvent(..) => Reason::SystemEvent,
            VcpuExit::InternalError => Reason::InternalError,
            VcpuExit::FailEntry(..) => Reason::FailEntry,
            VcpuExit::IrqWindowOpen => Reason::IrqWindowOpen,
            VcpuExit::Intr => Reason::Intr,
            _ => Reason::Other,
        }
    }

    fn is_port_io(self) -> bool {
        matches!(self, Reason::IoIn | Reason::IoOut)
    }
}

/// One vCPU's counts, kept by its own thread.
#[derive(Debug, Clone)]
pub struct VcpuExitStats {
    index: u8,
    by_reason: [u64; Reason::COUNT],
    /// Exits per (port I/O or MMIO reason, address).
    by_address: HashMap<(Reason, u64), u64>,
    first_run: Option<Instant>,
    ended: Option<Instant>,
}

impl VcpuExitStats {
    pub fn new(index: u8) -> Self {
        Self {
            index,
            by_reason: [0; Reason::COUNT],
            by_address: HashMap::new(),
            first_run: None,
            ended: None,
        }
    }

    /// Marks the first KVM_RUN (call once, just before the run loop).
    pub fn start(&mut self) {
        self.first_run.get_or_insert_with(Instant::now);
    }

    /// Counts one exit.
    pub fn record(&mut self, exit: &VcpuExit) {
        let reason = Reason::of(exit);
        self.by_reason[reason as usize] += 1;
        let address = match exit {
            VcpuExit::IoIn(port, _) | VcpuExit::IoOut(port, _) => u64::from(*port),
            VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _) => *addr,
            _ => return,
        };
        *self.by_address.entry((reason, address)).or_insert(0) += 1;
    }

    /// Counts a KVM_RUN that a signal interrupted before or during guest execution.
    pub fn record_interrupted(&mut self) {
        self.by_reason[Reason::Intr as usize] += 1;
    }

    /// Marks the end of the vCPU's run loop.
    pub fn finish(&mut self) {
        self.ended = Some(Instant::now());
    }

    fn total(&self) -> u64 {
        self.by_reason.iter().sum()
    }
}

/// Every vCPU's counts, summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitSummary {
    /// Exits per vCPU, in vCPU order; `None` for a vCPU whose thread never stopped.
    pub per_vcpu: Vec<(u8, Option<u64>)>,
    pub by_reason: Vec<(Reason, u64)>,
    /// (reason, address, count) for port I/O and MMIO.
    pub by_address: Vec<(Reason, u64, u64)>,
    /// From the first KVM_RUN of any vCPU to the last vCPU's end.
    pub elapsed: Duration,
}

/// How many addresses each port-I/O or MMIO line names before "… and N more".
const TOP_ADDRESSES: usize = 4;

impl ExitSummary {
    /// Sums the vCPUs' counts. `missing` are the vCPUs whose counts are lost (their thread
    /// did not stop in time).
    pub fn merge(vcpus: &[VcpuExitStats], missing: &[u8]) -> Self {
        let mut by_reason = [0u64; Reason::COUNT];
        let mut by_address: HashMap<(Reason, u64), u64> = HashMap::new();
        for v in vcpus {
            for (sum, n) in by_reason.iter_mut().zip(v.by_reason) {
                *sum += n;
            }
            for (&key, &n) in &v.by_address {
                *by_address.entry(key).or_insert(0) += n;
            }
        }
        let first = vcpus.iter().filter_map(|v| v.first_run).min();
        let last = vcpus.iter().filter_map(|v| v.ended).max();
        let elapsed = match (first, last) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        let mut per_vcpu: Vec<(u8, Option<u64>)> = vcpus
            .iter()
            .map(|v| (v.index, Some(v.total())))
            .chain(missing.iter().map(|&i| (i, None)))
            .collect();
        per_vcpu.sort_by_key(|&(i, _)| i);

        // Most frequent first; ties in a fixed order, so equal runs print alike.
        let mut by_reason: Vec<(Reason, u64)> = Reason::ALL
            .iter()
            .map(|&r| (r, by_reason[r as usize]))
            .filter(|&(_, n)| n > 0)
            .collect();
        by_reason.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut by_address: Vec<(Reason, u64, u64)> = by_address
            .into_iter()
            .map(|((reason, addr), n)| (reason, addr, n))
            .collect();
        by_address.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
        Self {
            per_vcpu,
            by_reason,
            by_address,
            elapsed,
        }
    }

    pub fn total(&self) -> u64 {
        self.by_reason.iter().map(|&(_, n)| n).sum()
    }

    /// The summary as lines for stderr, each starting with `vmm: `.
    pub fn lines(&self, names: &DeviceNames) -> Vec<String> {
        let vcpus = self
            .per_vcpu
            .iter()
            .map(|&(i, n)| match n {
                Some(n) => format!("vCPU {i}: {n}"),
                None => format!("vCPU {i}: not counted, its thread did not stop"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut lines = vec![format!(
            "vmm: KVM exits: {} in {} ({vcpus})",
            self.total(),
            format_duration(self.elapsed)
        )];
        for &(reason, count) in &self.by_reason {
            let mut line = format!("vmm:   {:<15} {count:>7}", reason.name());
            let addresses: Vec<&(Reason, u64, u64)> = self
                .by_address
                .iter()
                .filter(|&&(r, _, _)| r == reason)
                .collect();
            for (k, &&(_, addr, n)) in addresses.iter().take(TOP_ADDRESSES).enumerate() {
                line.push_str(if k == 0 { "  " } else { ", " });
                let _ = write!(line, "{} {n}", names.describe(reason, addr));
            }
            if addresses.len() > TOP_ADDRESSES {
                let _ = write!(line, ", … and {} more", addresses.len() - TOP_ADDRESSES);
            }
            lines.push(line);
        }
        lines
    }
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// The registers of a device, to name an offset in its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registers {
    /// One register, or none worth naming.
    None,
    /// A 16550 UART (8 ports).
    Uart16550,
    /// The i8042: data at 0x60, status/command at 0x64.
    I8042,
    /// A virtio-mmio transport (virtio 1.x §4.2.2).
    VirtioMmio,
}

impl Registers {
    fn name(self, offset: u64) -> Option<String> {
        let fixed = match (self, offset) {
            (Registers::None, _) => return None,
            (Registers::Uart16550, 0) => "data",
            (Registers::Uart16550, 1) => "IER",
            (Registers::Uart16550, 2) => "IIR/FCR",
            (Registers::Uart16550, 3) => "LCR",
            (Registers::Uart16550, 4) => "MCR",
            (Registers::Uart16550, 5) => "LSR",
            (Registers::Uart16550, 6) => "MSR",
            (Registers::Uart16550, 7) => "SCR",
            (Registers::I8042, 0) => "data",
            (Registers::I8042, 4) => "status/command",
            (Registers::VirtioMmio, offset) => return Some(virtio_mmio_register(offset)),
            _ => return None,
        };
        Some(fixed.to_string())
    }
}

/// The virtio-mmio register at `offset` (names as in the virtio 1.x spec's table
/// "MMIO Device Register Layout"; devices/src/virtio/mmio.rs has the same offsets).
fn virtio_mmio_register(offset: u64) -> String {
    let name = match offset {
        0x00 => "MagicValue",
        0x04 => "Version",
        0x08 => "DeviceID",
        0x0c => "VendorID",
        0x10 => "DeviceFeatures",
        0x14 => "DeviceFeaturesSel",
        0x20 => "DriverFeatures",
        0x24 => "DriverFeaturesSel",
        0x30 => "QueueSel",
        0x34 => "QueueNumMax",
        0x38 => "QueueNum",
        0x44 => "QueueReady",
        0x50 => "QueueNotify",
        0x60 => "InterruptStatus",
        0x64 => "InterruptACK",
        0x70 => "Status",
        0x80 => "QueueDescLow",
        0x84 => "QueueDescHigh",
        0x90 => "QueueDriverLow",
        0x94 => "QueueDriverHigh",
        0xa0 => "QueueDeviceLow",
        0xa4 => "QueueDeviceHigh",
        0xfc => "ConfigGeneration",
        o if o >= 0x100 => return format!("Config+{:#x}", o - 0x100),
        o => return format!("+{o:#x}"),
    };
    name.to_string()
}

#[derive(Debug, Clone)]
struct NamedRange {
    base: u64,
    len: u64,
    name: String,
    registers: Registers,
}

/// What the VMM placed where on its two buses, to name the addresses in the summary.
#[derive(Debug, Clone, Default)]
pub struct DeviceNames {
    io: Vec<NamedRange>,
    mmio: Vec<NamedRange>,
}

impl DeviceNames {
    pub fn add_io(&mut self, base: u64, len: u64, name: &str, registers: Registers) {
        self.io.push(NamedRange {
            base,
            len,
            name: name.to_string(),
            registers,
        });
    }

    pub fn add_mmio(&mut self, base: u64, len: u64, name: &str, registers: Registers) {
        self.mmio.push(NamedRange {
            base,
            len,
            name: name.to_string(),
            registers,
        });
    }

    /// `port 0x3f8 serial (COM1) data`, `0xd0000050 virtio-mmio (blk) QueueNotify`,
    /// `port 0x80 (no device)`.
    fn describe(&self, reason: Reason, addr: u64) -> String {
        let (ranges, mut text) = if reason.is_port_io() {
            (&self.io, format!("port {addr:#x}"))
        } else {
            (&self.mmio, format!("{addr:#x}"))
        };
        match ranges
            .iter()
            .find(|r| addr >= r.base && addr - r.base < r.len)
        {
            Some(r) => {
                let _ = write!(text, " {}", r.name);
                if let Some(register) = r.registers.name(addr - r.base) {
                    let _ = write!(text, " {register}");
                }
            }
            None => text.push_str(" (no device)"),
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> DeviceNames {
        let mut names = DeviceNames::default();
        names.add_io(0x3f8, 8, "serial (COM1)", Registers::Uart16550);
        names.add_io(0xf4, 1, "debug-exit", Registers::None);
        names.add_mmio(
            0xd000_0000,
            0x1000,
            "virtio-mmio (blk)",
            Registers::VirtioMmio,
        );
        names
    }

    fn io_out(stats: &mut VcpuExitStats, port: u16, times: usize) {
        let data = [0u8; 1];
        for _ in 0..times {
            stats.record(&VcpuExit::IoOut(port, &data));
        }
    }

    #[test]
    fn merge_sums_reasons_and_addresses_across_vcpus() {
        let mut a = VcpuExitStats::new(0);
        let mut b = VcpuExitStats::new(1);
        io_out(&mut a, 0x3f8, 3);
        io_out(&mut b, 0x3f8, 2);
        io_out(&mut b, 0xf4, 1);
        b.record(&VcpuExit::Hlt);
        a.record_interrupted();

        let summary = ExitSummary::merge(&[b, a], &[]);

        assert_eq!(summary.total(), 8);
        assert_eq!(summary.per_vcpu, vec![(0, Some(4)), (1, Some(4))]);
        assert_eq!(
            summary.by_reason,
            vec![(Reason::IoOut, 6), (Reason::Hlt, 1), (Reason::Intr, 1)]
        );
        assert_eq!(
            summary.by_address,
            vec![(Reason::IoOut, 0x3f8, 5), (Reason::IoOut, 0xf4, 1)]
        );
    }

    #[test]
    fn merge_keeps_reads_and_writes_of_one_address_apart() {
        let mut a = VcpuExitStats::new(0);
        let mut data = [0u8; 4];
        a.record(&VcpuExit::MmioRead(0xd000_0070, &mut data));
        a.record(&VcpuExit::MmioWrite(0xd000_0070, &data));
        a.record(&VcpuExit::MmioWrite(0xd000_0070, &data));

        let summary = ExitSummary::merge(&[a], &[]);

        assert_eq!(
            summary.by_address,
            vec![
                (Reason::MmioWrite, 0xd000_0070, 2),
                (Reason::MmioRead, 0xd000_0070, 1)
            ]
        );
    }

    #[test]
    fn merge_spans_first_run_to_last_end() {
        let mut a = VcpuExitStats::new(0);
        let mut b = VcpuExitStats::new(1);
        a.start();
        std::thread::sleep(Duration::from_millis(5));
        b.start();
        a.finish();
        std::thread::sleep(Duration::from_millis(5));
        b.finish();

        let summary = ExitSummary::merge(&[a, b], &[]);

        assert!(summary.elapsed >= Duration::from_millis(10), "{summary:?}");
    }

    #[test]
    fn summary_of_no_exits_is_zero() {
        let summary = ExitSummary::merge(&[], &[]);
        assert_eq!(summary.total(), 0);
        assert_eq!(summary.elapsed, Duration::ZERO);
    }

    #[test]
    fn lines_name_reasons_counts_and_devices() {
        let mut a = VcpuExitStats::new(0);
        io_out(&mut a, 0x3f8, 800);
        io_out(&mut a, 0xf4, 1);
        let data = [0u8; 4];
        for _ in 0..120 {
            a.record(&VcpuExit::MmioWrite(0xd000_0050, &data));
        }
        let mut summary = ExitSummary::merge(&[a], &[]);
        summary.elapsed = Duration::from_micros(5_240);

        let lines = summary.lines(&names());

        assert_eq!(
            lines,
            vec![
                "vmm: KVM exits: 921 in 5.2 ms (vCPU 0: 921)",
                "vmm:   io-out              801  port 0x3f8 serial (COM1) data 800, port 0xf4 debug-exit 1",
                "vmm:   mmio-write          120  0xd0000050 virtio-mmio (blk) QueueNotify 120",
            ]
        );
    }

    #[test]
    fn lines_name_unknown_addresses_and_cut_long_lists() {
        let mut a = VcpuExitStats::new(0);
        let mut data = [0u8; 1];
        for port in [0x80u16, 0x81, 0x82, 0x83, 0x84, 0x3fd] {
            a.record(&VcpuExit::IoIn(port, &mut data));
        }
        a.record(&VcpuExit::IoIn(0x3fd, &mut data));

        let lines = ExitSummary::merge(&[a], &[]).lines(&names());

        assert_eq!(
            lines[1],
            "vmm:   io-in                 7  port 0x3fd serial (COM1) LSR 2, port 0x80 (no device) 1, \
             port 0x81 (no device) 1, port 0x82 (no device) 1, … and 2 more"
        );
    }

    #[test]
    fn lines_say_which_vcpus_were_not_counted() {
        let mut a = VcpuExitStats::new(0);
        a.record(&VcpuExit::Hlt);

        let lines = ExitSummary::merge(&[a], &[1]).lines(&names());

        assert_eq!(
            lines[0],
            "vmm: KVM exits: 1 in 0.0 ms (vCPU 0: 1, vCPU 1: not counted, its thread did not stop)"
        );
    }

    #[test]
    fn virtio_config_space_is_named_by_offset() {
        assert_eq!(virtio_mmio_register(0x108), "Config+0x8");
        assert_eq!(virtio_mmio_register(0x50), "QueueNotify");
        assert_eq!(virtio_mmio_register(0x3c), "+0x3c");
    }

    #[test]
    fn durations_switch_to_seconds_past_one_second() {
        assert_eq!(format_duration(Duration::from_micros(5_240)), "5.2 ms");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1.50 s");
    }
}
