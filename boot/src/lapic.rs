//! Local APIC setup: LINT0 delivers the PIC's ExtINT and LINT1 delivers NMI, the
//! virtual-wire wiring Linux expects from a PC (and that the MP table describes).

use kvm_bindings::kvm_lapic_state;

/// LVT LINT0 register offset in the APIC register page.
pub const APIC_LVT0: usize = 0x350;
/// LVT LINT1 register offset in the APIC register page.
pub const APIC_LVT1: usize = 0x360;
/// LVT delivery mode: NMI.
pub const APIC_MODE_NMI: u32 = 0x4;
/// LVT delivery mode: ExtINT (vector supplied by the external PIC).
pub const APIC_MODE_EXTINT: u32 = 0x7;

const DELIVERY_MODE_MASK: u32 = 0x7 << 8;

/// Reads the 32-bit little-endian APIC register at byte `offset` of `lapic.regs`.
pub fn read_lapic_reg(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let bytes = &lapic.regs[offset..offset + 4];
    u32::from_le_bytes([
        bytes[0] as u8,
        bytes[1] as u8,
        bytes[2] as u8,
        bytes[3] as u8,
    ])
}

/// Writes `value` little-endian to the APIC register at byte `offset` of `lapic.regs`.
pub fn write_lapic_reg(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (dst, src) in lapic.regs[offset..offset + 4]
        .iter_mut()
        .zip(value.to_le_bytes())
    {
        *dst = src as _;
    }
}

fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !DELIVERY_MODE_MASK) | (mode << 8)
}

/// Sets LINT0 to ExtINT and LINT1 to NMI, keeping the other bits of both registers.
pub fn set_lint(lapic: &mut kvm_lapic_state) {
    let lvt0 = read_lapic_reg(lapic, APIC_LVT0);
    write_lapic_reg(lapic, APIC_LVT0, with_delivery_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = read_lapic_reg(lapic, APIC_LVT1);
    write_lapic_reg(lapic, APIC_LVT1, with_delivery_mode(lvt1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_registers_are_little_endian() {
        let mut lapic = kvm_lapic_state::default();
        write_lapic_reg(&mut lapic, 0x20, 0x1234_5678);
        assert_eq!(lapic.regs[0x20] as u8, 0x78);
        assert_eq!(lapic.regs[0x23] as u8, 0x12);
        assert_eq!(read_lapic_reg(&lapic, 0x20), 0x1234_5678);
    }

    #[test]
    fn lint0_is_extint_and_lint1_is_nmi() {
        let mut lapic = kvm_lapic_state::default();
        set_lint(&mut lapic);
        assert_eq!(
            (read_lapic_reg(&lapic, APIC_LVT0) >> 8) & 0x7,
            APIC_MODE_EXTINT
        );
        assert_eq!(
            (read_lapic_reg(&lapic, APIC_LVT1) >> 8) & 0x7,
            APIC_MODE_NMI
        );
    }

    #[test]
    fn set_lint_preserves_other_lvt_bits() {
        let mut lapic = kvm_lapic_state::default();
        // Masked (bit 16), vector 0x30, delivery mode fixed (0): KVM's reset values differ,
        // but any bit outside the delivery mode must survive.
        write_lapic_reg(&mut lapic, APIC_LVT0, 0x0001_0030);
        write_lapic_reg(&mut lapic, APIC_LVT1, 0x0001_0230);
        set_lint(&mut lapic);
        assert_eq!(read_lapic_reg(&lapic, APIC_LVT0), 0x0001_0730);
        assert_eq!(read_lapic_reg(&lapic, APIC_LVT1), 0x0001_0430);
    }
}
