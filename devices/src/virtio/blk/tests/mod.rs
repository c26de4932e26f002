//! virtio-blk through the real transport and worker, driven by the test driver
//! (`crate::testing`) with its rings in guest memory. `hostile` holds the malformed chains a broken driver can send;
//! `rate_limit` a disk with a rate limiter; `snapshot` a disk saved and restored.

mod hostile;
mod rate_limit;
mod snapshot;
mod swap;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use virtio_bindings::virtio_blk::*;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

use super::*;
use crate::testing::{indirect_table, DriverQueue, MmioDriver, WAIT};
use crate::virtio::mmio::regs::STATUS as REG_STATUS;
use crate::virtio::DeviceErrors;

const NEEDS_RESET: u32 = 0x40;

const MEM_SIZE: usize = 0x40_0000;
const QSIZE: u16 = 16;
const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
/// Where a test puts an indirect descriptor table.
const TABLE: u64 = 0x38_0000;
const OUTSIDE_RAM: u64 = 0x1_0000_0000;
const DISK_SECTORS: u64 = 64;
const R: u16 = 0;
const W: u16 = VRING_DESC_F_WRITE as u16;

fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

struct Env {
    d: MmioDriver,
    image: TempFile,
}

fn env_with(read_only: bool, id: Option<String>) -> Env {
    let image = TempFile::new().unwrap();
    let bytes: Vec<u8> = (0..DISK_SECTORS * SECTOR_SIZE).map(pattern).collect();
    image.as_file().write_all(&bytes).unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let block = Block::new(image.as_path(), read_only, id).unwrap();
    let d = MmioDriver::new(&mem, Box::new(block)).unwrap();
    Env { d, image }
}

fn env() -> Env {
    env_with(false, None)
}

/// The request queue's rings, at the bottom of guest memory.
fn ring(mem: &GuestMemoryMmap) -> DriverQueue {
    DriverQueue::new(mem, 0, QSIZE).unwrap()
}

impl Env {
    /// Notifies queue 0 and waits until the device used `count` chains in all, or set
    /// NEEDS_RESET. Returns the last used element's (id, len).
    fn kick_and_wait(&mut self, vq: &DriverQueue, count: u16) -> (u32, u32) {
        self.d.notify(0);
        self.d.wait_used(vq, count, Some(WAIT)).unwrap();
        vq.used_elem(count.wrapping_sub(1)).unwrap()
    }

    fn status_byte(&self) -> u8 {
        self.d.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }

    fn write_header(&self, kind: u32, sector: u64) {
        let mem = &self.d.mem;
        mem.write_obj(kind.to_le(), GuestAddress(HDR)).unwrap();
        mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
        mem.write_obj(sector.to_le(), GuestAddress(HDR + 8))
            .unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    }

    fn errors(&self) -> DeviceErrors {
        self.d.transport.errors().snapshot()
    }
}

/// Descriptors `first..` chained in order: (addr, len, flags).
fn chain(first: u16, parts: &[(u64, u32, u16)]) -> Vec<RawDescriptor> {
    parts
        .iter()
        .enumerate()
        .map(|(i, &(addr, len, flags))| {
            let more = i + 1 < parts.len();
            let flags = if more {
                flags | VRING_DESC_F_NEXT as u16
            } else {
                flags
            };
            let next = if more { first + i as u16 + 1 } else { 0 };
            RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
        })
        .collect()
}

/// A request: header, data (`len` bytes at DATA with `data_flags`), status.
fn request(e: &Env, kind: u32, sector: u64, len: u32, data_flags: u16) -> Vec<RawDescriptor> {
    e.write_header(kind, sector);
    chain(0, &[(HDR, 16, R), (DATA, len, data_flags), (STATUS, 1, W)])
}

fn started() -> (Env, GuestMemoryMmap) {
    let mut e = env();
    let mem = e.d.mem.clone();
    e.d.bring_up(&[&ring(&mem)]).unwrap();
    (e, mem)
}

#[test]
fn new_sizes_disk_in_sectors_and_config_space_shows_it() {
    let e = env();
    drop(e.d);
    let block = Block::new(e.image.as_path(), false, None).unwrap();
    assert_eq!(block.capacity(), DISK_SECTORS);
    let mut cfg = [0u8; 24];
    block.read_config(0, &mut cfg);
    assert_eq!(
        u64::from_le_bytes(cfg[0..8].try_into().unwrap()),
        DISK_SECTORS
    );
    assert_eq!(u32::from_le_bytes(cfg[12..16].try_into().unwrap()), 254);
    assert_eq!(u32::from_le_bytes(cfg[20..24].try_into().unwrap()), 512);
    let mut past = [0xffu8; 4];
    block.read_config(u64::MAX - 1, &mut past);
    assert_eq!(past, [0; 4]);
}

#[test]
fn new_on_missing_file_names_the_path() {
    let err = Block::new(Path::new("/nonexistent/disk.img"), false, None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/disk.img"), "{err}");
}

#[test]
fn new_rejects_id_longer_than_20_bytes() {
    let e = env();
    let long = "x".repeat(21);
    let err = Block::new(e.image.as_path(), false, Some(long))
        .err()
        .unwrap();
    assert!(matches!(err, BlockError::IdTooLong { .. }));
}

#[test]
fn features_include_version_1_flush_and_ro_only_when_read_only() {
    let e = env();
    let rw = Block::new(e.image.as_path(), false, None).unwrap();
    let ro = Block::new(e.image.as_path(), true, None).unwrap();
    let base = 1 << 32 | 1 << VIRTIO_BLK_F_FLUSH | 1 << VIRTIO_BLK_F_SEG_MAX | 1 << 6;
    assert_eq!(rw.avail_features(), base);
    assert_eq!(ro.avail_features(), base | 1 << VIRTIO_BLK_F_RO);
}

#[test]
fn read_returns_the_disk_pattern() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, 3, 1024, W), 0)
        .unwrap();
    assert_eq!(e.kick_and_wait(&vq, 1), (0, 1025));
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_OK as u8);
    let mut got = vec![0u8; 1024];
    mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    let want: Vec<u8> = (3 * 512..5 * 512).map(pattern).collect();
    assert_eq!(got, want);
}

#[test]
fn read_spanning_several_data_descriptors_fills_them_in_order() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    e.write_header(VIRTIO_BLK_T_IN, 1);
    let descs = chain(
        0,
        &[
            (HDR, 16, R),
            (DATA, 512, W),
            (DATA + 0x1000, 512, W),
            (STATUS, 1, W),
        ],
    );
    vq.add_desc_chains(&descs, 0).unwrap();
    assert_eq!(e.kick_and_wait(&vq, 1).1, 1025);
    let mut second = vec![0u8; 512];
    mem.read_slice(&mut second, GuestAddress(DATA + 0x1000))
        .unwrap();
    assert_eq!(second, (1024..1536).map(pattern).collect::<Vec<_>>());
}

#[test]
fn write_then_flush_lands_in_the_file() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_OUT, 5, 512, R), 0)
        .unwrap();
    assert_eq!(e.kick_and_wait(&vq, 1).1, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_OK as u8);
    e.write_header(VIRTIO_BLK_T_FLUSH, 0);
    vq.add_desc_chains(&chain(0, &[(HDR, 16, R), (STATUS, 1, W)]), 0)
        .unwrap();
    assert_eq!(e.kick_and_wait(&vq, 2).1, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_OK as u8);

    let mut file = std::fs::File::open(e.image.as_path()).unwrap();
    file.seek(SeekFrom::Start(5 * 512)).unwrap();
    let mut got = [0u8; 512];
    file.read_exact(&mut got).unwrap();
    assert_eq!(got, [0xab; 512]);
}

#[test]
fn read_only_disk_refuses_write_with_ioerr_and_leaves_file_unchanged() {
    let mut e = env_with(true, None);
    let mem = e.d.mem.clone();
    let vq = ring(&mem);
    e.d.bring_up(&[&vq]).unwrap();
    mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_OUT, 0, 512, R), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
    let mut got = [0u8; 512];
    let mut file = std::fs::File::open(e.image.as_path()).unwrap();
    file.read_exact(&mut got).unwrap();
    assert_eq!(got.to_vec(), (0..512).map(pattern).collect::<Vec<_>>());
}

#[test]
fn write_to_read_only_disk_counts_as_a_failed_request() {
    let mut e = env_with(true, None);
    let mem = e.d.mem.clone();
    let vq = ring(&mem);
    e.d.bring_up(&[&vq]).unwrap();
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_OUT, 0, 512, R), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(
        e.errors(),
        DeviceErrors {
            requests_failed: 1,
            chains_rejected: 0
        }
    );
}

#[test]
fn get_id_returns_the_configured_id_nul_padded() {
    let mut e = env_with(false, Some("rootfs".into()));
    let mem = e.d.mem.clone();
    let vq = ring(&mem);
    e.d.bring_up(&[&vq]).unwrap();
    mem.write_slice(&[0xff; 20], GuestAddress(DATA)).unwrap();
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_GET_ID, 0, 20, W), 0)
        .unwrap();
    assert_eq!(e.kick_and_wait(&vq, 1).1, 21);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_OK as u8);
    let mut id = [0u8; 20];
    mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..7], b"rootfs\0");
    assert_eq!(id[19], 0);
}

#[test]
fn get_id_without_configured_id_comes_from_device_and_inode() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_GET_ID, 0, 20, W), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    let meta = std::fs::metadata(e.image.as_path()).unwrap();
    let want = format!("{:x}-{:x}", meta.dev(), meta.ino());
    let mut id = vec![0u8; want.len().min(20)];
    mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(id, &want.as_bytes()[..id.len()]);
}

#[test]
fn read_past_end_returns_ioerr_and_device_keeps_working() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    let last = DISK_SECTORS - 1;
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, last, 1024, W), 0)
        .unwrap();
    assert_eq!(e.kick_and_wait(&vq, 1).1, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, last, 512, W), 0)
        .unwrap();
    assert_eq!(e.kick_and_wait(&vq, 2).1, 513);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_OK as u8);
}

#[test]
fn sector_overflow_returns_ioerr() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, u64::MAX, 512, W), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
}

#[test]
fn data_length_not_a_multiple_of_512_returns_ioerr() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, 0, 100, W), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
}

#[test]
fn unknown_request_type_returns_unsupp() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    e.write_header(0x77, 0);
    vq.add_desc_chains(&chain(0, &[(HDR, 16, R), (STATUS, 1, W)]), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_UNSUPP as u8);
}

#[test]
fn reset_stops_worker_and_device_works_after_reactivation() {
    let (mut e, mem) = started();
    e.d.write(REG_STATUS, 0);
    assert_eq!(e.d.read(REG_STATUS), 0);
    // Fresh rings, as a driver sets up after reset.
    mem.write_slice(&[0u8; 0x1000], GuestAddress(0)).unwrap();
    let vq = ring(&mem);
    e.d.bring_up(&[&vq]).unwrap();
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, 0, 512, W), 0)
        .unwrap();
    assert_eq!(e.kick_and_wait(&vq, 1).1, 513);
}
