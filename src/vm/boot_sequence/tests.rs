//! The boot sequence with the built-in test guest as its payload: where each structure
//! lands, and that setting up the vCPUs afterwards writes no guest memory.

use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{write_boot_structures, BootEntry, BootPlan};
use crate::guest_image::{GuestFile, TEST_GUEST_ELF};
use crate::vm::loader::{self, PayloadLoading};
use crate::vm::{kvm_setup, memory, vcpu};

const MEM_BYTES: u64 = 64 << 20;
const CMDLINE: &str = "console=ttyS0 tests=boot";

/// Starts loading the test guest (and `initrd`, if given) into `mem`, as `vm::run_with` does.
fn load_test_guest(
    mem: &GuestMemoryMmap,
    guest: &GuestFile,
    initrd: Option<&Path>,
) -> PayloadLoading {
    let mut kernel = loader::KernelImage::open(&guest.path()).unwrap();
    let cmdline_limit = loader::cmdline_limit_of(&mut kernel);
    loader::Payload {
        kernel,
        cmdline: CMDLINE.into(),
        cmdline_limit,
        initrd: initrd.map(|path| loader::InitrdImage::open(path, MEM_BYTES).unwrap()),
    }
    .load_in_background(mem)
    .unwrap()
}

fn plan(num_cpus: u8) -> BootPlan {
    BootPlan {
        mem_bytes: MEM_BYTES,
        num_cpus,
        virtio_windows: vec![(0xd000_0000, 0x1000, 5)],
    }
}

fn read_u64(mem: &GuestMemoryMmap, addr: u64) -> u64 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn read_u32(mem: &GuestMemoryMmap, addr: u64) -> u32 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}

fn read_bytes(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

/// The ELF header's `e_entry`, read from the image itself rather than from the loader.
fn elf_entry(image: &[u8]) -> u64 {
    u64::from_le_bytes(image[24..32].try_into().unwrap())
}

#[test]
fn boot_structures_land_where_the_vcpus_are_pointed() {
    let mem = memory::create_guest_memory(MEM_BYTES).unwrap();
    let guest = GuestFile::create().unwrap();
    let initrd = vmm_sys_util::tempfile::TempFile::new().unwrap();
    let initrd_bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(initrd.as_path(), &initrd_bytes).unwrap();
    let payload = load_test_guest(&mem, &guest, Some(initrd.as_path()));

    let entry = write_boot_structures(&mem, payload, &plan(2)).unwrap();

    assert_eq!(
        entry,
        BootEntry {
            rip: elf_entry(TEST_GUEST_ELF),
            zero_page: 0x7000,
            tables: boot::cpu_tables::CpuTables {
                gdt_base: 0x500,
                gdt_limit: 31,
                idt_base: 0x520,
                idt_limit: 7,
                cr3: 0x9000,
            },
        }
    );
    // GDT (null, code, data, TSS), IDT and the first page-table entries, byte for byte.
    let gdt: Vec<u64> = (0..4).map(|i| read_u64(&mem, 0x500 + i * 8)).collect();
    assert_eq!(
        gdt,
        [
            0,
            0x00af_9b00_0000_ffff,
            0x00cf_9300_0000_ffff,
            0x008f_8b00_0000_ffff
        ]
    );
    assert_eq!(read_u64(&mem, 0x520), 0);
    assert_eq!(read_u64(&mem, 0x9000), 0xa003);
    assert_eq!(read_u64(&mem, 0xa000), 0xb003);
    assert_eq!(read_u64(&mem, 0xb000 + 8), 0x20_0083);
    // The zero page (boot protocol offsets) points at the command line and initrd.
    assert_eq!(
        mem.read_obj::<u16>(GuestAddress(0x7000 + 0x1fe)).unwrap(),
        0xaa55
    );
    assert_eq!(&read_bytes(&mem, 0x7000 + 0x202, 4), b"HdrS");
    assert_eq!(read_u32(&mem, 0x7000 + 0x228), 0x2_0000, "cmd_line_ptr");
    assert_eq!(
        read_bytes(&mem, 0x2_0000, CMDLINE.len() + 1),
        format!("{CMDLINE}\0").as_bytes()
    );
    let ramdisk_image = read_u32(&mem, 0x7000 + 0x218);
    assert_eq!(read_u32(&mem, 0x7000 + 0x21c), 5000, "ramdisk_size");
    assert_eq!(
        read_bytes(&mem, u64::from(ramdisk_image), initrd_bytes.len()),
        initrd_bytes
    );
    // The MP floating pointer in the EBDA and the ACPI RSDP in the BIOS area.
    assert_eq!(&read_bytes(&mem, 0x9_fc00, 4), b"_MP_");
    assert_eq!(&read_bytes(&mem, 0xe_0000, 8), b"RSD PTR ");
    // A VM generation ID of 16 random bytes where the DSDT's ADDR points, new per VM.
    let id = read_bytes(&mem, 0xe_f000, 16);
    assert_ne!(id, [0u8; 16]);
    let other = memory::create_guest_memory(MEM_BYTES).unwrap();
    let payload = load_test_guest(&other, &guest, None);
    write_boot_structures(&other, payload, &plan(1)).unwrap();
    assert_ne!(
        read_bytes(&other, 0xe_f000, 16),
        id,
        "two VMs, one generation ID"
    );
}

#[test]
fn a_payload_that_failed_to_load_stops_the_sequence_before_anything_is_written() {
    let mem = memory::create_guest_memory(MEM_BYTES).unwrap();
    let guest = GuestFile::create().unwrap();
    let mut kernel = loader::KernelImage::open(&guest.path()).unwrap();
    let cmdline_limit = loader::cmdline_limit_of(&mut kernel);
    // A command line with a NUL in it is refused while the payload is copied.
    let payload = loader::Payload {
        kernel,
        cmdline: "console=ttyS0\0".into(),
        cmdline_limit,
        initrd: None,
    }
    .load_in_background(&mem)
    .unwrap();

    let result = write_boot_structures(&mem, payload, &plan(1));

    assert!(result.is_err(), "{result:?}");
    assert_eq!(&read_bytes(&mem, 0x9_fc00, 4), &[0; 4], "no MP table");
    assert_eq!(read_u64(&mem, 0x9000), 0, "no page tables");
}

/// With KVM: the boot structures are written, then four vCPUs are created and set up as
/// `vm::run_with` does it; guest RAM must be the same before and after.
#[test]
fn setting_up_four_vcpus_writes_no_guest_memory() {
    let test = "setting_up_four_vcpus_writes_no_guest_memory";
    let kvm = match kvm_setup::open_checked_kvm() {
        Ok(kvm) => kvm,
        Err(e) => {
            eprintln!("SKIP {test}: {}", edge::error_chain(&e));
            return;
        }
    };
    let num_cpus = match kvm_setup::check_cpu_count(&kvm, 4) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("SKIP {test}: {}", edge::error_chain(&e));
            return;
        }
    };
    let mem = memory::create_guest_memory(MEM_BYTES).unwrap();
    let guest = GuestFile::create().unwrap();
    let payload = load_test_guest(&mem, &guest, None);
    let entry = write_boot_structures(&mem, payload, &plan(num_cpus)).unwrap();
    // Rewriting a structure with the bytes already there would go unseen, so the first MiB
    // (every boot structure but the kernel and initrd) is overwritten with a pattern first:
    // a setup that wrote the GDT, IDT or page tables again, as each vCPU once did, would
    // change it back.
    mem.write_slice(&[0xa5; 1 << 20], GuestAddress(0)).unwrap();
    let before = read_bytes(&mem, 0, MEM_BYTES as usize);

    let vm = kvm_setup::create_vm(&kvm).unwrap();
    memory::register_with_kvm(&vm, &mem).unwrap();
    kvm_setup::create_interrupt_controllers(&vm).unwrap();
    let supported_cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .unwrap();
    let boot_state = vcpu::BootState {
        supported_cpuid: &supported_cpuid,
        entry,
        num_cpus,
    };
    let vcpus: Vec<_> = (0..num_cpus)
        .map(|i| vcpu::create_vcpu(&vm, i, &boot_state).unwrap())
        .collect();

    assert_eq!(vcpus.len(), 4);
    let after = read_bytes(&mem, 0, MEM_BYTES as usize);
    let first_change = before.iter().zip(&after).position(|(a, b)| a != b);
    assert_eq!(first_change, None, "guest RAM changed at this offset");
}
