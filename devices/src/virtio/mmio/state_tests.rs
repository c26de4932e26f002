//! Saving and restoring the transport, with an rng behind it (the device with the least
//! state of its own): what a restore refuses, and that a restored or resumed device runs
//! from where the saved one stopped.

use std::time::Duration;

use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::test_util::through_json;
use crate::testing::{DriverError, DriverQueue, MmioDriver, Waited, WAIT};
use crate::virtio::device::VIRTIO_MMIO_INT_VRING;
use crate::virtio::state::{DeviceState, StateError, STATE_VERSION};
use crate::virtio::{Block, Rng, RngState};

const MEM_SIZE: usize = 0x40_0000;
const QSIZE: u16 = 16;
const BUF: u64 = 0x10_0000;
const W: u16 = VRING_DESC_F_WRITE as u16;

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// An rng brought up by the driver, its request queue at 0.
fn live_rng() -> (MmioDriver, DriverQueue) {
    let mem = memory();
    let vq = DriverQueue::new(&mem, 0, QSIZE).unwrap();
    let mut d = MmioDriver::new(&mem, Box::new(Rng::new())).unwrap();
    d.bring_up(&[&vq]).unwrap();
    (d, vq)
}

/// Posts a 64-byte buffer in descriptor `slot` (without notifying).
fn post(vq: &DriverQueue, slot: u16) {
    vq.push(slot, BUF + 0x100 * u64::from(slot), 64, W).unwrap();
}

fn wait(d: &MmioDriver, vq: &DriverQueue, n: u16) {
    assert_eq!(d.wait_used(vq, n, Some(WAIT)).unwrap(), Waited::Used);
}

/// The rng's saved state after it used one buffer: a running device, queue at 1/1.
fn saved_after_one_request() -> (MmioDriver, DriverQueue, TransportState) {
    let (mut d, vq) = live_rng();
    post(&vq, 0);
    d.notify(0);
    wait(&d, &vq, 1);
    let state = d.transport.save().unwrap();
    (d, vq, state)
}

fn restore_err(mem: &GuestMemoryMmap, state: TransportState) -> StateError {
    match MmioDriver::restore(mem, Box::new(Rng::new()), state) {
        Err(DriverError::State(e)) => e,
        Err(other) => panic!("restore failed otherwise: {other}"),
        Ok(_) => panic!("restore accepted the state"),
    }
}

#[test]
fn saved_state_holds_the_registers_and_the_queue_position_and_survives_json() {
    let (d, _vq, state) = saved_after_one_request();
    assert_eq!(state.version, STATE_VERSION);
    assert_eq!(state.device_type, 4);
    assert_eq!(state.status, STATUS_LIVE);
    assert!(state.running);
    assert_eq!(state.device, DeviceState::Rng(RngState {}));
    let q = &state.queues[0];
    assert_eq!(
        (q.size, q.ready, q.next_avail, q.next_used),
        (16, true, 1, 1)
    );
    assert_eq!(state.interrupt_status, VIRTIO_MMIO_INT_VRING);
    assert_eq!(through_json(&state), state);
    assert!(d.transport.is_quiesced());
}

#[test]
fn saved_device_stays_stopped_until_resume_then_goes_on() {
    let (mut d, vq, _state) = saved_after_one_request();
    post(&vq, 1);
    d.notify(0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(vq.used_idx().unwrap(), 1, "a stopped device used a buffer");
    d.transport.resume().unwrap();
    wait(&d, &vq, 2);
    assert!(!d.transport.is_quiesced());
    // And it runs on, as before the save.
    post(&vq, 2);
    d.notify(0);
    wait(&d, &vq, 3);
}

#[test]
fn restored_device_runs_only_after_resume_and_serves_what_was_posted_before() {
    let (d, vq, state) = saved_after_one_request();
    let mem = d.mem.clone();
    drop(d);
    // Posted, not notified, by the guest the snapshot caught.
    post(&vq, 1);
    let mut r = MmioDriver::restore(&mem, Box::new(Rng::new()), through_json(&state)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        vq.used_idx().unwrap(),
        1,
        "a restored device ran before resume"
    );
    r.transport.resume().unwrap();
    wait(&r, &vq, 2);
    assert_eq!(vq.used_elem(1).unwrap(), (1, 64));
}

#[test]
fn restore_raises_the_interrupt_the_driver_had_not_acknowledged_on_resume() {
    let (d, _vq, state) = saved_after_one_request();
    assert_ne!(state.interrupt_status, 0);
    let mut r = MmioDriver::restore(&d.mem.clone(), Box::new(Rng::new()), state).unwrap();
    assert!(!r.irq_raised(), "raised before the VM can take it");
    assert_eq!(r.read(INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
    r.transport.resume().unwrap();
    assert!(r.irq_raised());
}

#[test]
fn restore_refuses_another_version() {
    let (d, _vq, mut state) = saved_after_one_request();
    state.version = STATE_VERSION + 1;
    let err = restore_err(&d.mem, state);
    assert!(matches!(err, StateError::Version { found } if found == STATE_VERSION + 1));
    assert!(err.to_string().contains("version"), "{err}");
}

#[test]
fn restore_refuses_a_state_of_another_device_type() {
    let (d, _vq, state) = saved_after_one_request();
    let image = vmm_sys_util::tempfile::TempFile::new().unwrap();
    image.as_file().set_len(4096).unwrap();
    let block = Block::new(image.as_path(), false, None).unwrap();
    let err = match MmioDriver::restore(&d.mem, Box::new(block), state.clone()) {
        Err(DriverError::State(e)) => e,
        _ => panic!("a blk device took an rng state"),
    };
    assert!(matches!(
        err,
        StateError::WrongDevice {
            expected: "blk",
            found: "rng"
        }
    ));
    // A state whose transport says rng but whose device part is another device's.
    let mut forged = state;
    forged.device = DeviceState::Vsock(crate::virtio::VsockState {
        guest_cid: 3,
        connections: Vec::new(),
        next_host_port: crate::virtio::vsock::FIRST_HOST_PORT,
        transport_reset_owed: false,
    });
    assert!(matches!(
        restore_err(&d.mem, forged),
        StateError::WrongDevice {
            expected: "rng",
            found: "vsock"
        }
    ));
}

#[test]
fn restore_refuses_more_chains_in_flight_than_the_queue_holds() {
    let (d, _vq, mut state) = saved_after_one_request();
    state.queues[0].next_avail = state.queues[0].next_used.wrapping_add(QSIZE + 1);
    assert!(matches!(
        restore_err(&d.mem, state),
        StateError::InFlight {
            index: 0,
            in_flight: 17,
            ..
        }
    ));
}

#[test]
fn restore_refuses_a_used_index_the_memory_does_not_have() {
    let (d, _vq, mut state) = saved_after_one_request();
    state.queues[0].next_avail += 1;
    state.queues[0].next_used += 1;
    let err = restore_err(&d.mem, state);
    assert!(
        matches!(
            err,
            StateError::UsedIndex {
                index: 0,
                in_memory: 1,
                saved: 2
            }
        ),
        "{err:?}"
    );
}

#[test]
fn restore_refuses_unusable_rings() {
    let (d, _vq, state) = saved_after_one_request();
    type Spoil = fn(&mut QueueState);
    let cases: [(&str, Spoil); 3] = [
        ("size", |q| q.size = 12),
        ("misaligned", |q| q.used += 2),
        ("outside", |q| q.desc = MEM_SIZE as u64),
    ];
    for (what, spoil) in cases {
        let mut bad = state.clone();
        spoil(&mut bad.queues[0]);
        let err = restore_err(&d.mem, bad);
        assert!(
            matches!(err, StateError::Queue { index: 0, .. }),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn restore_refuses_queue_counts_and_sizes_not_the_devices() {
    let (d, _vq, state) = saved_after_one_request();
    let mut extra = state.clone();
    extra.queues.push(extra.queues[0].clone());
    assert!(matches!(
        restore_err(&d.mem, extra),
        StateError::QueueCount {
            found: 2,
            expected: 1,
            ..
        }
    ));
    let mut smaller = state;
    smaller.queues[0].max_size = 128;
    assert!(matches!(
        restore_err(&d.mem, smaller),
        StateError::QueueMaxSize {
            index: 0,
            found: 128,
            expected: 256
        }
    ));
}

#[test]
fn restore_refuses_statuses_no_driver_reaches_or_that_contradict_running() {
    let (d, _vq, state) = saved_after_one_request();
    let mut skipped = state.clone();
    // DRIVER_OK without FEATURES_OK.
    skipped.status = STATUS_INIT | VIRTIO_CONFIG_S_DRIVER_OK;
    assert!(matches!(
        restore_err(&d.mem, skipped),
        StateError::Status { .. }
    ));
    let mut not_live = state.clone();
    not_live.status = STATUS_FEATURES;
    assert!(matches!(
        restore_err(&d.mem, not_live),
        StateError::Inconsistent { running: true, .. }
    ));
    let mut live_stopped = state;
    live_stopped.running = false;
    assert!(matches!(
        restore_err(&d.mem, live_stopped),
        StateError::Inconsistent { running: false, .. }
    ));
}

#[test]
fn restore_refuses_features_the_device_does_not_offer() {
    let (d, _vq, mut state) = saved_after_one_request();
    state.driver_features |= 1 << 40;
    assert!(matches!(
        restore_err(&d.mem, state),
        StateError::Features { .. }
    ));
}

#[test]
fn device_saved_mid_negotiation_is_brought_up_by_its_driver_after_restore() {
    let mem = memory();
    let vq = DriverQueue::new(&mem, 0, QSIZE).unwrap();
    let mut d = MmioDriver::new(&mem, Box::new(Rng::new())).unwrap();
    let features = d.offered_features();
    d.negotiate(features);
    let (desc, avail, used) = (vq.desc_table_addr(), vq.avail_addr(), vq.used_addr());
    d.setup_queue(0, u32::from(QSIZE), desc, avail, used);
    let state = through_json(&d.transport.save().unwrap());
    assert!(!state.running);
    assert_eq!(state.status, STATUS_FEATURES);
    drop(d);

    let mut r = MmioDriver::restore(&mem, Box::new(Rng::new()), state).unwrap();
    r.transport.resume().unwrap();
    assert_eq!(r.read(STATUS), STATUS_FEATURES);
    r.write(QUEUE_SEL, 0);
    assert_eq!(r.read(QUEUE_READY), 1);
    r.write(STATUS, STATUS_LIVE);
    assert_eq!(r.read(STATUS), STATUS_LIVE);
    post(&vq, 0);
    r.notify(0);
    wait(&r, &vq, 1);
}

#[test]
fn reset_of_a_saved_device_drops_its_saved_state() {
    let (mut d, vq, _state) = saved_after_one_request();
    d.write(STATUS, 0);
    assert!(!d.transport.is_quiesced());
    d.transport.resume().unwrap();
    // Nothing runs: the driver must bring the device up again.
    post(&vq, 1);
    d.notify(0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(vq.used_idx().unwrap(), 1);
}

#[test]
fn device_that_asked_for_a_reset_is_restored_asking_and_not_running() {
    let (mut d, vq) = live_rng();
    // The available index runs more than a queue ahead: the device gives up on the queue.
    vq.publish(QSIZE + 1).unwrap();
    d.notify(0);
    crate::testing::wait_until(WAIT, || d.interrupt().needs_reset());
    let state = d.transport.save().unwrap();
    assert!(state.needs_reset);
    assert!(!state.running);
    let mem = d.mem.clone();
    drop(d);
    let mut r = MmioDriver::restore(&mem, Box::new(Rng::new()), state).unwrap();
    r.transport.resume().unwrap();
    assert_ne!(r.read(STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    assert!(!r.transport.is_quiesced());
}

#[test]
fn guest_memory_is_not_touched_by_a_refused_restore() {
    let (d, vq, mut state) = saved_after_one_request();
    let mem = d.mem.clone();
    drop(d);
    post(&vq, 1);
    state.version = 0;
    restore_err(&mem, state);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(vq.used_idx().unwrap(), 1);
    let mut buf = [0u8; 64];
    mem.read_slice(&mut buf, GuestAddress(BUF + 0x100)).unwrap();
    assert_eq!(buf, [0u8; 64]);
}
