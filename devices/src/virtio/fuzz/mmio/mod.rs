//! The virtio-mmio register window of each device, under random register traffic: reads
//! and writes at any offset (registers, unaligned, the config space, past the window) of
//! 1, 2, 4 or 8 bytes, mixed with the steps of a correct driver (negotiate, set a queue
//! up, DRIVER_OK, reset) so that the device gets activated often.
//!
//! A model of the registers the driver wrote (selectors, features, each queue's
//! configuration) is checked against what the transport answers and what it hands the
//! device (a recording wrapper around the real device sees each activation and reset):
//!
//! - identification registers never change; the feature pages and QueueNumMax/QueueReady
//!   answer for the selected page and queue; other widths, write-only and reserved
//!   registers read as zeros, whatever the vCPU's buffer held;
//! - the feature pages never show VIRTIO_RING_F_INDIRECT_DESC, which the devices refuse
//!   (`virtio::chain`), though the recording wrapper offers it on top of each device's
//!   features, and acknowledging it keeps FEATURES_OK from being set;
//! - the status is always a state of §3.1.1's sequence (plus FAILED and NEEDS_RESET, the
//!   latter only once DRIVER_OK was set), and InterruptStatus holds only its two bits;
//! - the device is activated only by DRIVER_OK written after FEATURES_OK, once, with
//!   exactly the queues the driver made ready (indices kept) with the sizes and addresses
//!   it wrote, and the features it acked (offered ones, VERSION_1 among them); DRIVER_OK
//!   without NEEDS_RESET means it was activated; a reset stops it before any new
//!   activation, and a status of 0 reads back as 0 with no interrupt pending;
//! - a config-space read of any width gives the bytes single-byte reads give;
//! - no worker thread panics.
//!
//! `ops` generates the traffic, `model` holds the model and the recording wrapper.

mod model;
mod ops;

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};

use fuzzkit::{fail, Reach};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestCaseResult};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_VERSION_1,
};
use vmm_sys_util::tempdir::TempDir;
use vmm_sys_util::tempfile::TempFile;

use self::model::{lock, Log, Model, Recorder};
use self::ops::{accesses, op, Access, Op};
use super::ring::memory;
use crate::testing::{worker_panics, MmioDriver};
use crate::virtio::mmio::regs::*;
use crate::virtio::{Balloon, Block, Net, Rng, VirtioDevice, Vsock};

const INIT: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
const FEATURES: u32 = INIT | VIRTIO_CONFIG_S_FEATURES_OK;
const LIVE: u32 = FEATURES | VIRTIO_CONFIG_S_DRIVER_OK;
/// What a vCPU's exit buffer holds before a read: not zeros.
const STALE: u8 = 0xa5;
/// Cases in a plain `cargo test` run.
const CASES: u32 = 256;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Blk,
    Net,
    Vsock,
    Rng,
    Balloon,
    BalloonWithStats,
}

/// What keeps a device's backend alive for the case.
#[allow(dead_code)] // held for their Drop
enum Backing {
    Image(TempFile),
    Peer(UnixDatagram),
    Dir(TempDir),
    None,
}

fn device(kind: Kind) -> Result<(Box<dyn VirtioDevice>, Backing), TestCaseError> {
    Ok(match kind {
        Kind::Blk => {
            let image = TempFile::new().map_err(fail)?;
            image.as_file().set_len(4096).map_err(fail)?;
            let blk = Block::new(image.as_path(), false, None).map_err(fail)?;
            (Box::new(blk), Backing::Image(image))
        }
        Kind::Net => {
            let (ours, peer) = UnixDatagram::pair().map_err(fail)?;
            ours.set_nonblocking(true).map_err(fail)?;
            let net = Net::with_backend(Arc::new(ours), None);
            (Box::new(net), Backing::Peer(peer))
        }
        Kind::Vsock => {
            let dir = TempDir::new().map_err(fail)?;
            let vsock = Vsock::new(3, &dir.as_path().join("v.sock")).map_err(fail)?;
            (Box::new(vsock), Backing::Dir(dir))
        }
        Kind::Rng => (Box::new(Rng::new()), Backing::None),
        Kind::Balloon => (Box::new(Balloon::new(1, false, 0)), Backing::None),
        Kind::BalloonWithStats => (Box::new(Balloon::new(1, true, 1)), Backing::None),
    })
}

fn kind() -> impl Strategy<Value = Kind> {
    select(vec![
        Kind::Blk,
        Kind::Net,
        Kind::Vsock,
        Kind::Rng,
        Kind::Balloon,
        Kind::BalloonWithStats,
    ])
}

fn valid_status(status: u32) -> bool {
    let flags = VIRTIO_CONFIG_S_FAILED | VIRTIO_CONFIG_S_NEEDS_RESET;
    [0, VIRTIO_CONFIG_S_ACKNOWLEDGE, INIT, FEATURES, LIVE].contains(&(status & !flags))
}

/// Runs `ops` against a `kind` device, checking the module's invariants after each access;
/// returns whether the device was ever activated.
fn run(kind: Kind, ops: &[Op]) -> Result<bool, TestCaseError> {
    let panics = worker_panics();
    let mem = memory();
    let (dev, _backing) = device(kind)?;
    let log = Arc::new(Mutex::new(Log::default()));
    let device_type = dev.device_type();
    let recorder = Recorder {
        inner: dev,
        log: log.clone(),
    };
    let mut model = Model::new(&recorder);
    let mut d = MmioDriver::new(&mem, Box::new(recorder)).map_err(fail)?;
    for op in ops {
        for a in accesses(op, model.offered, &mem) {
            let before = d.read(STATUS) & !VIRTIO_CONFIG_S_NEEDS_RESET;
            let activations = lock(&log).activations.len();
            let expected = model.activation();
            match a.write {
                None => {
                    let mut data = [STALE; 8];
                    d.read_bytes(a.offset, &mut data[..a.width]);
                    check_read(&mut d, &model, device_type, a, &data[..a.width])?;
                }
                Some(value) => {
                    let bytes = value.to_le_bytes();
                    d.write_bytes(a.offset, &bytes[..a.width]);
                    model.write(a.offset, &bytes[..a.width], before);
                }
            }
            let status = d.read(STATUS);
            prop_assert!(valid_status(status), "status {:#x} after {:?}", status, a);
            if status & VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
                prop_assert!(
                    status & VIRTIO_CONFIG_S_DRIVER_OK != 0,
                    "NEEDS_RESET before DRIVER_OK: {:#x}",
                    status
                );
            }
            let irq = d.read(INTERRUPT_STATUS);
            prop_assert_eq!(irq & !3, 0, "interrupt status {:#x}", irq);
            let log = lock(&log);
            prop_assert!(!log.activated_twice, "activated again without a reset");
            let is_live_write =
                a.width == 4 && a.offset == STATUS && a.write == Some(u64::from(LIVE));
            match &log.activations[activations..] {
                [] => {
                    let live = status & VIRTIO_CONFIG_S_DRIVER_OK != 0
                        && status & VIRTIO_CONFIG_S_NEEDS_RESET == 0;
                    prop_assert!(
                        !(live && before & VIRTIO_CONFIG_S_DRIVER_OK == 0),
                        "DRIVER_OK without an activation after {:?}",
                        a
                    );
                }
                [got] => {
                    prop_assert!(
                        is_live_write && before == FEATURES,
                        "activated by {:?} in status {:#x}",
                        a,
                        before
                    );
                    prop_assert_eq!(
                        got,
                        &expected,
                        "the device was not given what the driver set up"
                    );
                    prop_assert_eq!(got.features & !model.offered, 0, "unoffered features acked");
                    prop_assert!(
                        got.features & (1 << VIRTIO_F_VERSION_1) != 0,
                        "activated without VERSION_1"
                    );
                }
                more => prop_assert!(false, "{} activations by one access", more.len()),
            }
            if a.width == 4 && a.offset == STATUS && a.write == Some(0) {
                prop_assert_eq!(status, 0);
                prop_assert_eq!(irq, 0);
                prop_assert!(!log.active, "status 0 left the device running");
            }
        }
    }
    drop(d);
    prop_assert_eq!(worker_panics(), panics, "a device worker panicked");
    let activated = !lock(&log).activations.is_empty();
    Ok(activated)
}

fn check_read(
    d: &mut MmioDriver,
    model: &Model,
    device_type: u32,
    a: Access,
    data: &[u8],
) -> TestCaseResult {
    if a.offset >= CONFIG {
        for (i, &byte) in data.iter().enumerate() {
            let Some(at) = a.offset.checked_add(i as u64) else {
                break;
            };
            let mut one = [STALE];
            d.read_bytes(at, &mut one);
            prop_assert_eq!(
                byte,
                one[0],
                "config byte {:#x} differs by access width",
                at
            );
        }
        return Ok(());
    }
    if a.width != 4 {
        prop_assert!(
            data.iter().all(|&b| b == 0),
            "{}-byte register read at {:#x}: {:x?}",
            a.width,
            a.offset,
            data
        );
        return Ok(());
    }
    let got = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    if let Some(want) = model.register(a.offset, device_type) {
        prop_assert_eq!(got, want, "register {:#x}", a.offset);
    }
    Ok(())
}

#[test]
fn mmio_register_traffic_keeps_the_transport_state_machine_sound() {
    // The checks of an activation must not become vacuous by the inputs never reaching one.
    let activated = Reach::new("activated a device");
    fuzzkit::check(file!(), CASES, (kind(), vec(op(), 1..48)), |(kind, ops)| {
        activated.record(run(kind, &ops)?);
        Ok(())
    });
    activated.assert_at_least_one_in(8);
}
