//! Everything the VMM writes into guest memory before the guest runs, once per VM and in
//! one order:
//!
//! 1. the payload: kernel, command line and initrd ([`loader::Payload`]), which the loader
//!    thread has been copying since guest RAM was mapped; waited for here;
//! 2. the MP table, for kernels without ACPI;
//! 3. the ACPI tables (distro kernels find the virtio devices only there) and a fresh VM
//!    generation ID at the address their DSDT names;
//! 4. the zero page, which points the kernel at the command line, the initrd and the e820
//!    map;
//! 5. the GDT, IDT and page tables every vCPU enters long mode over.
//!
//! The result, [`BootEntry`], is all a vCPU needs: setting one up (`vcpu::create_vcpu`)
//! only loads registers and writes no guest memory, however many vCPUs there are.
//!
//! The structures do not overlap (`boot::layout` checks the fixed ones at compile time;
//! the kernel and initrd lie above them), so no step overwrites another. The zero page
//! comes after the payload because it describes what the payload step placed.

use boot::cpu_tables::CpuTables;
use boot::layout::CMDLINE_START;
use boot::zero_page::ZeroPageConfig;
use vm_memory::GuestMemoryMmap;

use super::error::VmError;
use super::loader::{self, PayloadLoading};

/// What the boot structures describe, apart from the payload.
#[derive(Debug, Clone)]
pub struct BootPlan {
    /// Guest RAM in bytes: the e820 map in the zero page.
    pub mem_bytes: u64,
    /// vCPUs: the MP table and the ACPI MADT list one processor each.
    pub num_cpus: u8,
    /// The virtio-mmio windows (base, length, GSI) that the ACPI DSDT announces.
    pub virtio_windows: Vec<(u64, u64, u32)>,
}

/// Where the boot structures are, for the vCPUs' registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEntry {
    /// RIP: the kernel's 64-bit entry point.
    pub rip: u64,
    /// RSI: the zero page (`boot_params`).
    pub zero_page: u64,
    /// GDTR, IDTR and CR3.
    pub tables: CpuTables,
}

/// Writes the boot structures into `mem` in the order of the module's list, once for the
/// VM; `payload` must be loading into the same `mem`.
pub fn write_boot_structures(
    mem: &GuestMemoryMmap,
    payload: PayloadLoading,
    plan: &BootPlan,
) -> Result<BootEntry, VmError> {
    let loaded: loader::LoadedPayload = payload.wait()?;
    boot::mptable::write_mptable(mem, plan.num_cpus)?;
    boot::acpi::write_acpi_tables(mem, plan.num_cpus, &plan.virtio_windows)?;
    super::generation_id::write_fresh(mem)?;
    let zero_page = boot::zero_page::write_zero_page(
        mem,
        &ZeroPageConfig {
            setup_header: loaded.kernel.setup_header,
            cmdline_addr: CMDLINE_START,
            cmdline_size: loaded.cmdline_len,
            initrd: loaded.initrd,
            mem_bytes: plan.mem_bytes,
        },
    )?;
    let tables = boot::cpu_tables::write_cpu_tables(mem)?;
    Ok(BootEntry {
        rip: loaded.kernel.entry,
        zero_page,
        tables,
    })
}

#[cfg(test)]
mod tests;
