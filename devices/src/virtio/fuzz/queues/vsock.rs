//! virtio-vsock's tx and rx queues, with a host listener on one port so guest requests
//! can open streams.
//!
//! tx, besides what every device promises: nothing is written back (used length 0), and
//! the answers in the (well-formed) rx ring are header-only packets (no host process
//! sends data here).
//!
//! rx: first a few tx packets that each earn a RST, then a hostile rx ring: the device
//! answers until the RSTs are delivered or the ring is used up. Every used length is 0 (a
//! buffer too short for a header, counted) or a bare header's.

use std::os::unix::net::UnixListener;
use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use vmm_sys_util::tempdir::TempDir;

use fuzzkit::fail;

use super::{edge_u32, Case, Coverage, CASES};
use crate::virtio::fuzz::ring::{ring, Desc, QueueModel, Ring, NEXT, REGION_B, WRITE};
use crate::virtio::vsock::{Vsock, HOST_CID};

const GUEST_CID: u64 = 3;
/// The port a host process listens on (`<uds>_LISTENING`).
const LISTENING: u32 = 1234;
/// Size of `struct virtio_vsock_hdr`; `vsock::packet::HDR_SIZE` (private there).
const HDR: u32 = 44;
const MAX_PAYLOAD: u32 = 64 * 1024;
const RX: usize = 0;
const TX: usize = 1;
const OP_RW: u16 = 5;

/// The header fields in wire order: src_cid, dst_cid, src_port, dst_port, len, type, op,
/// flags, buf_alloc, fwd_cnt.
type Fields = (u64, u64, u32, u32, u32, u16, u16, u32, u32, u32);

fn header_bytes(f: Fields) -> Vec<u8> {
    let mut b = Vec::with_capacity(HDR as usize);
    b.extend(f.0.to_le_bytes());
    b.extend(f.1.to_le_bytes());
    b.extend(f.2.to_le_bytes());
    b.extend(f.3.to_le_bytes());
    b.extend(f.4.to_le_bytes());
    b.extend(f.5.to_le_bytes());
    b.extend(f.6.to_le_bytes());
    b.extend(f.7.to_le_bytes());
    b.extend(f.8.to_le_bytes());
    b.extend(f.9.to_le_bytes());
    b
}

/// A guest packet header: mostly from the guest to the host, to the listening port or a
/// few others, any op; the rest anything.
fn header() -> impl Strategy<Value = Vec<u8>> {
    let cid = |likely: u64| prop_oneof![4 => Just(likely), 1 => any::<u64>()];
    let port = prop_oneof![2 => Just(LISTENING), 2 => 1000..1004u32, 1 => any::<u32>()];
    let len = prop_oneof![
        3 => edge_u32(),
        1 => select(vec![MAX_PAYLOAD, MAX_PAYLOAD + 1]),
    ];
    let fields = (
        (cid(GUEST_CID), cid(HOST_CID), 1000..1004u32, port, len),
        (
            prop_oneof![4 => Just(1u16), 1 => any::<u16>()],
            0..=8u16,
            0..4u32,
            edge_u32(),
            edge_u32(),
        ),
    );
    fields.prop_map(|((sc, dc, sp, dp, len), (ty, op, flags, ba, fc))| {
        header_bytes((sc, dc, sp, dp, len, ty, op, flags, ba, fc))
    })
}

fn tx_model() -> QueueModel {
    let payload = prop_oneof![3 => 0..128u32, 1 => Just(MAX_PAYLOAD + 1)];
    let shapes = prop_oneof![
        payload.clone().prop_map(|n| vec![(HDR, false), (n, false)]),
        payload.prop_map(|n| vec![(HDR + n, false)]),
        Just(vec![(20, false), (24, false)]),
    ];
    QueueModel {
        shapes: shapes.boxed(),
        header: header().boxed(),
    }
}

/// A device on a fresh socket, and a host process's listener on [`LISTENING`].
fn device(dir: &Path) -> Result<(Vsock, UnixListener), TestCaseError> {
    let uds = dir.join("v.sock");
    let vsock = Vsock::new(GUEST_CID, &uds).map_err(fail)?;
    let mut port = uds.into_os_string();
    port.push(format!("_{LISTENING}"));
    let listener = UnixListener::bind(port).map_err(fail)?;
    Ok((vsock, listener))
}

/// `count` one-descriptor chains of `len` bytes from `base`, each `len` apart.
fn simple_ring(size: u16, count: u16, base: u64, len: u32, flags: u16) -> Ring {
    let mut ring = Ring::empty(size);
    for i in 0..count.min(size) {
        ring.table[usize::from(i)] = Desc {
            addr: base + u64::from(i) * u64::from(len),
            len,
            flags: flags & !NEXT,
            next: 0,
        };
        ring.heads.push(i);
    }
    ring.avail_idx = ring.heads.len() as u16;
    ring
}

#[test]
fn vsock_tx_takes_hostile_rings_and_answers_with_headers_only() {
    let coverage = Coverage::default();
    fuzzkit::check(file!(), CASES, ring(&tx_model()), |tx| {
        let dir = TempDir::new().map_err(fail)?;
        let (vsock, _listener) = device(dir.as_path())?;
        let rx = simple_ring(16, 16, REGION_B.end - 16 * 0x100, 0x100, WRITE);
        let ev = Ring::empty(4);
        let case = Case::start(vsock, vec![rx, tx, ev], &[true, false, false])?;
        case.settle(|c| c.answered(TX))?;
        let f = case.finish(false)?;
        coverage.record(&f);
        prop_assert!(f.used[TX].iter().all(|&(_, len)| len == 0), "tx wrote back");
        if f.exact {
            for &(_, len) in &f.used[RX] {
                prop_assert_eq!(len, HDR, "an rx answer that is not a bare header");
            }
        }
        Ok(())
    });
    coverage.assert_reached();
}

fn rx_model() -> QueueModel {
    let len = prop_oneof![3 => 0..64u32, 1 => Just(HDR), 1 => 64..5000u32];
    let shapes = prop_oneof![
        len.clone().prop_map(|n| vec![(n, true)]),
        (len.clone(), len).prop_map(|(a, b)| vec![(a, true), (b, true)]),
    ];
    QueueModel {
        shapes: shapes.boxed(),
        header: vec(any::<u8>(), 0..8).boxed(),
    }
}

/// `count` tx packets that each earn a RST: data for a stream that does not exist.
fn rst_bait(count: u16) -> Ring {
    let mut ring = simple_ring(16, count, REGION_B.start, HDR, 0);
    for i in 0..count {
        let at = REGION_B.start + u64::from(i) * u64::from(HDR);
        let src_port = 2000 + u32::from(i);
        let fields = (GUEST_CID, HOST_CID, src_port, 5, 0, 1, OP_RW, 0, 0, 0);
        ring.fills.push((at, header_bytes(fields)));
    }
    ring
}

#[test]
fn vsock_rx_answers_hostile_rings_with_whole_headers_or_nothing() {
    let coverage = Coverage::default();
    let input = (ring(&rx_model()), 0..=8u16);
    fuzzkit::check(file!(), CASES, input, |(rx, rsts)| {
        let dir = TempDir::new().map_err(fail)?;
        let (vsock, _listener) = device(dir.as_path())?;
        // Phase 1: the RSTs are owed, with no rx buffer to carry them.
        let rings = vec![Ring::empty(rx.size), rst_bait(rsts), Ring::empty(4)];
        let mut case = Case::start(vsock, rings, &[true, false, false])?;
        case.settle(|c| c.answered(TX))?;
        // Phase 2: the hostile rx ring.
        case.post(RX, rx)?;
        let headers = |c: &Case<Vsock>| {
            (0..c.used_idx(RX))
                .filter(|&n| c.used_elem(RX, n).1 == HDR)
                .count()
        };
        case.settle(|c| c.answered(RX) || headers(c) == usize::from(rsts))?;
        let f = case.finish(false)?;
        coverage.record(&f);
        if f.exact {
            let full = f.used[RX].iter().filter(|&&(_, len)| len == HDR).count();
            prop_assert!(
                full <= usize::from(rsts),
                "{} headers for {} RSTs",
                full,
                rsts
            );
            for &(_, len) in &f.used[RX] {
                prop_assert!(len == 0 || len == HDR, "answered {} bytes", len);
            }
            if !f.needs_reset {
                let empty = (f.used[RX].len() - full) as u64;
                prop_assert_eq!(empty, f.errors.chains_rejected);
            }
        }
        Ok(())
    });
    coverage.assert_reached();
}
