//! File I/O in the workload's root: a sequential write made durable (fsync), then random
//! 4 KiB reads, with O_DIRECT where the filesystem accepts it so they reach the disk (for a
//! guest: the virtio block device) rather than the page cache. The file is the probe's own
//! and is removed whatever happens.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::budget::run_for;
use super::xorshift::XorShift64;
use crate::failure::{Failure, OrFail};

/// The file: 16 MiB written in 1 MiB writes.
const FILE_SIZE: usize = 16 << 20;
const WRITE_SIZE: usize = 1 << 20;
/// Reads are one page, at page-aligned offsets (as O_DIRECT requires).
const BLOCK: usize = 4096;
/// The fewest reads measured, however slow the level.
const MIN_READS: u64 = 16;
/// Reads between two reads of the clock.
const READ_BATCH: u64 = 64;

/// The file benchmark's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileIo {
    pub seq_write_mb_s: f64,
    pub random_read_iops: f64,
    pub direct_io: bool,
}

/// One page, aligned as O_DIRECT needs.
#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

/// Writes then reads `<dir>/.vmm-probe-io-<pid>`, removing it afterwards.
pub fn measure(dir: &Path, budget: Duration) -> Result<FileIo, Failure> {
    let path = file_path(dir);
    let _remove = RemoveOnDrop(&path);
    let seq_write_mb_s = write_sequentially(&path)?;
    let (random_read_iops, direct_io) = read_randomly(&path, budget)?;
    Ok(FileIo {
        seq_write_mb_s,
        random_read_iops,
        direct_io,
    })
}

/// Removes the file when the benchmark ends, by success, error or early return.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

/// Writes the file in 1 MiB writes and fsyncs it; MB/s from the first write to the end
/// of the fsync.
fn write_sequentially(path: &Path) -> Result<f64, Failure> {
    let shown = path.display();
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .or_fail(|| format!("create {shown}"))?;
    // Random bytes: a filesystem or disk that compresses or skips zeros gains nothing.
    let mut data = vec![0u8; WRITE_SIZE];
    XorShift64::new(u64::from(std::process::id())).fill(&mut data);
    let start = Instant::now();
    for _ in 0..FILE_SIZE / WRITE_SIZE {
        file.write_all(&data).or_fail(|| format!("write {shown}"))?;
    }
    file.sync_all().or_fail(|| format!("fsync {shown}"))?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    Ok(FILE_SIZE as f64 / seconds / 1e6)
}

/// Random aligned 4 KiB reads for the budget: IOPS, and whether O_DIRECT was used.
fn read_randomly(path: &Path, budget: Duration) -> Result<(f64, bool), Failure> {
    let mut block = Box::new(Block([0; BLOCK]));
    let (file, direct) = open_for_reads(path, &mut block)?;
    let blocks = (FILE_SIZE / BLOCK) as u64;
    let mut offsets = XorShift64::new(0x5eed);
    let tally = run_for(budget, MIN_READS, READ_BATCH, |n| {
        for _ in 0..n {
            let offset = offsets.next_u64() % blocks * BLOCK as u64;
            read_block(&file, &mut block, offset, path)?;
        }
        Ok::<_, Failure>(())
    })?;
    Ok((tally.per_second(), direct))
}

/// Opens with O_DIRECT if the filesystem takes it *and* a first read works (some accept
/// the flag at open and refuse the reads); otherwise buffered.
fn open_for_reads(path: &Path, block: &mut Block) -> Result<(File, bool), Failure> {
    let direct = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(path);
    if let Ok(file) = direct {
        if read_block(&file, block, 0, path).is_ok() {
            return Ok((file, true));
        }
    }
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .or_fail(|| format!("open {}", path.display()))?;
    Ok((file, false))
}

/// One pread of a whole block at `offset`.
fn read_block(file: &File, block: &mut Block, offset: u64, path: &Path) -> Result<(), Failure> {
    let what = || format!("read 4 KiB at {offset} of {}", path.display());
    match file.read_at(&mut block.0, offset).or_fail(what)? {
        BLOCK => Ok(()),
        short => Err(Failure::new(
            what(),
            io::Error::new(io::ErrorKind::UnexpectedEof, format!("read {short} bytes")),
        )),
    }
}

/// The file the benchmark writes in `dir`: named after the process, so concurrent probes
/// sharing a directory do not collide.
pub fn file_path(dir: &Path) -> PathBuf {
    dir.join(format!(".vmm-probe-io-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmm-probe-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn file_benchmark_measures_and_removes_its_file() {
        let dir = scratch_dir("io");
        let io = measure(&dir, Duration::from_millis(10)).unwrap();
        assert!(io.seq_write_mb_s > 0.0);
        assert!(io.random_read_iops > 0.0);
        assert!(!file_path(&dir).exists());
        fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_directory_is_a_failure_naming_the_file() {
        let missing = Path::new("/nonexistent-vmm-probe-dir");
        let e = measure(missing, Duration::from_millis(10)).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("create /nonexistent-vmm-probe-dir/"));
    }
}
