//! A classic-BPF interpreter for the instructions seccomp filters use, so that tests can
//! tell what a program answers for a call without installing it.

use seccompiler::sock_filter;

/// The call a filter sees (`struct seccomp_data`).
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub nr: u32,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Call {
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr,
            4 => self.arch,
            // instruction_pointer (8..16) is never looked at by these filters.
            16..=63 if offset.is_multiple_of(4) => {
                let arg = self.args[(offset as usize - 16) / 8];
                match (offset - 16) % 8 {
                    0 => arg as u32,
                    _ => (arg >> 32) as u32,
                }
            }
            _ => panic!("load of seccomp_data offset {offset}"),
        }
    }
}

/// What `program` returns for `call`. Panics on an instruction it does not know, a jump
/// out of the program or one that runs off its end: the kernel would refuse those.
pub fn run(program: &[sock_filter], call: &Call) -> u32 {
    use libc::*;
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let mut mem = [0u32; 16];
    loop {
        let i = program
            .get(pc)
            .unwrap_or_else(|| panic!("ran off the program at {pc}"));
        pc += 1;
        let code = u32::from(i.code);
        let operand = if code & BPF_X != 0 { x } else { i.k };
        match code {
            c if c == BPF_LD | BPF_W | BPF_ABS => a = call.word(i.k),
            c if c == BPF_LD | BPF_IMM => a = i.k,
            c if c == BPF_LDX | BPF_IMM => x = i.k,
            c if c == BPF_LD | BPF_MEM => a = mem[i.k as usize],
            c if c == BPF_ST => mem[i.k as usize] = a,
            c if c == BPF_MISC | BPF_TAX => x = a,
            c if c == BPF_MISC | BPF_TXA => a = x,
            c if c & 0x07 == BPF_ALU => {
                a = match c & 0xf0 {
                    BPF_AND => a & operand,
                    BPF_OR => a | operand,
                    BPF_ADD => a.wrapping_add(operand),
                    BPF_SUB => a.wrapping_sub(operand),
                    BPF_RSH => {
                        assert!(operand < 32, "shift by {operand} at {}", pc - 1);
                        a >> operand
                    }
                    BPF_LSH => {
                        assert!(operand < 32, "shift by {operand} at {}", pc - 1);
                        a << operand
                    }
                    op => panic!("ALU op {op:#x} at {}", pc - 1),
                }
            }
            c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
            c if c & 0x07 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    BPF_JEQ => a == operand,
                    BPF_JGT => a > operand,
                    BPF_JGE => a >= operand,
                    BPF_JSET => a & operand != 0,
                    op => panic!("jump op {op:#x} at {}", pc - 1),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c if c == BPF_RET | BPF_K => return i.k,
            c => panic!("instruction {c:#x} at {}", pc - 1),
        }
    }
}
