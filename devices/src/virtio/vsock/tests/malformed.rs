//! A broken or hostile driver: packets are dropped or reset, chains the device cannot map
//! make it ask for a reset, nothing panics.

use std::io::{Read, Write};

use super::*;
use crate::testing::indirect_table;
use crate::virtio::vsock::packet::{OP_RST, OP_RW};

/// Where a test puts an indirect descriptor table, clear of the rings and buffers.
const TABLE: u64 = 0x20_0000;

#[test]
fn short_header_chain_is_consumed_without_reply() {
    let mut h = Harness::new();
    let base = h.stage_header(&guest_hdr(OP_REQUEST, 1, 2));
    h.send_descs(&[desc(base, 20, 0)]);
    h.expect_quiet();
    assert!(!h.interrupt.needs_reset());
}

#[test]
fn payload_len_beyond_chain_gets_rst() {
    let mut h = Harness::new();
    let mut hdr = guest_hdr(OP_RW, 40000, 1234);
    hdr.len = 100;
    let base = h.stage_header(&hdr);
    h.send_descs(&[desc(base, HDR_SIZE as u32, 0)]);
    let (rst, _) = h.recv();
    assert_eq!((rst.op, rst.src_port, rst.dst_port), (OP_RST, 1234, 40000));
}

#[test]
fn payload_len_over_limit_gets_rst() {
    let mut h = Harness::new();
    let mut hdr = guest_hdr(OP_RW, 40000, 1234);
    hdr.len = u32::MAX;
    let base = h.stage_header(&hdr);
    h.send_descs(&[desc(base, HDR_SIZE as u32, 0)]);
    assert_eq!(h.recv().0.op, OP_RST);
}

#[test]
fn bad_length_on_open_stream_resets_it_and_closes_host_stream() {
    let mut h = Harness::new();
    let (mut s, host_port) = h.establish_host_initiated(52);
    let mut hdr = guest_hdr(OP_RW, 52, host_port);
    hdr.len = 4096;
    let base = h.stage_header(&hdr);
    h.send_descs(&[desc(base, HDR_SIZE as u32 + 10, 0)]);
    assert_eq!(h.recv().0.op, OP_RST);
    assert!(read_to_eof(&mut s).is_empty());
}

#[test]
fn wrong_dst_cid_gets_rst() {
    let mut h = Harness::new();
    let mut hdr = guest_hdr(OP_REQUEST, 40000, 1234);
    hdr.dst_cid = 7;
    h.send(hdr, &[]);
    let (rst, _) = h.recv();
    assert_eq!(
        (rst.op, rst.src_cid, rst.dst_cid),
        (OP_RST, HOST_CID, GUEST_CID)
    );
}

#[test]
fn wrong_src_cid_is_dropped_silently() {
    let mut h = Harness::new();
    let _l = UnixListener::bind(port_path(&h.uds_path(), 1234)).unwrap();
    let mut hdr = guest_hdr(OP_REQUEST, 40000, 1234);
    hdr.src_cid = 9;
    h.send(hdr, &[]);
    h.expect_quiet();
}

#[test]
fn non_stream_type_gets_rst() {
    let mut h = Harness::new();
    let _l = UnixListener::bind(port_path(&h.uds_path(), 1234)).unwrap();
    let mut hdr = guest_hdr(OP_REQUEST, 40000, 1234);
    hdr.type_ = 2; // SEQPACKET
    h.send(hdr, &[]);
    assert_eq!(h.recv().0.op, OP_RST);
}

#[test]
fn rw_for_unknown_stream_gets_rst() {
    let mut h = Harness::new();
    h.send(guest_hdr(OP_RW, 40000, 1234), b"nobody");
    let (rst, _) = h.recv();
    assert_eq!((rst.op, rst.src_port, rst.dst_port), (OP_RST, 1234, 40000));
}

#[test]
fn rst_for_unknown_stream_gets_no_reply() {
    let mut h = Harness::new();
    h.send(guest_hdr(OP_RST, 40000, 1234), &[]);
    h.expect_quiet();
}

#[test]
fn unknown_op_on_open_stream_resets_it() {
    let mut h = Harness::new();
    let (mut s, host_port) = h.establish_host_initiated(52);
    h.send(guest_hdr(99, 52, host_port), &[]);
    assert_eq!(h.recv().0.op, OP_RST);
    assert!(read_to_eof(&mut s).is_empty());
}

#[test]
fn data_before_response_resets_connecting_stream() {
    let mut h = Harness::new();
    let mut s = h.host_connect(52);
    let (req, _) = h.recv();
    h.send(guest_hdr(OP_RW, 52, req.src_port), b"too early");
    assert_eq!(h.recv().0.op, OP_RST);
    assert!(read_to_eof(&mut s).is_empty());
}

#[test]
fn tx_descriptor_outside_ram_sets_needs_reset() {
    let mut h = Harness::new();
    h.publish_tx(&[desc(OUTSIDE_RAM, HDR_SIZE as u32, 0)]);
    wait_until("needs_reset", || h.interrupt.needs_reset());
}

#[test]
fn tx_descriptor_of_4_gib_sets_needs_reset() {
    let mut h = Harness::new();
    let base = h.stage_header(&guest_hdr(OP_REQUEST, 1, 2));
    h.publish_tx(&[desc(base, u32::MAX, 0)]);
    wait_until("needs_reset", || h.interrupt.needs_reset());
}

#[test]
fn tx_indirect_chain_sets_needs_reset() {
    let mut h = Harness::new();
    let base = h.stage_header(&guest_hdr(OP_REQUEST, 40000, 999));
    let in_table = desc(base, HDR_SIZE as u32, 0);
    let indirect = indirect_table(&h.mem, TABLE, &[in_table]).unwrap();
    h.publish_tx(&[indirect]);
    wait_until("needs_reset", || h.interrupt.needs_reset());
    assert_eq!(h.errors.snapshot().chains_rejected, 1);
}

#[test]
fn tx_chain_longer_than_the_queue_sets_needs_reset() {
    let h = Harness::new();
    let base = h.stage_header(&guest_hdr(OP_REQUEST, 40000, 999));
    // Descriptors 0 and 1 point at each other: the chain never ends.
    let next = VRING_DESC_F_NEXT as u16;
    let looped = [
        RawDescriptor::from(SplitDescriptor::new(base, HDR_SIZE as u32, next, 1)),
        RawDescriptor::from(SplitDescriptor::new(base, HDR_SIZE as u32, next, 0)),
    ];
    h.queues[TX].add_desc_chains(&looped, 0).unwrap();
    h.kick(TX).unwrap();
    wait_until("needs_reset", || h.interrupt.needs_reset());
}

#[test]
fn rx_indirect_chain_sets_needs_reset() {
    let mut h = Harness::with_rx_buffers(0);
    let in_table = desc(0x1_0000, 4096, VRING_DESC_F_WRITE);
    let indirect = indirect_table(&h.mem, TABLE, &[in_table]).unwrap();
    h.post_rx_desc(indirect);
    // A guest request to a missing listener gives the device a RST to deliver.
    h.send(guest_hdr(OP_REQUEST, 40000, 999), &[]);
    wait_until("needs_reset", || h.interrupt.needs_reset());
}

#[test]
fn rx_descriptor_outside_ram_sets_needs_reset() {
    let mut h = Harness::with_rx_buffers(0);
    h.post_rx_desc(desc(OUTSIDE_RAM, 4096, VRING_DESC_F_WRITE));
    // A guest request to a missing listener gives the device a RST to deliver.
    h.send(guest_hdr(OP_REQUEST, 40000, 999), &[]);
    wait_until("needs_reset", || h.interrupt.needs_reset());
}

/// Publishes `idx` as the available index of queue `q`, more than a queue ahead of the
/// device, and notifies.
fn publish_avail_idx_past_the_queue(h: &mut Harness, q: usize, idx: u16) {
    assert!(idx > QSIZE);
    h.queues[q].publish(idx).unwrap();
    h.kick(q).unwrap();
}

#[test]
fn tx_avail_index_more_than_a_queue_ahead_sets_needs_reset() {
    // Regression (virtqueue fuzzing): the device logged the broken ring and left the
    // queue stuck without telling the driver.
    let mut h = Harness::new();
    publish_avail_idx_past_the_queue(&mut h, TX, 54857);
    wait_until("needs_reset", || h.interrupt.needs_reset());
    assert_eq!(h.errors.snapshot().chains_rejected, 1);
}

#[test]
fn rx_avail_index_more_than_a_queue_ahead_sets_needs_reset_once_a_packet_waits() {
    // Regression (virtqueue fuzzing), the rx side of the one above.
    let mut h = Harness::with_rx_buffers(0);
    publish_avail_idx_past_the_queue(&mut h, RX, QSIZE + 1);
    // A guest request to a missing listener gives the device a RST to deliver.
    h.send(guest_hdr(OP_REQUEST, 40000, 999), &[]);
    wait_until("needs_reset", || h.interrupt.needs_reset());
}

#[test]
fn rx_buffer_smaller_than_header_is_returned_empty() {
    let mut h = Harness::with_rx_buffers(0);
    h.post_rx_desc(desc(0x1_0000, 10, VRING_DESC_F_WRITE));
    h.post_rx();
    h.send(guest_hdr(OP_REQUEST, 40000, 999), &[]);
    assert_eq!(h.try_recv_raw(WAIT).unwrap().len(), 0);
    assert_eq!(h.recv().0.op, OP_RST);
}

#[test]
fn rx_buffer_without_write_flag_is_returned_empty() {
    let mut h = Harness::with_rx_buffers(0);
    h.post_rx_desc(desc(0x1_0000, 4096, 0));
    h.post_rx();
    h.send(guest_hdr(OP_REQUEST, 40000, 999), &[]);
    assert_eq!(h.try_recv_raw(WAIT).unwrap().len(), 0);
    assert_eq!(h.recv().0.op, OP_RST);
}

#[test]
fn device_keeps_working_after_malformed_packets() {
    let mut h = Harness::new();
    let base = h.stage_header(&guest_hdr(OP_RW, 1, 2));
    h.send_descs(&[desc(base, 3, 0)]);
    let mut bad = guest_hdr(OP_RW, 1, 2);
    bad.src_cid = 1234;
    h.send(bad, b"x");
    let (mut s, host_port) = h.establish_host_initiated(52);
    h.send(guest_hdr(OP_RW, 52, host_port), b"fine");
    let mut got = [0u8; 4];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"fine");
    s.write_all(b"ok").unwrap();
    assert_eq!(h.recv().1, b"ok");
}

#[test]
fn malformed_packets_and_short_rx_buffers_are_counted_as_rejected_chains() {
    let mut h = Harness::with_rx_buffers(0);
    let base = h.stage_header(&guest_hdr(OP_REQUEST, 1, 2));
    h.send_descs(&[desc(base, 20, 0)]);
    assert_eq!(h.errors.snapshot().chains_rejected, 1);
    h.post_rx_desc(desc(0x1_0000, 10, VRING_DESC_F_WRITE));
    h.post_rx();
    h.send(guest_hdr(OP_REQUEST, 40000, 999), &[]);
    assert_eq!(h.try_recv_raw(WAIT).unwrap().len(), 0);
    assert_eq!(h.errors.snapshot().chains_rejected, 2);
    assert_eq!(h.errors.snapshot().requests_failed, 0);
}
