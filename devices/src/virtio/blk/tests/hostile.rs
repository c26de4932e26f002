//! Malformed requests and broken queues: each gets an error status, a zero-length used
//! entry or DEVICE_NEEDS_RESET; none may panic or hang the worker.

use super::*;

#[test]
fn short_header_returns_ioerr() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    e.write_header(VIRTIO_BLK_T_IN, 0);
    vq.add_desc_chains(&chain(0, &[(HDR, 8, R), (STATUS, 1, W)]), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
}

#[test]
fn short_header_raises_the_rejected_chain_count() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    assert_eq!(e.errors(), DeviceErrors::default());
    e.write_header(VIRTIO_BLK_T_IN, 0);
    vq.add_desc_chains(&chain(0, &[(HDR, 8, R), (STATUS, 1, W)]), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.errors().chains_rejected, 1);
    assert_eq!(e.errors().requests_failed, 0);
}

#[test]
fn read_into_device_readable_buffer_returns_ioerr_and_leaves_it_untouched() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, 0, 512, R), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
    let mut got = [0u8; 512];
    mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
    assert_eq!(got, [0x5a; 512]);
}

#[test]
fn data_buffer_outside_guest_memory_returns_ioerr() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    e.write_header(VIRTIO_BLK_T_IN, 0);
    let descs = chain(0, &[(HDR, 16, R), (OUTSIDE_RAM, 512, W), (STATUS, 1, W)]);
    vq.add_desc_chains(&descs, 0).unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
}

#[test]
fn data_length_of_almost_4_gib_returns_ioerr() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    vq.add_desc_chains(&request(&e, VIRTIO_BLK_T_IN, 0, 0xffff_fe00, W), 0)
        .unwrap();
    e.kick_and_wait(&vq, 1);
    assert_eq!(e.status_byte(), VIRTIO_BLK_S_IOERR as u8);
}

#[test]
fn chain_longer_than_4_gib_in_total_sets_needs_reset() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    e.write_header(VIRTIO_BLK_T_IN, 0);
    let descs = chain(
        0,
        &[
            (HDR, 16, R),
            (DATA, 0x8000_0000, W),
            (DATA, 0x8000_0000, W),
            (STATUS, 1, W),
        ],
    );
    vq.add_desc_chains(&descs, 0).unwrap();
    e.kick_and_wait(&vq, 1);
    assert_ne!(e.d.read(REG_STATUS) & NEEDS_RESET, 0);
}

#[test]
fn status_descriptor_outside_memory_or_read_only_returns_chain_with_len_0() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    e.write_header(VIRTIO_BLK_T_IN, 0);
    let outside = chain(0, &[(HDR, 16, R), (DATA, 512, W), (OUTSIDE_RAM, 1, W)]);
    vq.add_desc_chains(&outside, 0).unwrap();
    assert_eq!(e.kick_and_wait(&vq, 1), (0, 0));
    let read_only = chain(0, &[(HDR, 16, R), (STATUS, 1, R)]);
    vq.add_desc_chains(&read_only, 0).unwrap();
    assert_eq!(e.kick_and_wait(&vq, 2), (0, 0));
    assert_eq!(e.status_byte(), 0xff);
    assert!(!e.d.interrupt().needs_reset());
}

#[test]
fn descriptor_loop_sets_needs_reset_without_hanging() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    e.write_header(VIRTIO_BLK_T_IN, 0);
    let next = VRING_DESC_F_NEXT as u16;
    let descs = [
        RawDescriptor::from(SplitDescriptor::new(HDR, 16, next, 1)),
        RawDescriptor::from(SplitDescriptor::new(DATA, 512, W | next, 0)),
    ];
    vq.add_desc_chains(&descs, 0).unwrap();
    e.kick_and_wait(&vq, 1);
    assert_ne!(e.d.read(REG_STATUS) & NEEDS_RESET, 0);
}

#[test]
fn indirect_chain_sets_needs_reset_and_is_not_served() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    e.write_header(VIRTIO_BLK_T_IN, 0);
    // A well-formed read, but in an indirect table: the driver cannot have negotiated
    // VIRTIO_RING_F_INDIRECT_DESC, which the device never offers.
    let request = chain(0, &[(HDR, 16, R), (DATA, 512, W), (STATUS, 1, W)]);
    let indirect = indirect_table(&mem, TABLE, &request).unwrap();
    vq.add_desc_chains(&[indirect], 0).unwrap();
    e.kick_and_wait(&vq, 1);
    assert_ne!(e.d.read(REG_STATUS) & NEEDS_RESET, 0);
    assert_eq!(e.status_byte(), 0xff);
    assert_eq!(e.errors().chains_rejected, 1);
}

#[test]
fn avail_index_past_queue_size_sets_needs_reset() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    vq.publish(QSIZE + 1).unwrap();
    e.kick_and_wait(&vq, 1);
    assert_ne!(e.d.read(REG_STATUS) & NEEDS_RESET, 0);
    assert_eq!(vq.used_idx().unwrap(), 0);
}

#[test]
fn head_index_past_queue_size_sets_needs_reset() {
    let (mut e, mem) = started();
    let vq = ring(&mem);
    vq.set_avail_entry(0, QSIZE + 3).unwrap();
    vq.publish(1).unwrap();
    e.kick_and_wait(&vq, 1);
    assert_ne!(e.d.read(REG_STATUS) & NEEDS_RESET, 0);
}
