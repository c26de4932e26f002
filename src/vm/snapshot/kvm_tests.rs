//! Round trips through KVM itself: state read from one VM, written into a fresh one, reads
//! back the same. Skipped (with a line saying so) where /dev/kvm cannot be opened.

use kvm_bindings::{kvm_regs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use super::{msrs, vcpu_state, vm_state};
use crate::vm::kvm_setup;

fn kvm(test: &str) -> Option<Kvm> {
    match Kvm::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            eprintln!("SKIP {test}: /dev/kvm: {e}");
            None
        }
    }
}

/// A VM with the in-kernel irqchip and PIT (the LAPIC's state lives there) and one vCPU
/// with KVM's supported CPUID.
fn vm_with_vcpu(kvm: &Kvm) -> (VmFd, VcpuFd) {
    let vm = kvm_setup::create_vm(kvm).unwrap();
    kvm_setup::create_interrupt_controllers(&vm).unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    vcpu.set_cpuid2(&cpuid).unwrap();
    (vm, vcpu)
}

#[test]
fn a_vcpus_state_written_into_a_fresh_vcpu_reads_back_the_same() {
    let Some(kvm) = kvm("a_vcpus_state_written_into_a_fresh_vcpu_reads_back_the_same") else {
        return;
    };
    let (vm, vcpu) = vm_with_vcpu(&kvm);
    vcpu.set_regs(&kvm_regs {
        rax: 42,
        rip: 0x1234,
        rsp: 0x8ff0,
        rflags: 2,
        ..Default::default()
    })
    .unwrap();
    let mut lapic = vcpu.get_lapic().unwrap();
    boot::lapic::set_lint(&mut lapic);
    vcpu.set_lapic(&lapic).unwrap();
    msrs::write(
        &vcpu,
        0,
        &[kvm_bindings::kvm_msr_entry {
            index: 0x174, // SYSENTER_CS
            data: 0x10,
            ..Default::default()
        }],
    )
    .unwrap();
    let spec = vcpu_state::SaveSpec::of(&kvm, &vm).unwrap();
    let saved = vcpu_state::save(&vcpu, 0, &spec).unwrap();

    let (_fresh_vm, fresh) = vm_with_vcpu(&kvm);
    vcpu_state::restore(&fresh, 0, &saved, spec.xsave2_size).unwrap();
    let back = vcpu_state::save(&fresh, 0, &spec).unwrap();

    assert_eq!(back.regs, saved.regs);
    assert_eq!(back.sregs, saved.sregs);
    assert_eq!(
        back.lapic.regs[..0x3f0],
        saved.lapic.regs[..0x3f0],
        "LAPIC registers"
    );
    assert_eq!(back.mp_state, saved.mp_state);
    assert_eq!(back.cpuid.len(), saved.cpuid.len());
    let data = |state: &vcpu_state::VcpuState, index: u32| {
        state.msrs.iter().find(|m| m.index == index).map(|m| m.data)
    };
    assert_eq!(data(&back, 0x174), Some(0x10));
    for msr in &saved.msrs {
        // The TSC goes on counting.
        if msr.index != 0x10 {
            assert_eq!(
                data(&back, msr.index),
                Some(msr.data),
                "MSR {:#x}",
                msr.index
            );
        }
    }
    assert!(
        data(&back, 0x10) >= data(&saved, 0x10),
        "the TSC does not go back"
    );
}

#[test]
fn the_vms_irqchip_pit_and_clock_written_into_a_fresh_vm_read_back_the_same() {
    let Some(kvm) = kvm("the_vms_irqchip_pit_and_clock_written_into_a_fresh_vm_read_back_the_same")
    else {
        return;
    };
    let (vm, _vcpu) = vm_with_vcpu(&kvm);
    vm.set_irq_line(4, true).unwrap();
    let saved = vm_state::save(&vm).unwrap();

    let (fresh, _fresh_vcpu) = vm_with_vcpu(&kvm);
    vm_state::restore(&fresh, &saved).unwrap();
    let back = vm_state::save(&fresh).unwrap();

    // The chips as their bytes (kvm-bindings' serde), the union included.
    let bytes = |chip: &kvm_bindings::kvm_irqchip| postcard::to_allocvec(chip).unwrap();
    assert_eq!(bytes(&back.ioapic), bytes(&saved.ioapic));
    assert_eq!(bytes(&back.pic_master), bytes(&saved.pic_master));
    assert_eq!(bytes(&back.pic_slave), bytes(&saved.pic_slave));
    assert_eq!(back.pit.channels[0].mode, saved.pit.channels[0].mode);
    assert!(
        back.clock.clock >= saved.clock.clock,
        "the clock goes on from the saved value"
    );
    assert!(
        back.clock.clock - saved.clock.clock < 1_000_000_000,
        "and not from somewhere else: {} then {}",
        saved.clock.clock,
        back.clock.clock
    );
}
