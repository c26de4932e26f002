//! virtio-blk's request queue over an 8-sector image. Besides what every device
//! promises: the image never changes size, a read-only image never changes, and no answer
//! is longer than the disk plus its status byte.

use std::io::{Read, Seek, SeekFrom, Write};

use proptest::prelude::*;
use proptest::sample::select;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use vmm_sys_util::tempfile::TempFile;

use fuzzkit::fail;

use super::{Case, Coverage, CASES};
use crate::virtio::blk::{Block, SECTOR_SIZE};
use crate::virtio::fuzz::ring::{ring, QueueModel, Shape};

const SECTORS: u64 = 8;

/// `struct virtio_blk_outhdr`: type, reserved, sector; mostly real types and sectors
/// around the disk's end.
fn header() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![
        4 => select(vec![VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID]),
        1 => any::<u32>(),
    ];
    let sector = prop_oneof![
        4 => 0..=SECTORS + 1,
        1 => select(vec![u64::MAX, u64::MAX / SECTOR_SIZE, 1 << 63]),
        1 => any::<u64>(),
    ];
    (kind, any::<u32>(), sector).prop_map(|(kind, reserved, sector)| {
        let mut h = kind.to_le_bytes().to_vec();
        h.extend(reserved.to_le_bytes());
        h.extend(sector.to_le_bytes());
        h
    })
}

/// Header, data, status as Linux sends them, and the splits VERSION_1 allows.
fn shapes() -> impl Strategy<Value = Shape> {
    let data = prop_oneof![
        3 => (1..=3u32).prop_map(|k| k * SECTOR_SIZE as u32),
        1 => 1..=1100u32,
    ];
    prop_oneof![
        // IN / GET_ID: data written by the device.
        data.clone()
            .prop_map(|d| vec![(16, false), (d, true), (1, true)]),
        // OUT: data read by the device.
        data.clone()
            .prop_map(|d| vec![(16, false), (d, false), (1, true)]),
        // FLUSH.
        Just(vec![(16, false), (1, true)]),
        // The header split in two, the status sharing the data's buffer.
        data.prop_map(|d| vec![(8, false), (8, false), (d + 1, true)]),
    ]
}

fn image(read_only_pattern: u8) -> Result<(TempFile, Vec<u8>), TestCaseError> {
    let image = TempFile::new().map_err(fail)?;
    let bytes: Vec<u8> = (0..SECTORS * SECTOR_SIZE)
        .map(|i| (i % 251) as u8 ^ read_only_pattern)
        .collect();
    image.as_file().write_all(&bytes).map_err(fail)?;
    Ok((image, bytes))
}

fn contents(image: &TempFile) -> Result<Vec<u8>, TestCaseError> {
    let mut file = image.as_file();
    file.seek(SeekFrom::Start(0)).map_err(fail)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(fail)?;
    Ok(bytes)
}

#[test]
fn blk_answers_hostile_request_rings_and_keeps_the_image_in_bounds() {
    let model = QueueModel {
        shapes: shapes().boxed(),
        header: header().boxed(),
    };
    let coverage = Coverage::default();
    fuzzkit::check(
        file!(),
        CASES,
        (ring(&model), any::<bool>()),
        |(ring, read_only)| {
            let (image, original) = image(read_only as u8)?;
            let block =
                Block::new(image.as_path(), read_only, Some("fuzz".into())).map_err(fail)?;
            let case = Case::start(block, vec![ring], &[true])?;
            case.settle(|c| c.answered(0))?;
            let f = case.finish(false)?;
            coverage.record(&f);
            let now = contents(&image)?;
            prop_assert_eq!(now.len(), original.len(), "the image changed size");
            if read_only {
                prop_assert!(now == original, "a read-only image was written");
            }
            let longest = SECTORS * SECTOR_SIZE + 1;
            for &(_, len) in &f.used[0] {
                prop_assert!(u64::from(len) <= longest, "answered {} bytes", len);
            }
            Ok(())
        },
    );
    coverage.assert_reached();
}
