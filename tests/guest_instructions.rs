//! Static checks of the built test guest (`VMM_TEST_GUEST`, built by `build.rs` from
//! `tests/guest/`): it must contain no instruction that this host's PVM emulator kills the
//! VM on, and it must load where linux-loader accepts a vmlinux.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Mnemonics the PVM emulator cannot run (see /work/shared/notes/kvm-here.md): it stops the
/// VM with KVM_EXIT_INTERNAL_ERROR, or (lzcnt) silently computes the wrong result.
const FORBIDDEN_MNEMONICS: &[&str] = &[
    "popcnt",
    "cmpxchg16b",
    "int",
    "int1",
    "int3",
    "into",
    "rdtscp",
    "lzcnt",
];
/// Mnemonic prefixes: the whole xsave/xrstor family (xsaveopt, xsavec, xrstors, ...).
const FORBIDDEN_PREFIXES: &[&str] = &["xsave", "xrstor"];
/// Vector registers: SSE arithmetic and moves out of xmm registers kill the VM, so the
/// guest is built with -mgeneral-regs-only and must not name any of them.
const FORBIDDEN_REGISTERS: &[&str] = &["%xmm", "%ymm", "%zmm", "%mm"];

/// linux-loader refuses a vmlinux segment below the 1 MiB high-memory start.
const HIMEM_START: u64 = 0x10_0000;
const PT_LOAD: u32 = 1;

fn guest_path() -> &'static str {
    env!("VMM_TEST_GUEST")
}

/// `objdump -d` of the guest's code sections, one instruction per line.
fn disassembly() -> String {
    let out = Command::new("objdump")
        .args(["-d", "-w", "--no-show-raw-insn", guest_path()])
        .output()
        .expect("run objdump (binutils) on the test guest");
    assert!(
        out.status.success(),
        "objdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("objdump output is UTF-8")
}

/// The instruction text of a disassembly line (`  100000:\tmov ...`), if it is one.
fn instruction(line: &str) -> Option<&str> {
    let (addr, insn) = line.split_once(":\t")?;
    addr.trim()
        .chars()
        .all(|c| c.is_ascii_hexdigit())
        .then_some(insn.trim())
}

/// Why the emulator would reject `insn`, if it would.
fn rejection(insn: &str) -> Option<String> {
    // Prefixes (lock, rep, data16, ...) and the mnemonic come before the first operand.
    let words = insn.split_whitespace().take_while(|w| {
        w.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    for word in words {
        if FORBIDDEN_MNEMONICS.contains(&word) {
            return Some(format!("instruction `{word}`"));
        }
        if let Some(p) = FORBIDDEN_PREFIXES.iter().find(|p| word.starts_with(*p)) {
            return Some(format!("{p}-family instruction `{word}`"));
        }
    }
    FORBIDDEN_REGISTERS
        .iter()
        .find(|r| insn.contains(*r))
        .map(|r| format!("vector register {r}*"))
}

#[test]
fn guest_has_no_instruction_the_pvm_emulator_rejects() {
    let dis = disassembly();
    let count = dis.lines().filter_map(instruction).count();
    assert!(
        count > 100,
        "objdump found only {count} instructions in {}",
        guest_path()
    );
    let offending: Vec<String> = dis
        .lines()
        .filter_map(|line| {
            let why = rejection(instruction(line)?)?;
            Some(format!("  {}    ({why})", line.trim()))
        })
        .collect();
    assert!(
        offending.is_empty(),
        "the test guest {} contains instructions the PVM emulator cannot run:\n{}",
        guest_path(),
        offending.join("\n")
    );
}

#[test]
fn rejection_recognises_forbidden_instructions_and_ignores_symbol_names() {
    assert!(rejection("popcnt %rdi,%rax").is_some());
    assert!(rejection("int3").is_some());
    assert!(rejection("int    $0x80").is_some());
    assert!(rejection("xsaveopt (%rdi)").is_some());
    assert!(rejection("lock cmpxchg16b (%rdi)").is_some());
    assert!(rejection("movq   %xmm0,%rax").is_some());
    assert!(rejection("call   100123 <print_int>").is_none());
    assert!(rejection("lock xadd %eax,(%rdx)").is_none());
    assert!(rejection("rep stos %al,%es:(%rdi)").is_none());
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// (p_paddr, p_memsz) of every PT_LOAD program header, and e_entry, of an ELF64 LE file.
fn load_segments(elf: &[u8]) -> (Vec<(u64, u64)>, u64) {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(elf[5], 1, "not little endian");
    assert_eq!(u16_at(elf, 0x12), 62, "not x86_64 (EM_X86_64)");
    let entry = u64_at(elf, 0x18);
    let phoff = u64_at(elf, 0x20) as usize;
    let phentsize = u16_at(elf, 0x36) as usize;
    let phnum = u16_at(elf, 0x38) as usize;
    let segments = (0..phnum)
        .map(|i| &elf[phoff + i * phentsize..phoff + (i + 1) * phentsize])
        .filter(|ph| u32_at(ph, 0) == PT_LOAD)
        .map(|ph| (u64_at(ph, 0x18), u64_at(ph, 0x28)))
        .collect();
    (segments, entry)
}

#[test]
fn guest_loads_at_or_above_1_mib() {
    let elf = std::fs::read(guest_path()).expect("read the test guest ELF");
    let (segments, _) = load_segments(&elf);
    assert!(
        !segments.is_empty(),
        "the test guest has no PT_LOAD segment"
    );
    for (paddr, memsz) in segments {
        assert!(
            paddr >= HIMEM_START,
            "PT_LOAD at p_paddr {paddr:#x} (size {memsz:#x}) is below {HIMEM_START:#x}"
        );
    }
}

#[test]
fn guest_entry_point_is_in_a_loaded_segment() {
    let elf = std::fs::read(guest_path()).expect("read the test guest ELF");
    let (segments, entry) = load_segments(&elf);
    assert!(
        segments
            .iter()
            .any(|&(paddr, memsz)| (paddr..paddr + memsz).contains(&entry)),
        "e_entry {entry:#x} is outside every PT_LOAD segment {segments:x?}"
    );
}
