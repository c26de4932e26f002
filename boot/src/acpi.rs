//! ACPI tables for a hardware-reduced micro-VM: RSDP → XSDT → FADT (→ DSDT) and MADT,
//! built with the `acpi_tables` crate (as Cloud Hypervisor and Firecracker do) and written
//! to [`ACPI_RSDP_START`] and up, where Linux scans for the RSDP.
//!
//! What a guest learns from them:
//! - FADT: hardware-reduced ACPI (no PM timer, no SCI, no legacy fixed hardware), no VGA,
//!   no MSI, no CMOS RTC; the i8042 bit is left clear, so Linux does not probe the
//!   keyboard controller (`reboot=k` still resets through port 0x64). Its sleep control
//!   and status registers are the one-byte port [`ACPI_SLEEP_PORT`]: `poweroff` writes
//!   SLP_TYP = 5 | SLP_EN there (see `devices::acpi_pm`).
//! - MADT: one enabled local APIC per vCPU (APIC IDs 0..n, vCPU 0 boots), the IOAPIC at
//!   [`IOAPIC_ADDR`] with GSI base 0. No interrupt source overrides: ISA IRQs map 1:1 to
//!   IOAPIC pins, as in the MP table and KVM's default GSI routing.
//! - DSDT: `\_S5` (so Linux offers ACPI power-off), one `LNRO0005` device per virtio-mmio
//!   window (memory resource + edge, active-high interrupt), which Linux's virtio-mmio
//!   driver binds to — distro kernels built without `virtio_mmio.device=` support need
//!   this — the console `PNP0501` at [`COM1_PORT`] with its IRQ (hardware-reduced means
//!   no legacy PIC, so Linux maps no ISA IRQ unless a device names it), and a `QEMU0001`
//!   pvpanic device at [`PVPANIC_PORT`], and the VM generation ID with the Generic Event
//!   Device that announces its changes ([`crate::vmgenid`]).
//!
//! The MP table stays: kernels built without ACPI still find the vCPUs there.

use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError};

use crate::layout::{ACPI_RSDP_START, ACPI_TABLES_END, ACPI_TABLES_START};
use crate::mptable::MAX_SUPPORTED_CPUS;
use crate::platform::{
    ACPI_SLEEP_PORT, APIC_ADDR, COM1, COM1_IRQ, COM1_PORT, IOAPIC_ADDR, PVPANIC, PVPANIC_PORT,
};
use crate::BootError;

/// OEM ID in every table header (6 bytes).
const OEM_ID: [u8; 6] = *b"VMM   ";
/// OEM table ID in every table header (8 bytes).
const OEM_TABLE_ID: [u8; 8] = *b"VMMMICRO";
const OEM_REVISION: u32 = 1;
/// Sleep type value of S5 (soft off) in `\_S5`; the ACPI PM device matches on it.
pub const S5_SLEEP_TYPE: u8 = 5;
/// IA-PC boot architecture flags: VGA not present (bit 2), MSI not supported (bit 3),
/// CMOS RTC not present (bit 5). Bit 1 (8042 present) stays clear.
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3) | (1 << 5);

/// One virtio-mmio device as the DSDT describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmioWindow {
    /// Guest physical base of the register window.
    pub base: u64,
    /// Window size in bytes.
    pub len: u64,
    /// IOAPIC pin (GSI) of the device's interrupt.
    pub irq: u32,
}

impl From<(u64, u64, u32)> for VirtioMmioWindow {
    fn from((base, len, irq): (u64, u64, u32)) -> Self {
        Self { base, len, irq }
    }
}

/// Writes the RSDP at [`ACPI_RSDP_START`] and the DSDT, FADT, MADT and XSDT after it for
/// `num_cpus` vCPUs and the virtio-mmio windows `virtio` (base, length, GSI). Returns the
/// RSDP address, for `boot_params.acpi_rsdp_addr` (Linux finds it by scanning otherwise).
pub fn write_acpi_tables<M: GuestMemoryBackend>(
    mem: &M,
    num_cpus: u8,
    virtio: &[(u64, u64, u32)],
) -> Result<u64, BootError> {
    if num_cpus == 0 || num_cpus > MAX_SUPPORTED_CPUS {
        return Err(BootError::TooManyCpus {
            requested: num_cpus,
            max: MAX_SUPPORTED_CPUS,
        });
    }
    let windows: Vec<VirtioMmioWindow> = virtio.iter().copied().map(Into::into).collect();
    let mut next = ACPI_TABLES_START;
    let dsdt_addr = place(mem, &mut next, &dsdt(&windows)?, "ACPI DSDT")?;
    let fadt_addr = place(mem, &mut next, &fadt(dsdt_addr), "ACPI FADT")?;
    let madt_addr = place(mem, &mut next, &madt(num_cpus), "ACPI MADT")?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = place(mem, &mut next, &bytes_of(&xsdt), "ACPI XSDT")?;
    let rsdp = bytes_of(&Rsdp::new(OEM_ID, xsdt_addr));
    mem.write_slice(&rsdp, GuestAddress(ACPI_RSDP_START))
        .map_err(BootError::mem("ACPI RSDP", ACPI_RSDP_START))?;
    Ok(ACPI_RSDP_START)
}

pub(crate) fn bytes_of(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// Writes `table` at `*next` (8-byte aligned) inside the ACPI area and advances `*next`.
fn place<M: GuestMemoryBackend>(
    mem: &M,
    next: &mut u64,
    table: &[u8],
    what: &'static str,
) -> Result<u64, BootError> {
    let addr = *next;
    let end = addr + table.len() as u64;
    if end > ACPI_TABLES_END {
        // The area holds the tables for the largest vCPU count and every virtio IRQ many
        // times over; only a caller passing thousands of windows gets here.
        return Err(BootError::GuestMemory {
            what,
            addr,
            source: GuestMemoryError::InvalidGuestAddress(GuestAddress(end)),
        });
    }
    mem.write_slice(table, GuestAddress(addr))
        .map_err(BootError::mem(what, addr))?;
    *next = end.next_multiple_of(8);
    Ok(addr)
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let sleep_register = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(ACPI_SLEEP_PORT),
    );
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        // No fixed-feature power or sleep button.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.sleep_control_reg = sleep_register;
    fadt.sleep_status_reg = sleep_register;
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    bytes_of(&fadt.finalize())
}

fn madt(num_cpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(APIC_ADDR as u32),
    );
    for cpu in 0..num_cpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    // The IOAPIC takes the ID after the last vCPU, as in the MP table.
    madt.add_structure(IoApic::new(num_cpus, IOAPIC_ADDR as u32, 0));
    bytes_of(&madt)
}

fn dsdt(windows: &[VirtioMmioWindow]) -> Result<Vec<u8>, BootError> {
    let mut body = Vec::new();
    aml::Name::new("_S5_".into(), &aml::Package::new(vec![&S5_SLEEP_TYPE])).to_aml_bytes(&mut body);

    let mut devices: Vec<Vec<u8>> = vec![com1_device()];
    for (i, w) in windows.iter().enumerate() {
        devices.push(virtio_device(i, w)?);
    }
    devices.push(pvpanic_device());
    devices.extend(crate::vmgenid::dsdt_devices());
    let scope_children: Vec<RawAml> = devices.into_iter().map(RawAml).collect();
    let scope_refs: Vec<&dyn Aml> = scope_children.iter().map(|d| d as &dyn Aml).collect();
    aml::Scope::new("\\_SB_".into(), scope_refs).to_aml_bytes(&mut body);

    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    dsdt.append_slice(&body);
    Ok(dsdt.as_slice().to_vec())
}

/// `Device (Vnnn) { _HID "LNRO0005", _UID n, _CRS { Memory32Fixed, Interrupt } }`.
fn virtio_device(index: usize, w: &VirtioMmioWindow) -> Result<Vec<u8>, BootError> {
    let (base, len) = match (u32::try_from(w.base), u32::try_from(w.len)) {
        (Ok(base), Ok(len)) if u64::from(base) + u64::from(len) <= 1 << 32 => (base, len),
        // Memory32Fixed describes 32-bit windows only; ours all sit in the MMIO gap.
        _ => {
            return Err(BootError::GuestMemory {
                what: "virtio-mmio window for the DSDT (must lie below 4 GiB)",
                addr: w.base,
                source: GuestMemoryError::InvalidGuestAddress(GuestAddress(w.base)),
            })
        }
    };
    let name = format!("V{:03X}", index);
    let uid = index as u32;
    let memory = aml::Memory32Fixed::new(true, base, len);
    let interrupt = aml::Interrupt::new(true, true, false, false, w.irq);
    let crs = aml::ResourceTemplate::new(vec![&memory, &interrupt]);
    let hid = aml::Name::new("_HID".into(), &"LNRO0005");
    let uid_name = aml::Name::new("_UID".into(), &uid);
    let crs_name = aml::Name::new("_CRS".into(), &crs);
    Ok(bytes_of(&aml::Device::new(
        name.as_str().into(),
        vec![&hid, &uid_name, &crs_name],
    )))
}

/// `Device (COM1) { _HID PNP0501, _UID 0, _CRS { IO (0x3f8, 8), Interrupt (4) } }`, from
/// the platform table's row.
/// Hardware-reduced ACPI means no legacy PIC, so Linux sets up no ISA IRQ on its own;
/// this entry is what gives the console its interrupt (as in Cloud Hypervisor's DSDT).
fn com1_device() -> Vec<u8> {
    let io = aml::IO::new(COM1_PORT, COM1_PORT, 1, COM1.len as u8);
    let interrupt = aml::Interrupt::new(true, true, false, false, COM1_IRQ);
    let crs = aml::ResourceTemplate::new(vec![&io, &interrupt]);
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501"));
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let crs_name = aml::Name::new("_CRS".into(), &crs);
    bytes_of(&aml::Device::new(
        "COM1".into(),
        vec![&hid, &uid, &crs_name],
    ))
}

/// `Device (PEVT) { _HID "QEMU0001", _CRS { IO (PVPANIC_PORT, 1) } }`: Linux's pvpanic
/// driver writes 1 to the port when the kernel panics.
fn pvpanic_device() -> Vec<u8> {
    let io = aml::IO::new(PVPANIC_PORT, PVPANIC_PORT, 1, PVPANIC.len as u8);
    let crs = aml::ResourceTemplate::new(vec![&io]);
    let hid = aml::Name::new("_HID".into(), &"QEMU0001");
    let crs_name = aml::Name::new("_CRS".into(), &crs);
    bytes_of(&aml::Device::new("PEVT".into(), vec![&hid, &crs_name]))
}

/// Already-encoded AML, so that devices built in a loop can sit in one `Scope`.
struct RawAml(Vec<u8>);

impl Aml for RawAml {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

#[cfg(test)]
#[path = "acpi_tests.rs"]
mod tests;
