//! Register-level tests of the transport against a fake device that records what the
//! transport hands it.

use std::sync::{Arc, Mutex};

use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;
use crate::testing::MmioDriver;
use crate::virtio::device::{ActivateError, VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};

const FAKE_ID: u32 = 42;
const FEATURE_X: u64 = 1 << 3;
const VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;

/// (size, desc, avail, used) of a queue handed to the device.
type QueueSeen = (u16, u64, u64, u64);

#[derive(Debug, Default)]
struct Record {
    /// Per activation: the ready queues and the acked features.
    activations: Vec<(Vec<QueueSeen>, u64)>,
    /// Per activation: the indices of the ready queues.
    ready_indices: Vec<Vec<usize>>,
    resets: u32,
    config_writes: Vec<(u64, Vec<u8>)>,
}

struct FakeDevice {
    record: Arc<Mutex<Record>>,
    config: [u8; 8],
    features: u64,
}

impl VirtioDevice for FakeDevice {
    fn device_type(&self) -> u32 {
        FAKE_ID
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 8]
    }
    fn avail_features(&self) -> u64 {
        self.features
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::config::read(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.record
            .lock()
            .unwrap()
            .config_writes
            .push((offset, data.to_vec()));
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let queues = ctx
            .ready_queues()
            .map(|(_, q)| &q.queue)
            .map(|q| (q.size(), q.desc_table(), q.avail_ring(), q.used_ring()))
            .collect();
        let indices = ctx.ready_queues().map(|(i, _)| i).collect();
        let mut record = self.record.lock().unwrap();
        record.activations.push((queues, ctx.acked_features));
        record.ready_indices.push(indices);
        Ok(())
    }
    fn reset(&mut self) {
        self.record.lock().unwrap().resets += 1;
    }
}

struct Fixture {
    d: MmioDriver,
    record: Arc<Mutex<Record>>,
}

fn fixture() -> Fixture {
    fixture_offering(VERSION_1 | FEATURE_X)
}

/// A fake device whose model offers `features`.
fn fixture_offering(features: u64) -> Fixture {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let dev = FakeDevice {
        record: record.clone(),
        config: [1, 2, 3, 4, 5, 6, 7, 8],
        features,
    };
    let d = MmioDriver::new(&mem, Box::new(dev)).unwrap();
    Fixture { d, record }
}

impl Fixture {
    fn activations(&self) -> usize {
        self.record.lock().unwrap().activations.len()
    }
}

#[test]
fn identification_registers_show_magic_version_2_and_device_id() {
    let mut f = fixture();
    assert_eq!(f.d.read(MAGIC), 0x7472_6976);
    assert_eq!(f.d.read(VERSION), 2);
    assert_eq!(f.d.read(DEVICE_ID), FAKE_ID);
    assert_eq!(f.d.read(VENDOR), 0);
}

#[test]
fn device_features_are_paged_by_selector() {
    let mut f = fixture();
    f.d.write(DEVICE_FEATURES_SEL, 0);
    assert_eq!(f.d.read(DEVICE_FEATURES), FEATURE_X as u32);
    f.d.write(DEVICE_FEATURES_SEL, 1);
    assert_eq!(f.d.read(DEVICE_FEATURES), 1); // VERSION_1 is bit 32
    f.d.write(DEVICE_FEATURES_SEL, 2);
    assert_eq!(f.d.read(DEVICE_FEATURES), 0);
}

#[test]
fn features_ok_is_refused_when_driver_does_not_accept_version_1() {
    let mut f = fixture();
    assert_eq!(f.d.negotiate(FEATURE_X), STATUS_INIT);
}

#[test]
fn features_ok_is_refused_when_driver_accepts_unoffered_feature() {
    let mut f = fixture();
    assert_eq!(f.d.negotiate(VERSION_1 | 1 << 7), STATUS_INIT);
}

#[test]
fn indirect_descriptors_are_never_offered_nor_accepted_even_from_a_device_model() {
    // The queues refuse indirect chains (`chain`), so a model offering the feature must
    // not get it negotiated.
    let indirect = 1u64 << VIRTIO_RING_F_INDIRECT_DESC;
    let mut f = fixture_offering(VERSION_1 | FEATURE_X | indirect);
    assert_eq!(f.d.offered_features(), VERSION_1 | FEATURE_X);
    assert_eq!(f.d.negotiate(VERSION_1 | indirect), STATUS_INIT);
}

#[test]
fn features_ok_is_kept_when_driver_accepts_version_1() {
    let mut f = fixture();
    assert_eq!(f.d.negotiate(VERSION_1 | FEATURE_X), STATUS_FEATURES);
}

#[test]
fn status_write_that_skips_a_step_is_ignored() {
    let mut f = fixture();
    f.d.write(STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    f.d.write(
        STATUS,
        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER_OK,
    );
    assert_eq!(f.d.read(STATUS), VIRTIO_CONFIG_S_ACKNOWLEDGE);
    assert_eq!(f.activations(), 0);
}

#[test]
fn queue_registers_report_max_size_and_zero_for_missing_queue() {
    let mut f = fixture();
    f.d.write(QUEUE_SEL, 1);
    assert_eq!(f.d.read(QUEUE_NUM_MAX), 8);
    f.d.write(QUEUE_SEL, 2);
    assert_eq!(f.d.read(QUEUE_NUM_MAX), 0);
    f.d.write(QUEUE_READY, 1); // a write to a missing queue is ignored
    assert_eq!(f.d.read(QUEUE_READY), 0);
}

#[test]
fn driver_ok_activates_device_with_configured_queues_and_features() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    f.d.setup_queue(1, 4, 0x4000, 0x5000, 0x6000);
    f.d.write(STATUS, STATUS_LIVE);
    assert_eq!(f.d.read(STATUS), STATUS_LIVE);
    let record = f.record.lock().unwrap();
    assert_eq!(
        record.activations,
        vec![(
            vec![(8, 0x1000, 0x2000, 0x3000), (4, 0x4000, 0x5000, 0x6000)],
            VERSION_1
        )]
    );
}

#[test]
fn a_queue_left_not_ready_does_not_shift_the_indices_of_the_others() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(1, 4, 0x4000, 0x5000, 0x6000);
    f.d.write(STATUS, STATUS_LIVE);
    let record = f.record.lock().unwrap();
    assert_eq!(record.ready_indices, vec![vec![1]]);
    assert_eq!(record.activations[0].0, vec![(4, 0x4000, 0x5000, 0x6000)]);
}

#[test]
fn driver_ok_with_non_power_of_two_queue_size_sets_needs_reset() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(0, 6, 0x1000, 0x2000, 0x3000);
    f.d.write(STATUS, STATUS_LIVE);
    assert_eq!(f.activations(), 0);
    assert_ne!(f.d.read(STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
    assert_ne!(f.d.read(INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG, 0);
}

#[test]
fn driver_ok_with_ring_outside_memory_sets_needs_reset() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(0, 8, 0x1000, 0x2000, 0x4000_0000);
    f.d.write(STATUS, STATUS_LIVE);
    assert_eq!(f.activations(), 0);
    assert_ne!(f.d.read(STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

#[test]
fn driver_ok_with_misaligned_descriptor_table_sets_needs_reset() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(0, 8, 0x1008, 0x2000, 0x3000);
    f.d.write(STATUS, STATUS_LIVE);
    assert_eq!(f.activations(), 0);
    assert_ne!(f.d.read(STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

#[test]
fn queue_writes_after_driver_ok_are_ignored() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    f.d.write(STATUS, STATUS_LIVE);
    f.d.write(QUEUE_SEL, 0);
    f.d.write(QUEUE_READY, 0);
    f.d.write(QUEUE_NUM, 2);
    assert_eq!(f.d.read(QUEUE_READY), 1);
    assert_eq!(f.d.transport.queues[0].size, 8);
}

#[test]
fn driver_features_written_after_features_ok_are_ignored() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.write(DRIVER_FEATURES_SEL, 0);
    f.d.write(DRIVER_FEATURES, FEATURE_X as u32);
    f.d.setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    f.d.write(STATUS, STATUS_LIVE);
    assert_eq!(f.record.lock().unwrap().activations[0].1, VERSION_1);
}

#[test]
fn status_zero_resets_device_queues_and_interrupt() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    f.d.write(STATUS, STATUS_LIVE);
    f.d.transport.interrupt().set_needs_reset();
    f.d.write(STATUS, 0);
    assert_eq!(f.record.lock().unwrap().resets, 1);
    assert_eq!(f.d.read(STATUS), 0);
    assert_eq!(f.d.read(INTERRUPT_STATUS), 0);
    f.d.write(QUEUE_SEL, 0);
    assert_eq!(f.d.read(QUEUE_READY), 0);
    assert_eq!(f.d.transport.queues[0], QueueConfig::new(16));
    // The device can be brought up again after the reset.
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    f.d.write(STATUS, STATUS_LIVE);
    assert_eq!(f.activations(), 2);
}

#[test]
fn interrupt_ack_clears_only_acknowledged_bits() {
    let mut f = fixture();
    f.d.transport.interrupt().signal_used_queue();
    f.d.transport.interrupt().signal_config_change();
    assert_eq!(
        f.d.read(INTERRUPT_STATUS),
        VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG
    );
    f.d.write(INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    assert_eq!(f.d.read(INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
}

#[test]
fn needs_reset_from_device_is_visible_in_status() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.transport.interrupt().set_needs_reset();
    assert_eq!(
        f.d.read(STATUS),
        STATUS_FEATURES | VIRTIO_CONFIG_S_NEEDS_RESET
    );
}

#[test]
fn register_accesses_of_wrong_width_are_ignored() {
    let mut f = fixture();
    let mut byte = [0u8; 1];
    f.d.transport.read(MAGIC, &mut byte);
    assert_eq!(byte, [0]);
    let mut wide = [0u8; 8];
    f.d.transport.read(MAGIC, &mut wide);
    assert_eq!(wide, [0; 8]);
    f.d.transport
        .write(STATUS, &[VIRTIO_CONFIG_S_ACKNOWLEDGE as u8]);
    assert_eq!(f.d.read(STATUS), 0);
    // An unaligned 32-bit access matches no register.
    f.d.transport
        .write(STATUS + 1, &VIRTIO_CONFIG_S_ACKNOWLEDGE.to_le_bytes());
    assert_eq!(f.d.read(STATUS), 0);
}

#[test]
fn register_read_of_another_width_reads_zeros_whatever_the_exit_buffer_held() {
    // Regression (MMIO fuzzing): the transport left a 1-, 2- or 8-byte register read's
    // buffer untouched, and KVM's exit buffer holds the previous exit's bytes.
    let mut f = fixture();
    for width in [1, 2, 8] {
        let mut data = [0xa5u8; 8];
        f.d.read_bytes(MAGIC, &mut data[..width]);
        assert_eq!(&data[..width], &[0u8; 8][..width], "{width}-byte read");
    }
}

#[test]
fn config_space_accesses_of_any_width_reach_device() {
    let mut f = fixture();
    let mut one = [0u8; 1];
    f.d.transport.read(CONFIG + 2, &mut one);
    assert_eq!(one, [3]);
    let mut eight = [0u8; 8];
    f.d.transport.read(CONFIG, &mut eight);
    assert_eq!(eight, [1, 2, 3, 4, 5, 6, 7, 8]);
    f.d.transport.write(CONFIG + 4, &[9, 9]);
    assert_eq!(
        f.record.lock().unwrap().config_writes,
        vec![(4, vec![9, 9])]
    );
}

#[test]
fn queue_notify_write_kicks_that_queue_eventfd() {
    let mut f = fixture();
    f.d.write(QUEUE_NOTIFY, 1);
    assert!(f.d.transport.queue_evts()[0].read().is_err()); // EAGAIN: not kicked
    assert_eq!(f.d.transport.queue_evts()[1].read().unwrap(), 1);
    f.d.write(QUEUE_NOTIFY, 7); // no such queue: ignored
}

#[test]
fn reset_drops_stale_queue_notifications() {
    let mut f = fixture();
    f.d.write(QUEUE_NOTIFY, 0);
    f.d.write(STATUS, 0);
    assert!(f.d.transport.queue_evts()[0].read().is_err());
}

#[test]
fn cmdline_arg_gives_size_in_k_base_in_hex_and_irq() {
    assert_eq!(
        cmdline_arg(0xd000_0000, 0x1000, 5),
        "virtio_mmio.device=4K@0xd0000000:5"
    );
    assert_eq!(
        cmdline_arg(0xd000_1000, 0x200, 6),
        "virtio_mmio.device=512@0xd0001000:6"
    );
}

#[test]
fn save_of_a_device_that_cannot_be_saved_leaves_it_running() {
    let mut f = fixture();
    f.d.negotiate(VERSION_1);
    f.d.setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    f.d.write(STATUS, STATUS_LIVE);
    let err = f.d.transport.save().unwrap_err();
    assert!(
        matches!(
            err,
            crate::virtio::StateError::Unsupported { device: "unknown" }
        ),
        "{err:?}"
    );
    assert!(!f.d.transport.is_quiesced());
    assert_eq!(f.d.read(STATUS), STATUS_LIVE, "no DEVICE_NEEDS_RESET");
    // Still the running device: a reset reaches it.
    f.d.write(STATUS, 0);
    assert_eq!(f.record.lock().unwrap().resets, 1);
}
