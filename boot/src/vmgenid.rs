//! The VM generation ID (Microsoft's "Virtual Machine Generation ID" spec, which Linux's
//! `vmgenid` driver, QEMU and Firecracker implement): 16 random bytes in guest memory
//! that change whenever the VM starts again from a copy of itself, i.e. from a snapshot.
//!
//! Every VM restored from one snapshot starts with the same kernel random-number state;
//! a guest that is told its generation changed mixes the new ID into its pool and rekeys
//! at once (Linux: `add_vmfork_randomness`, which logs "crng reseeded due to virtual
//! machine fork"), instead of handing out the same "random" bytes as its siblings until
//! its next scheduled rekey.
//!
//! What the guest sees, all in the DSDT ([`crate::acpi`]):
//! - `\_SB.VGEN`, `_HID "VMGENCTR"` (the id Linux's driver matches; `_CID` the spec's
//!   `VM_GEN_COUNTER`), whose `ADDR` package holds the ID's guest-physical address
//!   ([`VMGENID_START`]) as two 32-bit halves;
//! - a Generic Event Device (`ACPI0013`) on [`VMGENID_IRQ`], whose `_EVT` method sends
//!   `Notify (VGEN, 0x80)`: the VMM writes the new ID and then pulses that line.
//!
//! The VMM writes a fresh ID at boot (the driver reads it once as device randomness) and
//! again on every restore before the vCPUs run, then raises the line; a guest booted
//! without the driver, or a snapshot from before the device existed, ignores both (the
//! line's IOAPIC pin stays masked).

use acpi_tables::aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::VMGENID_START;
use crate::platform::VMGENID_IRQ;
use crate::BootError;

/// Bytes of the generation ID.
pub const VMGENID_LEN: usize = 16;

/// ACPI device notification "status changed", the value the spec asks for.
const NOTIFY_CHANGED: u8 = 0x80;

/// Writes the generation `id` at [`VMGENID_START`].
pub fn write_generation_id<M: GuestMemoryBackend>(
    mem: &M,
    id: &[u8; VMGENID_LEN],
) -> Result<(), BootError> {
    mem.write_slice(id, GuestAddress(VMGENID_START))
        .map_err(BootError::mem("VM generation ID", VMGENID_START))
}

/// The DSDT's `\_SB` children for the generation ID: the `VGEN` device and the Generic
/// Event Device that notifies it.
pub(crate) fn dsdt_devices() -> [Vec<u8>; 2] {
    [vgen_device(), generic_event_device()]
}

/// `Device (VGEN) { _HID "VMGENCTR", _CID "VM_GEN_COUNTER", _DDN, ADDR { low, high } }`.
fn vgen_device() -> Vec<u8> {
    let low = VMGENID_START as u32;
    let high = (VMGENID_START >> 32) as u32;
    let hid = aml::Name::new("_HID".into(), &"VMGENCTR");
    let cid = aml::Name::new("_CID".into(), &"VM_GEN_COUNTER");
    let ddn = aml::Name::new("_DDN".into(), &"VM_Gen_Counter");
    let addr = aml::Name::new("ADDR".into(), &aml::Package::new(vec![&low, &high]));
    super::acpi::bytes_of(&aml::Device::new(
        "VGEN".into(),
        vec![&hid, &cid, &ddn, &addr],
    ))
}

/// `Device (GED0) { _HID "ACPI0013", _CRS { Interrupt (edge, high) { VMGENID_IRQ } },
/// Method (_EVT, 1) { If (Arg0 == VMGENID_IRQ) { Notify (\_SB.VGEN, 0x80) } } }`: Linux's
/// GED driver requests each interrupt of `_CRS` and runs `_EVT` with its number.
fn generic_event_device() -> Vec<u8> {
    let interrupt = aml::Interrupt::new(true, true, false, false, VMGENID_IRQ);
    let crs = aml::ResourceTemplate::new(vec![&interrupt]);
    let hid = aml::Name::new("_HID".into(), &"ACPI0013");
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let crs_name = aml::Name::new("_CRS".into(), &crs);
    let vgen = aml::Path::new("\\_SB_.VGEN");
    let notify = aml::Notify::new(&vgen, &NOTIFY_CHANGED);
    let is_ours = aml::Equal::new(&aml::Arg(0), &VMGENID_IRQ);
    let when_ours = aml::If::new(&is_ours, vec![&notify]);
    let evt = aml::Method::new("_EVT".into(), 1, true, vec![&when_ours]);
    super::acpi::bytes_of(&aml::Device::new(
        "GED0".into(),
        vec![&hid, &uid, &crs_name, &evt],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{e820_map, E820_RESERVED};
    use crate::platform::{Irq, PLATFORM};
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn the_id_is_written_where_the_dsdt_says_and_read_back_whole() {
        let mem: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let id: [u8; VMGENID_LEN] = *b"0123456789abcdef";
        write_generation_id(&mem, &id).unwrap();
        let mut back = [0u8; VMGENID_LEN];
        mem.read_slice(&mut back, GuestAddress(VMGENID_START))
            .unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn the_id_lies_in_memory_the_guest_is_told_is_reserved() {
        let map = e820_map(256 << 20);
        assert!(map.iter().any(|e| e.kind == E820_RESERVED
            && e.addr <= VMGENID_START
            && VMGENID_START + VMGENID_LEN as u64 <= e.addr + e.size));
    }

    #[test]
    fn the_event_line_is_no_other_devices() {
        for row in PLATFORM {
            assert_ne!(row.irq, Irq::Line(VMGENID_IRQ), "{} has the line", row.name);
        }
    }
}
