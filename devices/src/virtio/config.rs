//! The device-specific configuration space (offset 0x100 of the transport window), as
//! every device lays it out: a little-endian struct that the driver reads and writes
//! with accesses of any width at any offset.
//!
//! Bounds are handled here once, the way the spec asks (virtio 1.x §4.2.2.2 lets the
//! driver read past what a device defines): bytes past the struct read as zero and a
//! write that does not fall wholly inside it changes nothing.

/// Copies the bytes of `config` that `offset..offset + data.len()` covers into `data`;
/// the bytes of `data` past the end of `config` (or past u64 offsets) read as zero.
pub fn read(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Some(src) = usize::try_from(offset).ok().and_then(|o| config.get(o..)) else {
        return;
    };
    let n = src.len().min(data.len());
    data[..n].copy_from_slice(&src[..n]);
}

/// Writes `data` into `config` at `offset` when it fits wholly inside; returns whether
/// it did. A partial field write updates only the bytes it covers.
pub fn write(config: &mut [u8], offset: u64, data: &[u8]) -> bool {
    let range = usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(data.len())?));
    match range.and_then(|r| config.get_mut(r)) {
        Some(dst) => {
            dst.copy_from_slice(data);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_inside_copies_and_past_the_end_reads_zero() {
        let config = [1, 2, 3, 4];
        let mut data = [0xff; 4];
        read(&config, 2, &mut data);
        assert_eq!(data, [3, 4, 0, 0]);
        read(&config, 4, &mut data);
        assert_eq!(data, [0; 4]);
        read(&config, u64::MAX, &mut data);
        assert_eq!(data, [0; 4]);
    }

    #[test]
    fn write_lands_only_when_wholly_inside() {
        let mut config = [0u8; 4];
        assert!(write(&mut config, 1, &[7, 8]));
        assert_eq!(config, [0, 7, 8, 0]);
        assert!(!write(&mut config, 3, &[9, 9]));
        assert!(!write(&mut config, u64::MAX, &[9]));
        assert_eq!(config, [0, 7, 8, 0]);
    }
}
