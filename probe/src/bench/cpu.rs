//! Compute speed: a fixed integer kernel, the same work at every level. Integer only (some
//! emulated guests here cannot run SSE arithmetic) and one serial dependency chain (so the
//! compiler cannot vectorise it), over a table that fits in L1: it measures the CPU, not
//! memory. The checksum proves every level did the same work, and that the CPU (or its
//! emulator) computed it correctly.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::failure::Failure;

/// Iterations of the kernel by default: some 20–40 ms on a current x86-64 core.
pub const DEFAULT_WORK: u64 = 8_000_000;

/// 512 × 8 bytes = 4 KiB.
const TABLE_LEN: usize = 512;
/// The multiplier of MurmurHash3's 64-bit finaliser: mixes every bit into the high ones.
const MIX: u64 = 0xff51_afd7_ed55_8ccd;

/// The median time of one run of the kernel, and its checksum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpu {
    pub ms: f64,
    pub checksum: u64,
}

/// Runs the kernel of `work` iterations repeatedly for the budget (at least once) and
/// reports the median run. Fails if two runs disagree: the CPU miscomputed.
pub fn measure(work: u64, budget: Duration) -> Result<Cpu, Failure> {
    let start = Instant::now();
    let mut runs: Vec<f64> = Vec::new();
    let mut first = None;
    while runs.is_empty() || start.elapsed() < budget {
        let t = Instant::now();
        let sum = checksum(black_box(work));
        runs.push(t.elapsed().as_secs_f64() * 1e3);
        match first {
            None => first = Some(sum),
            Some(expected) if expected != sum => {
                return Err(Failure::wrong(
                    "the compute kernel",
                    format!("two runs gave different checksums ({expected:#x}, {sum:#x})"),
                ));
            }
            Some(_) => {}
        }
    }
    runs.sort_by(f64::total_cmp);
    Ok(Cpu {
        ms: runs[runs.len() / 2],
        checksum: first.unwrap_or_default(),
    })
}

/// The kernel: a xorshift stream picks a table slot, the slot is multiplied and mixed with
/// the running sum, and the sum carries every result into the next step.
pub fn checksum(iterations: u64) -> u64 {
    let mut table = [0u64; TABLE_LEN];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for (i, slot) in table.iter_mut().enumerate() {
        x = step(x);
        *slot = x ^ i as u64;
    }
    let mut sum: u64 = 0;
    for _ in 0..iterations {
        x = step(x);
        let i = (x ^ sum) as usize % TABLE_LEN;
        let v = table[i].wrapping_mul(MIX) ^ sum.rotate_left(23);
        table[i] = v;
        sum = sum.wrapping_add(v);
    }
    black_box(table.iter().fold(sum, |acc, &v| acc.rotate_left(5) ^ v))
}

fn step(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_deterministic_for_the_same_work() {
        assert_eq!(checksum(100_000), checksum(100_000));
    }

    #[test]
    fn checksum_depends_on_the_work() {
        assert_ne!(checksum(100_000), checksum(100_001));
        assert_ne!(checksum(0), checksum(1));
    }

    #[test]
    fn checksum_is_the_same_on_every_machine() {
        // Pinned: a change of the kernel changes what "the same work" means between
        // probe versions, and must bump PROBE_VERSION.
        assert_eq!(checksum(1000), 1_966_843_199_955_522_783);
    }

    #[test]
    fn measure_reports_the_kernels_checksum() {
        let cpu = measure(10_000, Duration::from_millis(5)).unwrap();
        assert_eq!(cpu.checksum, checksum(10_000));
        assert!(cpu.ms > 0.0);
    }
}
