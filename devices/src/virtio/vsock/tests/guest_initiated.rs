//! Guest connects to host CID 2 port P, which reaches the listener at `<uds_path>_P`.

use std::io::{Read, Write};
use std::net::Shutdown;

use super::*;
use crate::virtio::vsock::packet::{OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_SEND};

#[test]
fn guest_request_connects_to_port_listener_and_gets_response() {
    let mut h = Harness::new();
    let listener = UnixListener::bind(port_path(&h.uds_path(), 1234)).unwrap();
    h.send(guest_hdr(OP_REQUEST, 40000, 1234), &[]);
    let (resp, _) = h.recv();
    assert_eq!(resp.op, OP_RESPONSE);
    assert_eq!((resp.src_cid, resp.dst_cid), (HOST_CID, GUEST_CID));
    assert_eq!((resp.src_port, resp.dst_port), (1234, 40000));
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_ok(),
        "the device connected to the listener"
    );
}

#[test]
fn guest_initiated_data_flows_both_ways() {
    let mut h = Harness::new();
    let (_l, mut s) = h.establish_guest_initiated(40000, 1234);
    h.send(guest_hdr(OP_RW, 40000, 1234), b"hello host");
    let mut got = [0u8; 10];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello host");
    s.write_all(b"hello guest").unwrap();
    let (pkt, payload) = h.recv();
    assert_eq!((pkt.op, pkt.src_port, pkt.dst_port), (OP_RW, 1234, 40000));
    assert_eq!(payload, b"hello guest");
}

#[test]
fn guest_request_without_listener_gets_rst() {
    let mut h = Harness::new();
    h.send(guest_hdr(OP_REQUEST, 40000, 999), &[]);
    let (rst, _) = h.recv();
    assert_eq!(rst.op, OP_RST);
    assert_eq!((rst.src_cid, rst.dst_cid), (HOST_CID, GUEST_CID));
    assert_eq!((rst.src_port, rst.dst_port), (999, 40000));
}

#[test]
fn guest_shutdown_send_half_closes_host_stream() {
    let mut h = Harness::new();
    let (_l, mut s) = h.establish_guest_initiated(40000, 1234);
    h.send(guest_hdr(OP_RW, 40000, 1234), b"request");
    let mut shut = guest_hdr(OP_SHUTDOWN, 40000, 1234);
    shut.flags = SHUTDOWN_SEND;
    h.send(shut, &[]);
    assert_eq!(read_to_eof(&mut s), b"request");
    // The other direction still works.
    s.write_all(b"reply").unwrap();
    let (pkt, payload) = h.recv();
    assert_eq!((pkt.op, payload.as_slice()), (OP_RW, &b"reply"[..]));
}

#[test]
fn host_peer_closing_guest_initiated_stream_sends_shutdown() {
    let mut h = Harness::new();
    let (_l, s) = h.establish_guest_initiated(40000, 1234);
    s.shutdown(Shutdown::Both).unwrap();
    let (pkt, _) = h.recv();
    assert_eq!((pkt.op, pkt.dst_port), (OP_SHUTDOWN, 40000));
}

#[test]
fn guest_rst_closes_guest_initiated_stream() {
    let mut h = Harness::new();
    let (_l, mut s) = h.establish_guest_initiated(40000, 1234);
    h.send(guest_hdr(OP_RST, 40000, 1234), &[]);
    assert!(read_to_eof(&mut s).is_empty());
    h.expect_quiet();
}
