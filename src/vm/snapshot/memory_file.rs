//! The memory file: guest RAM's regions one after the other, as the guest sees them.
//!
//! Written sparse: pages that are all zeros are left as holes. Most of a small VM's RAM is
//! never touched, so a 128 MiB guest that used 2 MiB gives a file of 128 MiB that takes
//! 2 MiB of disk and is written in milliseconds; a restore maps the file (MAP_PRIVATE) and
//! a hole reads as zeros like the untouched RAM it was.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use vm_memory::{
    Bytes, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};

use super::atomic_file;
use super::config::SavedRegion;
use super::error::SnapshotError;

const PAGE: usize = 4096;
/// Guest RAM is copied out this much at a time (the VM is paused, but device workers may
/// still touch it: copying through vm-memory's volatile accesses, never a plain slice).
const CHUNK: usize = 1 << 20;

/// The layout `mem` has in a memory file: its regions, one after the other.
pub fn layout(mem: &GuestMemoryMmap) -> Vec<SavedRegion> {
    let mut offset = 0;
    mem.iter()
        .map(|region| {
            let saved = SavedRegion {
                guest_base: region.start_addr().0,
                len: region.len(),
                file_offset: offset,
            };
            offset += region.len();
            saved
        })
        .collect()
}

/// Writes guest RAM into a new file beside `path` (committing it renames it over `path`,
/// see `atomic_file`); returns it and the layout.
pub fn write(
    mem: &GuestMemoryMmap,
    path: &Path,
) -> Result<(atomic_file::Pending, Vec<SavedRegion>), SnapshotError> {
    let regions = layout(mem);
    let total = regions.iter().map(|r| r.len).sum();
    let pending = atomic_file::prepare(path, |file, tmp| {
        file.set_len(total)
            .map_err(SnapshotError::write("sizing the memory file", tmp))?;
        for (region, saved) in mem.iter().zip(&regions) {
            write_region(file, tmp, region, saved.file_offset)?;
        }
        Ok(())
    })?;
    Ok((pending, regions))
}

fn write_region(
    file: &File,
    path: &Path,
    region: &vm_memory::GuestRegionMmap,
    file_offset: u64,
) -> Result<(), SnapshotError> {
    let mut buf = vec![0u8; CHUNK];
    let len = region.len() as usize;
    let mut at = 0;
    while at < len {
        let n = CHUNK.min(len - at);
        let chunk = &mut buf[..n];
        region
            .read_slice(chunk, MemoryRegionAddress(at as u64))
            .map_err(|e| {
                SnapshotError::write("reading guest memory for", path)(std::io::Error::other(e))
            })?;
        for (start, end) in nonzero_runs(chunk) {
            file.write_all_at(&chunk[start..end], file_offset + (at + start) as u64)
                .map_err(SnapshotError::write("writing guest memory to", path))?;
        }
        at += n;
    }
    Ok(())
}

/// The byte ranges of `data` made of whole pages with a non-zero byte, adjacent pages
/// merged (one write each).
fn nonzero_runs(data: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, page) in data.chunks(PAGE).enumerate() {
        if page.iter().all(|&b| b == 0) {
            continue;
        }
        let (start, end) = (i * PAGE, i * PAGE + page.len());
        match runs.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => runs.push((start, end)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use vm_memory::GuestAddress;

    use super::*;

    #[test]
    fn zero_pages_are_skipped_and_neighbours_merged() {
        let mut data = vec![0u8; 6 * PAGE];
        data[PAGE] = 1;
        data[2 * PAGE + 17] = 2;
        data[5 * PAGE + PAGE - 1] = 3;
        assert_eq!(
            nonzero_runs(&data),
            vec![(PAGE, 3 * PAGE), (5 * PAGE, 6 * PAGE)]
        );
        assert!(nonzero_runs(&[0u8; PAGE]).is_empty());
    }

    #[test]
    fn the_memory_file_holds_guest_ram_in_order_and_is_sparse() {
        let dir = std::env::temp_dir().join(format!("vmm-memfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mem");
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 8 << 20),
            (GuestAddress(1 << 32), 8 << 20),
        ])
        .unwrap();
        mem.write_slice(b"low", GuestAddress(0x1000)).unwrap();
        mem.write_slice(b"high", GuestAddress((1 << 32) + 0x2000))
            .unwrap();

        let (pending, regions) = write(&mem, &path).unwrap();
        pending.commit().unwrap();

        assert_eq!(regions[1].file_offset, 8 << 20);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 16 << 20);
        assert_eq!(&bytes[0x1000..0x1003], b"low");
        assert_eq!(&bytes[(8 << 20) + 0x2000..(8 << 20) + 0x2004], b"high");
        let on_disk = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            on_disk <= 64 * 1024,
            "{on_disk} bytes on disk for two touched pages"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
