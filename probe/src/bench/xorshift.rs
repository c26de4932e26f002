//! A xorshift64 generator: enough randomness for file offsets and buffer contents, integer
//! only, and the same sequence everywhere (no rand crate, no seeding from the OS).

pub struct XorShift64(u64);

impl XorShift64 {
    /// `seed` must not be 0 (xorshift's only fixed point); 0 is replaced.
    pub fn new(seed: u64) -> Self {
        XorShift64(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}
