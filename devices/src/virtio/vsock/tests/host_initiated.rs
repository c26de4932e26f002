//! Host process connects to the device's socket and writes `CONNECT <port>\n`.

use std::io::{Read, Write};

use super::*;
use crate::virtio::vsock::muxer::FIRST_HOST_PORT;
use crate::virtio::vsock::packet::{
    OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND,
};

#[test]
fn host_connect_sends_request_from_ephemeral_port_to_guest_port() {
    let mut h = Harness::new();
    let _s = h.host_connect(52);
    let (req, payload) = h.recv();
    assert_eq!(req.op, OP_REQUEST);
    assert_eq!((req.src_cid, req.dst_cid), (HOST_CID, GUEST_CID));
    assert_eq!(req.dst_port, 52);
    assert!(req.src_port >= FIRST_HOST_PORT, "port {}", req.src_port);
    assert_eq!(req.type_, TYPE_STREAM);
    assert!(payload.is_empty());
}

#[test]
fn guest_response_makes_host_read_ok_with_host_port() {
    let mut h = Harness::new();
    let mut s = h.host_connect(52);
    let (req, _) = h.recv();
    h.send(guest_hdr(OP_RESPONSE, 52, req.src_port), &[]);
    assert_eq!(read_line(&mut s), format!("OK {}", req.src_port));
}

#[test]
fn host_bytes_reach_guest_as_rw_on_the_stream_ports() {
    let mut h = Harness::new();
    let (mut s, host_port) = h.establish_host_initiated(52);
    s.write_all(b"ping").unwrap();
    let (pkt, payload) = h.recv();
    assert_eq!(pkt.op, OP_RW);
    assert_eq!((pkt.src_port, pkt.dst_port), (host_port, 52));
    assert_eq!(payload, b"ping");
}

#[test]
fn guest_rw_bytes_reach_host_stream() {
    let mut h = Harness::new();
    let (mut s, host_port) = h.establish_host_initiated(52);
    h.send(guest_hdr(OP_RW, 52, host_port), b"pong");
    h.send_split(guest_hdr(OP_RW, 52, host_port), b" and more");
    let mut got = [0u8; 13];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong and more");
}

#[test]
fn bytes_sent_right_after_connect_line_are_not_lost() {
    let mut h = Harness::new();
    let mut s = std::os::unix::net::UnixStream::connect(h.uds_path()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"CONNECT 52\nearly bytes").unwrap();
    let (req, _) = h.recv();
    h.send(guest_hdr(OP_RESPONSE, 52, req.src_port), &[]);
    assert_eq!(read_line(&mut s), format!("OK {}", req.src_port));
    let (pkt, payload) = h.recv();
    assert_eq!((pkt.op, payload.as_slice()), (OP_RW, &b"early bytes"[..]));
}

#[test]
fn guest_rst_to_request_closes_host_stream() {
    let mut h = Harness::new();
    let mut s = h.host_connect(52);
    let (req, _) = h.recv();
    h.send(guest_hdr(OP_RST, 52, req.src_port), &[]);
    assert!(read_to_eof(&mut s).is_empty());
    h.expect_quiet();
}

#[test]
fn unanswered_request_times_out_with_rst_and_closed_stream() {
    let mut h = Harness::new();
    let mut s = h.host_connect(52);
    let (req, _) = h.recv();
    assert_eq!(req.op, OP_REQUEST);
    // CONNECT_TIMEOUT is 2 s; WAIT (5 s) covers it.
    let (rst, _) = h.recv();
    assert_eq!(
        (rst.op, rst.src_port, rst.dst_port),
        (OP_RST, req.src_port, 52)
    );
    assert!(read_to_eof(&mut s).is_empty());
}

#[test]
fn malformed_connect_line_closes_host_stream_without_guest_traffic() {
    let mut h = Harness::new();
    let mut s = std::os::unix::net::UnixStream::connect(h.uds_path()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"HELLO 52\n").unwrap();
    assert!(read_to_eof(&mut s).is_empty());
    h.expect_quiet();
}

#[test]
fn host_close_sends_shutdown_to_guest() {
    let mut h = Harness::new();
    let (s, host_port) = h.establish_host_initiated(52);
    drop(s);
    let (pkt, _) = h.recv();
    assert_eq!(
        (pkt.op, pkt.src_port, pkt.dst_port),
        (OP_SHUTDOWN, host_port, 52)
    );
    assert_eq!(pkt.flags, SHUTDOWN_RCV | SHUTDOWN_SEND);
    // The guest's RST completes the close; nothing more is sent.
    h.send(guest_hdr(OP_RST, 52, host_port), &[]);
    h.expect_quiet();
}

#[test]
fn guest_full_shutdown_is_answered_with_rst_and_closes_host_stream() {
    let mut h = Harness::new();
    let (mut s, host_port) = h.establish_host_initiated(52);
    h.send(guest_hdr(OP_RW, 52, host_port), b"last words");
    let mut shut = guest_hdr(OP_SHUTDOWN, 52, host_port);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    h.send(shut, &[]);
    let (pkt, _) = h.recv();
    assert_eq!((pkt.op, pkt.dst_port), (OP_RST, 52));
    assert_eq!(read_to_eof(&mut s), b"last words");
}

#[test]
fn many_host_streams_are_routed_by_port_pair() {
    let mut h = Harness::new();
    let mut streams: Vec<_> = (0..4)
        .map(|i| h.establish_host_initiated(100 + i))
        .collect();
    // Guest to host: each stream gets only its own bytes.
    for (i, (_, host_port)) in streams.iter().enumerate() {
        let msg = format!("to stream {i}");
        h.send(guest_hdr(OP_RW, 100 + i as u32, *host_port), msg.as_bytes());
    }
    for (i, (s, _)) in streams.iter_mut().enumerate() {
        let want = format!("to stream {i}");
        let mut got = vec![0u8; want.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, want.as_bytes());
    }
    // Host to guest: each packet carries its stream's ports.
    for (i, (s, _)) in streams.iter_mut().enumerate() {
        s.write_all(format!("from {i}").as_bytes()).unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (pkt, payload) = h.recv();
        assert_eq!(pkt.op, OP_RW);
        let i = (pkt.dst_port - 100) as usize;
        assert_eq!(pkt.src_port, streams[i].1);
        assert_eq!(payload, format!("from {i}").as_bytes());
        seen.push(i);
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2, 3]);
}

#[test]
fn two_host_streams_to_same_guest_port_get_distinct_host_ports() {
    let mut h = Harness::new();
    let (_a, port_a) = h.establish_host_initiated(52);
    let (_b, port_b) = h.establish_host_initiated(52);
    assert_ne!(port_a, port_b);
}
