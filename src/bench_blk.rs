//! `vmm bench blk`: the virtio-blk path measured in-process, without KVM.
//!
//! The devices' test driver (`devices::testing`) plays the guest: it puts 4 KiB read (then
//! write) requests on a split queue in guest memory, notifies through the transport's
//! QueueNotify register (the same eventfd KVM's ioeventfd would signal) and sleeps on the
//! irqfd eventfd for the device worker's answer. The same 4 KiB offsets are then read and written with plain
//! pread/pwrite on the same file, the "fio-like" host baseline. Only measured numbers are
//! printed. With `--bw`, the same disk limited to a bandwidth instead ([`rate`]).

mod rate;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use devices::testing::{DriverError, DriverQueue, MmioDriver, Waited};
use devices::virtio::{Block, QueueLimiter};
use edge::exit_code;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

const DEFAULT_FILE_SIZE: u64 = 64 << 20;
const BLOCK: usize = 4096;
const SECTOR: u64 = 512;
/// Requests in flight in the batched runs (3 descriptors each in a 256-entry queue).
const DEPTH: u16 = 64;
const QUEUE_SIZE: u16 = 256;

// Guest layout of the driver's rings and buffers.
const RINGS: u64 = 0x0;
const HEADERS: u64 = 0x4000;
const STATUSES: u64 = 0x5000;
const DATA: u64 = 0x10_0000;
const MEM_SIZE: usize = 0x20_0000;

// virtio 1.x constants the driver side needs (§2.7.5, §5.2.6).
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const S_OK: u8 = 0;

/// A bandwidth limit to measure the disk under (`--bw`, `--seconds`).
pub struct Limit {
    pub bytes_per_s: u64,
    pub seconds: u32,
}

pub fn run(requests: u32, file: Option<&Path>, limit: Option<Limit>) -> ExitCode {
    if requests == 0 {
        eprintln!("vmm: error: the number of requests must be at least 1");
        return ExitCode::from(exit_code::BAD_INPUT);
    }
    let result = match limit {
        Some(Limit { seconds: 0, .. }) => {
            eprintln!("vmm: error: --seconds must be at least 1");
            return ExitCode::from(exit_code::BAD_INPUT);
        }
        Some(limit) => with_image(file, |path, _| {
            rate::bench(path, limit.bytes_per_s, limit.seconds)
        }),
        None => bench(requests, file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmm: bench blk failed: {e}");
            ExitCode::from(exit_code::FAILED)
        }
    }
}

/// Runs `body` on the user's image (read only) or on a temporary one (writable), which it
/// removes after.
fn with_image(
    file: Option<&Path>,
    body: impl FnOnce(&Path, bool) -> Result<(), String>,
) -> Result<(), String> {
    match file {
        Some(p) => body(p, false),
        None => {
            let t = make_image().map_err(|e| format!("cannot create the test image: {e}"))?;
            body(t.as_path(), true)
        }
    }
}

fn bench(requests: u32, file: Option<&Path>) -> Result<(), String> {
    with_image(file, |path, writable| bench_on(requests, path, writable))
}

fn bench_on(requests: u32, path: &Path, writable: bool) -> Result<(), String> {
    let mut driver = Driver::new(path, !writable, QueueLimiter::default())?;
    let blocks = driver.capacity / (BLOCK as u64 / SECTOR);
    if blocks == 0 {
        return Err(format!("{path:?} is smaller than 4 KiB"));
    }
    let offsets = random_blocks(requests as usize, blocks);
    let host = File::options()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|e| format!("cannot open {path:?}: {e}"))?;

    println!(
        "bench blk: {requests} requests of 4 KiB at random offsets in {path:?} ({} MiB), page cache warm",
        (driver.capacity * SECTOR) >> 20
    );
    // Warm the page cache and the worker thread; not measured.
    driver.run(T_IN, &offsets[..offsets.len().min(1024)], DEPTH)?;

    let mut rows = vec![
        ("read, virtio-blk, depth 1", driver.run(T_IN, &offsets, 1)?),
        (
            "read, virtio-blk, depth 64",
            driver.run(T_IN, &offsets, DEPTH)?,
        ),
        ("read, host pread", host_io(&host, &offsets, false)?),
    ];
    if writable {
        rows.push((
            "write, virtio-blk, depth 1",
            driver.run(T_OUT, &offsets, 1)?,
        ));
        rows.push((
            "write, virtio-blk, depth 64",
            driver.run(T_OUT, &offsets, DEPTH)?,
        ));
        rows.push(("write, host pwrite", host_io(&host, &offsets, true)?));
    } else {
        println!("(writes skipped: the image was given by the user)");
    }
    for (name, elapsed) in &rows {
        let per = elapsed.as_secs_f64() * 1e6 / f64::from(requests);
        let rate = f64::from(requests) / elapsed.as_secs_f64();
        println!("{name:<28} {per:>8.2} µs/request {rate:>12.0} requests/s");
    }
    // The VMM side of a request: batched virtio time minus the host's own pread/pwrite.
    let per = |i: usize| rows[i].1.as_secs_f64() * 1e6 / f64::from(requests);
    println!(
        "VMM side of a 4 KiB read (depth 64 − host pread): {:.2} µs",
        per(1) - per(2)
    );
    if writable {
        println!(
            "VMM side of a 4 KiB write (depth 64 − host pwrite): {:.2} µs",
            per(4) - per(5)
        );
    }
    Ok(())
}

/// A 64 MiB image whose every 4 KiB block starts with its own index, so reads can be
/// checked.
fn make_image() -> std::io::Result<TempFile> {
    let temp = TempFile::new()?;
    let mut out = std::io::BufWriter::new(temp.as_file());
    let mut block = vec![0u8; BLOCK];
    for i in 0..DEFAULT_FILE_SIZE / BLOCK as u64 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        out.write_all(&block)?;
    }
    out.flush()?;
    drop(out);
    Ok(temp)
}

/// Block indexes from a fixed xorshift sequence: the same offsets for every run.
fn random_blocks(n: usize, blocks: u64) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % blocks
        })
        .collect()
}

fn host_io(file: &File, blocks: &[u64], write: bool) -> Result<Duration, String> {
    let mut buf = vec![0u8; BLOCK];
    let start = Instant::now();
    for &b in blocks {
        let offset = b * BLOCK as u64;
        let r = if write {
            file.write_all_at(&buf, offset)
        } else {
            file.read_exact_at(&mut buf, offset)
        };
        r.map_err(|e| format!("host {}: {e}", if write { "pwrite" } else { "pread" }))?;
    }
    Ok(start.elapsed())
}

/// The guest side: a split queue in guest memory and the transport it talks to.
struct Driver {
    mem: GuestMemoryMmap,
    driver: MmioDriver,
    queue: DriverQueue,
    capacity: u64,
    /// Next free available-ring index (the used index catches up after each batch).
    avail_idx: u16,
    /// Whether blocks start with their index (the temporary image), so reads can be checked.
    check_data: bool,
}

impl Driver {
    fn new(path: &Path, read_only: bool, limiter: QueueLimiter) -> Result<Self, String> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
            .map_err(|e| format!("cannot allocate guest memory: {e}"))?;
        let block = Block::new(path, read_only, None)
            .map_err(|e| e.to_string())?
            .with_rate_limiter(limiter);
        let capacity = block.capacity();
        let mut driver = MmioDriver::new(&mem, Box::new(block)).map_err(driver_err)?;
        let queue = DriverQueue::new(&mem, RINGS, QUEUE_SIZE).map_err(driver_err)?;
        // What Linux's virtio-mmio probe does: every offered feature, queue 0, DRIVER_OK.
        driver.bring_up(&[&queue]).map_err(driver_err)?;
        Ok(Driver {
            mem,
            driver,
            queue,
            capacity,
            avail_idx: 0,
            check_data: !read_only,
        })
    }

    /// Sends `blocks` as 4 KiB requests of `kind`, `depth` in flight per notify; returns
    /// the time from the first submission to the last completion.
    fn run(&mut self, kind: u32, blocks: &[u64], depth: u16) -> Result<Duration, String> {
        let flags = if kind == T_IN { DESC_F_WRITE } else { 0 };
        for slot in 0..depth {
            self.write_chain(slot, flags).map_err(driver_err)?;
        }
        let start = Instant::now();
        for batch in blocks.chunks(usize::from(depth)) {
            for (slot, &b) in batch.iter().enumerate() {
                self.submit(slot as u16, kind, b).map_err(driver_err)?;
            }
            self.publish_and_notify().map_err(driver_err)?;
            self.wait_used()?;
            self.check(kind, batch)?;
        }
        Ok(start.elapsed())
    }

    /// Slot `s` uses descriptors 3s (header), 3s+1 (4 KiB data), 3s+2 (status).
    fn write_chain(&self, slot: u16, data_flags: u16) -> Result<(), DriverError> {
        let s = u64::from(slot);
        let first = 3 * slot;
        let descs = [
            (HEADERS + 16 * s, 16, DESC_F_NEXT, first + 1),
            (
                DATA + BLOCK as u64 * s,
                BLOCK as u32,
                data_flags | DESC_F_NEXT,
                first + 2,
            ),
            (STATUSES + s, 1, DESC_F_WRITE, 0),
        ]
        .map(|(addr, len, flags, next)| {
            RawDescriptor::from(Descriptor::new(addr, len, flags, next))
        });
        self.queue.store_descs(&descs, first)
    }

    fn submit(&mut self, slot: u16, kind: u32, block: u64) -> Result<(), DriverError> {
        let s = u64::from(slot);
        let hdr = GuestAddress(HEADERS + 16 * s);
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&(block * (BLOCK as u64 / SECTOR)).to_le_bytes());
        self.mem.write_slice(&header, hdr)?;
        self.mem.write_obj(0xffu8, GuestAddress(STATUSES + s))?;
        self.queue.set_avail_entry(self.avail_idx, 3 * slot)?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(())
    }

    /// Publishes the new available index (the ring entries first), then kicks.
    fn publish_and_notify(&mut self) -> Result<(), DriverError> {
        self.queue.publish(self.avail_idx)?;
        self.driver.notify(0);
        Ok(())
    }

    /// Sleeps on the interrupt eventfd until every submitted request is used.
    fn wait_used(&mut self) -> Result<(), String> {
        match self.driver.wait_used(&self.queue, self.avail_idx, None) {
            Ok(Waited::Used) => Ok(()),
            Ok(Waited::NeedsReset) => Err("the device set DEVICE_NEEDS_RESET".into()),
            Err(e) => Err(driver_err(e)),
        }
    }

    fn check(&self, kind: u32, batch: &[u64]) -> Result<(), String> {
        for (slot, &b) in batch.iter().enumerate() {
            let s = slot as u64;
            let status: u8 = self
                .mem
                .read_obj(GuestAddress(STATUSES + s))
                .unwrap_or(0xff);
            if status != S_OK {
                return Err(format!("request for block {b} ended with status {status}"));
            }
            if kind == T_IN && self.check_data {
                let first: u64 = self
                    .mem
                    .read_obj(GuestAddress(DATA + BLOCK as u64 * s))
                    .unwrap_or(u64::MAX);
                if u64::from_le(first) != b {
                    return Err(format!("block {b} read back as block {first}"));
                }
            }
        }
        Ok(())
    }
}

/// The driver's error with its causes, for the one-line report.
fn driver_err(e: DriverError) -> String {
    edge::error_chain(&e)
}
