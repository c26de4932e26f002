//! Credit-based flow control in both directions.

use std::io::{Read, Write};
use std::num::Wrapping;

use super::*;
use crate::virtio::vsock::connection::CONN_BUF_SIZE;
use crate::virtio::vsock::packet::{
    OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND,
};

/// Collects what the device sends until it goes quiet: (RW bytes, other packets).
fn drain(h: &mut Harness) -> (Vec<u8>, Vec<Header>) {
    let mut data = Vec::new();
    let mut other = Vec::new();
    while let Some((hdr, payload)) = h.try_recv(QUIET) {
        if hdr.op == OP_RW {
            data.extend_from_slice(&payload);
        } else {
            other.push(hdr);
        }
    }
    (data, other)
}

#[test]
fn host_data_to_guest_never_exceeds_guest_buf_alloc() {
    let mut h = Harness::new();
    let mut s = h.host_connect(52);
    let (req, _) = h.recv();
    let mut resp = guest_hdr(OP_RESPONSE, 52, req.src_port);
    resp.buf_alloc = 6000;
    h.send(resp, &[]);
    assert_eq!(read_line(&mut s), format!("OK {}", req.src_port));
    let data = pattern(20_000, 1);
    s.write_all(&data).unwrap();

    let (got, other) = drain(&mut h);
    assert_eq!(got, &data[..6000], "exactly the guest's buffer");
    assert!(other.iter().any(|p| p.op == OP_CREDIT_REQUEST), "{other:?}");

    // The guest consumed everything: another buffer's worth follows.
    let mut update = guest_hdr(OP_CREDIT_UPDATE, 52, req.src_port);
    update.buf_alloc = 6000;
    update.fwd_cnt = 6000;
    h.send(update, &[]);
    let (got, _) = drain(&mut h);
    assert_eq!(got, &data[6000..12000]);
}

#[test]
fn credit_request_is_answered_with_our_buffer_and_fwd_cnt() {
    let mut h = Harness::new();
    let (mut s, host_port) = h.establish_host_initiated(52);
    h.send(guest_hdr(OP_RW, 52, host_port), b"12345");
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    h.send(guest_hdr(OP_CREDIT_REQUEST, 52, host_port), &[]);
    let (pkt, _) = h.recv();
    assert_eq!(pkt.op, OP_CREDIT_UPDATE);
    assert_eq!((pkt.buf_alloc, pkt.fwd_cnt), (CONN_BUF_SIZE, 5));
}

#[test]
fn response_advertises_per_stream_buffer() {
    let mut h = Harness::new();
    let _l = UnixListener::bind(port_path(&h.uds_path(), 1234)).unwrap();
    h.send(guest_hdr(OP_REQUEST, 40000, 1234), &[]);
    let (resp, _) = h.recv();
    assert_eq!(
        (resp.op, resp.buf_alloc, resp.fwd_cnt),
        (OP_RESPONSE, CONN_BUF_SIZE, 0)
    );
}

#[test]
fn device_sends_credit_update_as_it_forwards_guest_data() {
    let mut h = Harness::new();
    let (_l, mut s) = h.establish_guest_initiated(40000, 1234);
    let reader = std::thread::spawn(move || read_to_eof(&mut s));
    let data = pattern(200 * 1024, 2);
    for chunk in data.chunks(50 * 1024) {
        h.send(guest_hdr(OP_RW, 40000, 1234), chunk);
    }
    let (_, other) = drain(&mut h);
    let update = other
        .iter()
        .filter(|p| p.op == OP_CREDIT_UPDATE)
        .max_by_key(|p| p.fwd_cnt)
        .expect("a credit update");
    assert_eq!(update.buf_alloc, CONN_BUF_SIZE);
    assert!(
        update.fwd_cnt >= CONN_BUF_SIZE / 2,
        "fwd_cnt {}",
        update.fwd_cnt
    );
    assert!(update.fwd_cnt as usize <= data.len());

    let mut shut = guest_hdr(OP_SHUTDOWN, 40000, 1234);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    h.send(shut, &[]);
    assert_eq!(h.recv().0.op, OP_RST);
    assert_eq!(reader.join().unwrap(), data);
}

#[test]
fn guest_respecting_credit_streams_through_a_slow_host_reader() {
    let mut h = Harness::new();
    let (_l, mut s) = h.establish_guest_initiated(40000, 1234);
    let total = 1024 * 1024;
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while all.len() < total {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "early EOF");
            all.extend_from_slice(&buf[..n]);
            std::thread::sleep(Duration::from_micros(200));
        }
        all
    });
    let data = pattern(total, 3);
    // What the device last told us: its buffer and how much of ours it forwarded.
    let (mut buf_alloc, mut fwd_cnt) = (CONN_BUF_SIZE, Wrapping(0u32));
    let mut sent = Wrapping(0u32);
    for chunk in data.chunks(32 * 1024) {
        while (sent - fwd_cnt).0 as usize + chunk.len() > buf_alloc as usize {
            let (pkt, _) = h.recv();
            assert_ne!(
                pkt.op, OP_RST,
                "the device reset a stream that respected credit"
            );
            (buf_alloc, fwd_cnt) = (pkt.buf_alloc, Wrapping(pkt.fwd_cnt));
        }
        h.send_split(guest_hdr(OP_RW, 40000, 1234), chunk);
        sent += Wrapping(chunk.len() as u32);
    }
    assert_eq!(reader.join().unwrap(), data);
}

#[test]
fn guest_overrunning_advertised_buffer_gets_rst() {
    let mut h = Harness::new();
    // The host never reads: the socket fills, then the device's buffer.
    let (_l, mut s) = h.establish_guest_initiated(40000, 1234);
    let chunk = pattern(60 * 1024, 4);
    let mut rst = false;
    for _ in 0..64 {
        h.send(guest_hdr(OP_RW, 40000, 1234), &chunk);
        while let Some((pkt, _)) = h.try_recv(Duration::from_millis(1)) {
            rst |= pkt.op == OP_RST;
        }
        if rst {
            break;
        }
    }
    assert!(rst, "no RST after 3.75 MiB against a 256 KiB buffer");
    // The stream is closed: what the socket held is followed by EOF.
    read_to_eof(&mut s);
}
