//! What a device changed in guest memory: a copy of guest memory taken before the device
//! runs, compared with the memory after it stopped. The copy is guest memory of the same
//! layout, so the driver's rings can be read back from it as they were
//! ([`DriverQueue::new`](super::DriverQueue::new) on [`MemorySnapshot::memory`]).

use std::ops::Range;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::DriverError;

pub struct MemorySnapshot {
    copy: GuestMemoryMmap,
}

impl MemorySnapshot {
    pub fn take(mem: &GuestMemoryMmap) -> Result<Self, DriverError> {
        // A region is mapped in this process, so its length fits a usize.
        let regions: Vec<(GuestAddress, usize)> = mem
            .iter()
            .map(|r| (r.start_addr(), r.len() as usize))
            .collect();
        let copy = GuestMemoryMmap::from_ranges(&regions)?;
        for &(start, len) in &regions {
            let mut bytes = vec![0u8; len];
            mem.read_slice(&mut bytes, start)?;
            copy.write_slice(&bytes, start)?;
        }
        Ok(MemorySnapshot { copy })
    }

    /// Guest memory as it was.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.copy
    }

    /// The runs of bytes that differ in `mem` now, in address order.
    pub fn changed(&self, mem: &GuestMemoryMmap) -> Result<Vec<Range<u64>>, DriverError> {
        let mut runs: Vec<Range<u64>> = Vec::new();
        for region in self.copy.iter() {
            let start = region.start_addr();
            let len = region.len() as usize;
            let (mut before, mut now) = (vec![0u8; len], vec![0u8; len]);
            self.copy.read_slice(&mut before, start)?;
            mem.read_slice(&mut now, start)?;
            for (i, (a, b)) in (start.0..).zip(before.iter().zip(&now)) {
                if a == b {
                    continue;
                }
                match runs.last_mut() {
                    Some(run) if run.end == i => run.end = i + 1,
                    _ => runs.push(i..i + 1),
                }
            }
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_bytes_come_back_as_runs_across_regions() {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1000),
            (GuestAddress(0x1_0000), 0x1000),
        ])
        .unwrap();
        let snap = MemorySnapshot::take(&mem).unwrap();
        mem.write_slice(&[1, 2, 3], GuestAddress(0x10)).unwrap();
        mem.write_slice(&[9], GuestAddress(0x1_0fff)).unwrap();
        assert_eq!(
            snap.changed(&mem).unwrap(),
            vec![0x10..0x13, 0x1_0fff..0x1_1000]
        );
    }

    #[test]
    fn the_snapshot_keeps_memory_as_it_was() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0x1000), 0x1000)]).unwrap();
        mem.write_obj(7u8, GuestAddress(0x1010)).unwrap();
        let snap = MemorySnapshot::take(&mem).unwrap();
        mem.write_obj(8u8, GuestAddress(0x1010)).unwrap();
        let was: u8 = snap.memory().read_obj(GuestAddress(0x1010)).unwrap();
        assert_eq!(was, 7);
        assert!(snap.memory().read_obj::<u8>(GuestAddress(0x2000)).is_err());
    }
}
