//! End to end: the test guest's virtio-blk driver against the VMM's virtio-blk devices.
//! Disk images with a known pattern are built here; the guest reports what it read (as
//! FNV-1a hashes), and the files are checked after the run: the write + FLUSH landed,
//! the read-only disk is unchanged.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{boot_guest, fnv1a32, scratch_dir, skip_without_kvm};

const SECTOR: usize = 512;
const WRITE_SECTOR: usize = 8;
const WRITE_PATTERN: &[u8] = b"vmm-blk-write-test";

/// A disk image of `sectors` sectors whose bytes depend on their offset and `seed`.
fn pattern_image(sectors: usize, seed: u8) -> Vec<u8> {
    (0..sectors * SECTOR)
        .map(|i| {
            ((i as u32)
                .wrapping_mul(31)
                .wrapping_add((i / SECTOR) as u32 * 7) as u8)
                ^ seed
        })
        .collect()
}

fn write_image(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn hex32(v: u32) -> String {
    format!("0x{v:08x}")
}

#[test]
fn blk_reads_writes_flushes_and_identifies_a_disk() {
    if skip_without_kvm("blk_reads_writes_flushes_and_identifies_a_disk") {
        return;
    }
    let dir = scratch_dir("virtio-blk");
    let image = pattern_image(128, 0x5c);
    let path = write_image(&dir, "disk.img", &image);
    let disk = format!("{path},id=vmm-test-disk");
    let run = boot_guest(&["--disk", &disk], "tests=blk");
    let after = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_eq!(run.fact("blk_capacity"), Some("128"), "{}", run.describe());
    assert_eq!(
        run.fact("blk_read_fnv1a"),
        Some(hex32(fnv1a32(&image[..4096])).as_str()),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("blk_write_status"),
        Some("0"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("blk_flush_status"),
        Some("0"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("blk_id"),
        Some("vmm-test-disk"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("blk_past_end_status"),
        Some("1"),
        "{}",
        run.describe()
    );
    let irqs: u32 = run.fact("blk_irqs").unwrap().parse().unwrap();
    assert!(irqs >= 1, "no device interrupt: {}", run.describe());

    // The write landed in the file (FLUSH is an fdatasync), and nothing else changed.
    assert_eq!(after.len(), image.len(), "the disk file changed size");
    let written = &after[WRITE_SECTOR * SECTOR..(WRITE_SECTOR + 1) * SECTOR];
    let expected: Vec<u8> = WRITE_PATTERN.iter().copied().cycle().take(SECTOR).collect();
    assert_eq!(
        written,
        &expected[..],
        "sector {WRITE_SECTOR} does not hold the pattern"
    );
    assert_eq!(
        &after[..WRITE_SECTOR * SECTOR],
        &image[..WRITE_SECTOR * SECTOR]
    );
    assert_eq!(
        &after[(WRITE_SECTOR + 1) * SECTOR..],
        &image[(WRITE_SECTOR + 1) * SECTOR..]
    );
}

#[test]
fn rootfs_is_the_first_disk_and_a_read_only_disk_refuses_writes() {
    if skip_without_kvm("rootfs_is_the_first_disk_and_a_read_only_disk_refuses_writes") {
        return;
    }
    let dir = scratch_dir("virtio-blk-ro");
    let root = pattern_image(64, 0x11);
    let ro = pattern_image(16, 0xa7);
    let root_path = write_image(&dir, "root.img", &root);
    let ro_path = write_image(&dir, "ro.img", &ro);
    let ro_disk = format!("{ro_path},ro");
    let run = boot_guest(
        &["--rootfs", &root_path, "--disk", &ro_disk],
        "tests=boot,virtio,blk,blkro",
    );
    let root_after = std::fs::read(&root_path).unwrap();
    let ro_after = std::fs::read(&ro_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let cmdline = run.fact("cmdline").unwrap_or("");
    assert!(cmdline.contains("root=/dev/vda rw"), "{}", run.describe());
    // The root disk is the first virtio-blk device (ID 2), the --disk the second.
    assert_eq!(
        run.facts("virtio_device"),
        ["0xd0000000:5:2", "0xd0001000:6:2"],
        "{}",
        run.describe()
    );
    assert_eq!(run.fact("blk_capacity"), Some("64"), "{}", run.describe());
    assert_eq!(
        run.fact("blk_read_fnv1a"),
        Some(hex32(fnv1a32(&root[..4096])).as_str()),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("blkro_read_fnv1a"),
        Some(hex32(fnv1a32(&ro[..SECTOR])).as_str()),
        "{}",
        run.describe()
    );
    let status = run.fact("blkro_write_status").unwrap_or("none");
    assert!(
        status == "1" || status == "2",
        "write to a read-only disk got status {status}: {}",
        run.describe()
    );
    assert_eq!(
        run.fact("blkro_feature_ro"),
        Some("1"),
        "the read-only disk does not offer VIRTIO_BLK_F_RO"
    );
    assert_eq!(ro_after, ro, "the read-only disk file changed");
    assert_eq!(
        &root_after[WRITE_SECTOR * SECTOR..WRITE_SECTOR * SECTOR + WRITE_PATTERN.len()],
        WRITE_PATTERN
    );
}
