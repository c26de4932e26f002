//! Replacing the image of a live disk (`swap`, `mmio::config_change`): the next request
//! goes to the new file, the capacity in the config space is the new file's, and the
//! driver is told by a configuration-change interrupt and a new ConfigGeneration, at once
//! or, for a device stopped by a save or a restore, when it resumes.

use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::test_util::through_json;
use crate::virtio::device::VIRTIO_MMIO_INT_CONFIG;
use crate::virtio::mmio::regs::{CONFIG, CONFIG_GENERATION, INTERRUPT_STATUS};
use crate::virtio::{DiskImage, Rng, SwapError};

/// The new image's size: not the old one's, so a capacity change shows.
const NEW_SECTORS: u64 = 24;
const NEW_BYTE: u8 = 0xb5;

/// A second image, every byte NEW_BYTE.
fn new_image() -> TempFile {
    let image = TempFile::new().unwrap();
    image
        .as_file()
        .write_all(&vec![NEW_BYTE; (NEW_SECTORS * SECTOR_SIZE) as usize])
        .unwrap();
    image
}

fn open(image: &TempFile) -> DiskImage {
    DiskImage::open(image.as_path(), false).unwrap()
}

/// Reads sector 0 through the queue as the driver's `n`th request; its first byte.
fn read_sector_0(e: &mut Env, vq: &DriverQueue, n: u16) -> u8 {
    vq.add_desc_chains(&request(e, VIRTIO_BLK_T_IN, 0, 512, W), 0)
        .unwrap();
    e.kick_and_wait(vq, n);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_OK as u8);
    e.d.mem.read_obj(GuestAddress(DATA)).unwrap()
}

fn capacity(e: &mut Env) -> u64 {
    u64::from(e.d.read(CONFIG)) | u64::from(e.d.read(CONFIG + 4)) << 32
}

#[test]
fn after_a_swap_the_next_request_reads_the_new_image() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    assert_eq!(read_sector_0(&mut e, &vq, 1), pattern(0));
    let image = new_image();
    e.d.transport.swap_disk(open(&image)).unwrap();
    assert_eq!(read_sector_0(&mut e, &vq, 2), NEW_BYTE);
}

#[test]
fn a_swap_puts_the_new_capacity_in_the_config_space() {
    let (mut e, _mem) = started();
    assert_eq!(capacity(&mut e), DISK_SECTORS);
    let image = new_image();
    e.d.transport.swap_disk(open(&image)).unwrap();
    assert_eq!(capacity(&mut e), NEW_SECTORS);
}

#[test]
fn after_a_swap_a_read_past_the_new_end_gets_ioerr() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    let image = new_image();
    e.d.transport.swap_disk(open(&image)).unwrap();
    // Inside the old disk, past the new one.
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, NEW_SECTORS, 512, W), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
}

#[test]
fn a_swap_raises_the_config_change_interrupt_and_a_new_generation() {
    let (mut e, _mem) = started();
    assert_eq!(e.d.read(CONFIG_GENERATION), 0);
    let _ = e.d.irq_raised();
    let image = new_image();
    e.d.transport.swap_disk(open(&image)).unwrap();
    assert!(e.d.irq_raised());
    assert_eq!(
        e.d.read(INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG,
        VIRTIO_MMIO_INT_CONFIG
    );
    assert_eq!(e.d.read(CONFIG_GENERATION), 1);
    // The generation the device's worker sees through its interrupt is the register's.
    assert_eq!(e.d.interrupt().config_generation(), 1);
}

#[test]
fn a_swap_waits_for_the_request_in_progress() {
    let e = env();
    let image = new_image();
    let mut block = Block::new(e.image.as_path(), false, None).unwrap();
    // Held as the worker holds it through one request.
    let disk = block.disk.clone();
    let in_progress = disk.lock().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let swap = std::thread::spawn(move || {
        block.swap_image(open(&image)).unwrap();
        done_tx.send(block.capacity()).unwrap();
    });
    assert!(done_rx.recv_timeout(Duration::from_millis(100)).is_err());
    assert_eq!(in_progress.capacity, DISK_SECTORS, "changed mid-request");
    drop(in_progress);
    assert_eq!(done_rx.recv_timeout(WAIT).unwrap(), NEW_SECTORS);
    swap.join().unwrap();
}

#[test]
fn a_swap_while_stopped_for_a_snapshot_is_announced_on_resume_and_saved() {
    let (mut e, _mem) = started();
    let before = e.d.transport.save().unwrap();
    let _ = e.d.irq_raised();
    let image = new_image();
    e.d.transport.swap_disk(open(&image)).unwrap();
    assert!(!e.d.irq_raised(), "interrupt while the device is stopped");
    // A snapshot taken now records the new disk and the pending interrupt.
    let after = e.d.transport.save().unwrap();
    assert_eq!(after.config_generation, before.config_generation + 1);
    assert_ne!(after.interrupt_status & VIRTIO_MMIO_INT_CONFIG, 0);
    assert_eq!(
        after.device,
        DeviceState::Block(BlockState {
            capacity: NEW_SECTORS,
            read_only: false
        })
    );
    e.d.transport.resume().unwrap();
    assert!(e.d.irq_raised());
    assert_eq!(e.d.read(CONFIG_GENERATION), 1);
}

#[test]
fn a_swap_into_a_restored_device_not_yet_resumed_is_announced_on_resume() {
    let (mut e, mem) = started();
    let state = e.d.transport.save().unwrap();
    drop(e.d);
    let block = Block::new(e.image.as_path(), false, None).unwrap();
    let mut d = MmioDriver::restore(&mem, Box::new(block), through_json(&state)).unwrap();
    let image = new_image();
    d.transport.swap_disk(open(&image)).unwrap();
    assert!(!d.irq_raised());
    d.transport.resume().unwrap();
    assert!(d.irq_raised());
    assert_eq!(d.read(CONFIG_GENERATION), 1);
    assert_ne!(d.read(INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG, 0);
}

#[test]
fn an_image_opened_read_only_for_a_read_write_drive_is_refused_and_the_old_kept() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    let image = new_image();
    let read_only = DiskImage::open(image.as_path(), true).unwrap();
    let err = e.d.transport.swap_disk(read_only).unwrap_err();
    assert!(matches!(
        err,
        SwapError::ReadOnly {
            opened_read_only: true
        }
    ));
    assert_eq!(e.d.read(CONFIG_GENERATION), 0);
    assert_eq!(capacity(&mut e), DISK_SECTORS);
    assert_eq!(read_sector_0(&mut e, &vq, 1), pattern(0));
}

#[test]
fn a_directory_or_fifo_is_not_a_disk_image() {
    let dir = std::env::temp_dir();
    let err = DiskImage::open(&dir, false).unwrap_err();
    assert!(err.to_string().contains("disk image"), "{err}");
    let fifo = dir.join(format!("vmm-swap-fifo-{}", std::process::id()));
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = DiskImage::open(&fifo, true).unwrap_err();
    std::fs::remove_file(&fifo).unwrap();
    assert!(
        format!("{:?}", err).contains("a FIFO"),
        "{err}: {:?}",
        std::error::Error::source(&err)
    );
}

#[test]
fn a_device_without_a_disk_refuses_a_swap() {
    let e = env();
    let image = e.image;
    let mut d = MmioDriver::new(&e.d.mem, Box::new(Rng::new())).unwrap();
    let err = d.transport.swap_disk(open(&image)).unwrap_err();
    assert!(matches!(err, SwapError::NotADisk { device: "rng" }));
    assert_eq!(d.read(CONFIG_GENERATION), 0);
}

#[test]
fn get_id_follows_the_new_file_unless_an_id_was_configured() {
    let image = new_image();
    let derived = open(&image).derived_id;
    let e = env();
    let mut from_file = Block::new(e.image.as_path(), false, None).unwrap();
    from_file.swap_image(open(&image)).unwrap();
    assert_eq!(&from_file.disk().id[..derived.len()], derived.as_bytes());
    let mut named = Block::new(e.image.as_path(), false, Some("data".into())).unwrap();
    named.swap_image(open(&image)).unwrap();
    assert_eq!(&named.disk().id[..5], b"data\0");
}
