//! x86_64 boot structures for the `vmm` micro-VM monitor.
//!
//! Everything here is pure data: functions that write boot structures (zero page, GDT,
//! page tables, MP table) into guest memory, and functions that build or adjust the
//! `kvm_bindings` structs a vCPU is started with (registers, MSRs, CPUID, LAPIC). Nothing
//! in this crate touches a KVM file descriptor; the caller hands the results to KVM.
//!
//! Every guest-physical address is in [`layout`] (memory) or [`platform`] (ports, MMIO
//! windows and interrupt lines of the devices).
//!
//! A 64-bit boot uses, in order: [`layout::ram_ranges`] to build guest memory; once per
//! VM, after the kernel is loaded, [`mptable::write_mptable`], [`acpi::write_acpi_tables`],
//! [`zero_page::write_zero_page`] and [`cpu_tables::write_cpu_tables`] (the VMM's
//! `vm::boot_sequence` is that order); then per vCPU, writing no guest memory,
//! [`cpuid::normalize`], [`msr::boot_msrs`], [`regs::boot_regs`], [`regs::setup_sregs`],
//! [`regs::boot_fpu`] and [`lapic::set_lint`].

pub mod acpi;
pub mod cpu_tables;
pub mod cpuid;
pub mod e820;
pub mod error;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod paging;
pub mod platform;
pub mod regs;
pub mod vmgenid;
pub mod zero_page;

pub use error::BootError;
