//! A compact front for a thread's filter: the calls allowed whatever their arguments are
//! looked up in a bitmap, 3 instructions per block of 32 call numbers, before the
//! argument-filtered rules that seccompiler builds.
//!
//! Why: seccompiler gives every call a chain of its own (4 instructions for a call allowed
//! outright, tested one after the other), and the kernel checks and JIT-compiles the whole
//! program each time a thread installs it. With this front the vCPU's filter is 158
//! instructions rather than 243, the others about half as long (`front_shortens_every_filter`
//! in the tests), and an allowed call is found with one comparison per block of 32 numbers
//! rather than one per call.
//!
//! What it keeps: it allows only x86_64 calls (the architecture word, then no x32 bit);
//! everything else falls through to seccompiler's program unchanged, which kills another
//! architecture's calls and traps the rest. The tests run every call number (and the
//! argument values the rules name) through both programs and compare the actions.

use seccompiler::sock_filter;

/// `seccomp_data.nr` and `seccomp_data.arch`, as the kernel lays them out.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// The x32 ABI's calls are x86_64's numbers with this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The call numbers the bitmap covers (x86_64 has fewer than 500): 32 blocks at most,
/// which keeps every jump within a conditional jump's 255 instructions. A call above it
/// stays with seccompiler's rules.
pub const BITMAP_CALLS: u32 = 1024;
/// `AUDIT_ARCH_X86_64`: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

fn insn(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Instructions that return `allow` for the x86_64 calls in `allowed` (all below
/// [`BITMAP_CALLS`]) and go on at the instruction right after them for any other call.
pub fn allowing(allowed: &[u32], allow: u32) -> Vec<sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_IMM, BPF_JA, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD,
        BPF_MISC, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X,
    };
    // Block number → bitmap of its 32 calls.
    let mut blocks: std::collections::BTreeMap<u32, u32> = std::collections::BTreeMap::new();
    for &nr in allowed {
        assert!(nr < BITMAP_CALLS, "call {nr} is past the front's bitmap");
        *blocks.entry(nr / 32).or_default() |= 1 << (nr % 32);
    }
    if blocks.is_empty() {
        return Vec::new();
    }
    // The layout, from the end: the test of the chosen bit (4 instructions) then the rest
    // of the filter; before it, 3 instructions per block.
    const TEST_LEN: u32 = 4;
    let n = blocks.len() as u32;
    let mut out = vec![
        insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, ARCH_OFFSET),
        // Not x86_64: on to the rest, which kills it. The jump skips everything below.
        insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, AUDIT_ARCH_X86_64),
        insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, NR_OFFSET),
        // x32 (or any number that large): on to the rest, which traps it.
        insn(BPF_JMP | BPF_JSET | BPF_K, 0, 0, X32_SYSCALL_BIT),
        // X = nr % 32, the bit to test; A = nr / 32, the block.
        insn(BPF_ALU | BPF_AND | BPF_K, 0, 0, 31),
        insn(BPF_MISC | BPF_TAX, 0, 0, 0),
        insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, NR_OFFSET),
        insn(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 5),
    ];
    // Offsets count from the instruction after the jump. The rest begins after the 8
    // instructions above, 3 per block, the jump past the test, and the test.
    out[1].jf = jump(3 * n + 11);
    out[3].jt = jump(3 * n + 9);
    for (i, (&block, &bits)) in blocks.iter().enumerate() {
        let i = i as u32;
        // Not this block: the next one (the last one's "next" is the jump to the rest).
        out.push(insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, block));
        out.push(insn(BPF_LD | BPF_IMM, 0, 0, bits));
        // To the test: past the remaining blocks and the jump to the rest.
        out.push(insn(BPF_JMP | BPF_JA, 0, 0, 3 * (n - 1 - i) + 1));
    }
    // No block of allowed calls: the rest.
    out.push(insn(BPF_JMP | BPF_JA, 0, 0, TEST_LEN));
    out.extend([
        insn(BPF_ALU | BPF_RSH | BPF_X, 0, 0, 0),
        insn(BPF_ALU | BPF_AND | BPF_K, 0, 0, 1),
        insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 1),
        insn(BPF_RET | BPF_K, 0, 0, allow),
    ]);
    out
}

/// A conditional jump's offset: at most 3 × 32 + 11 with [`BITMAP_CALLS`]'s 32 blocks,
/// well within a u8.
fn jump(offset: u32) -> u8 {
    const _: () = assert!(3 * (BITMAP_CALLS / 32) + 11 <= u8::MAX as u32);
    offset as u8
}
