//! virtio-net's two queues, over a datagram socketpair standing in for the tap.
//!
//! tx, besides what every device promises: every frame reaching the backend has a zeroed
//! vnet header and a length the device allows, one per frame counted; every chain is
//! accounted for as sent, dropped or malformed; nothing is written back (used length 0).
//!
//! rx: frames (some too short, some too long) wait on the backend before the device
//! starts; it answers until they are all delivered or dropped, or it runs out of buffers.
//! Every used length is 0 (a malformed chain, counted) or a frame's.

use std::cell::RefCell;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;

use fuzzkit::fail;

use super::{Case, Coverage, CASES};
use crate::virtio::fuzz::ring::{ring, QueueModel, Ring};
use crate::virtio::net::{Net, NetCounters};
use crate::virtio::tap::VNET_HDR_LEN;

/// `net::handler::MAX_FRAME_LEN` (private there): the longest frame, header included.
const MAX_FRAME_LEN: usize = 65_562;
const RX: usize = 0;
const TX: usize = 1;

fn backend() -> Result<(Net, UnixDatagram, Arc<NetCounters>), TestCaseError> {
    let (ours, peer) = UnixDatagram::pair().map_err(fail)?;
    ours.set_nonblocking(true).map_err(fail)?;
    peer.set_nonblocking(true).map_err(fail)?;
    let net = Net::with_backend(Arc::new(ours), Some([6, 0, 0xac, 0x10, 0, 2]));
    let counters = net.counters();
    Ok((net, peer, counters))
}

/// Takes every frame waiting on the peer.
fn drain(peer: &UnixDatagram, into: &RefCell<Vec<Vec<u8>>>) {
    let mut buf = vec![0u8; MAX_FRAME_LEN + 1024];
    while let Ok(n) = peer.recv(&mut buf) {
        into.borrow_mut().push(buf[..n].to_vec());
    }
}

fn tx_model() -> QueueModel {
    let len = prop_oneof![
        3 => 0..200u32,
        1 => prop::sample::select(vec![VNET_HDR_LEN as u32, MAX_FRAME_LEN as u32, MAX_FRAME_LEN as u32 + 1]),
    ];
    let shapes = prop_oneof![
        (len.clone()).prop_map(|n| vec![(VNET_HDR_LEN as u32 + n, false)]),
        (len).prop_map(|n| vec![(VNET_HDR_LEN as u32, false), (n, false)]),
    ];
    QueueModel {
        shapes: shapes.boxed(),
        header: vec(any::<u8>(), 0..32).boxed(),
    }
}

#[test]
fn net_tx_sends_only_bounded_frames_with_zeroed_headers_from_hostile_rings() {
    let coverage = Coverage::default();
    fuzzkit::check(file!(), CASES, ring(&tx_model()), |tx| {
        let (net, peer, counters) = backend()?;
        let rx = Ring::empty(tx.size);
        let case = Case::start(net, vec![rx, tx], &[true, false])?;
        let frames = RefCell::new(Vec::new());
        // The peer reads as the device sends, so a full socket never holds chains back.
        case.settle(|c| {
            drain(&peer, &frames);
            c.answered(TX)
        })?;
        let f = case.finish(false)?;
        coverage.record(&f);
        drain(&peer, &frames);
        let frames = frames.into_inner();
        for frame in &frames {
            prop_assert!(
                (VNET_HDR_LEN..=MAX_FRAME_LEN).contains(&frame.len()),
                "a frame of {} bytes",
                frame.len()
            );
            prop_assert!(
                frame[..VNET_HDR_LEN].iter().all(|&b| b == 0),
                "guest's vnet header passed on"
            );
        }
        let sent = counters.tx_frames.load(Ordering::Relaxed);
        prop_assert_eq!(frames.len() as u64, sent);
        prop_assert!(f.used[TX].iter().all(|&(_, len)| len == 0), "tx wrote back");
        if f.exact && !f.needs_reset {
            let accounted = sent
                + counters.tx_dropped.load(Ordering::Relaxed)
                + counters.malformed_chains.load(Ordering::Relaxed);
            prop_assert_eq!(
                accounted,
                f.used[TX].len() as u64,
                "tx chains vs sent + dropped + malformed"
            );
        }
        Ok(())
    });
    coverage.assert_reached();
}

fn rx_model() -> QueueModel {
    let len = prop_oneof![3 => 0..2000u32, 1 => Just(MAX_FRAME_LEN as u32)];
    let shapes = prop_oneof![
        len.clone().prop_map(|n| vec![(n, true)]),
        len.prop_map(|n| vec![(VNET_HDR_LEN as u32, true), (n, true)]),
    ];
    QueueModel {
        shapes: shapes.boxed(),
        header: vec(any::<u8>(), 0..16).boxed(),
    }
}

/// Frame lengths on the backend: short of a header, ordinary, and past the longest. Not
/// 0: a zero-length read is how the device learns that a socket backend's peer is gone
/// (a tap never gives one), after which it stops receiving.
fn frame_lens() -> impl Strategy<Value = Vec<usize>> {
    let len = prop_oneof![
        1 => 1..VNET_HDR_LEN,
        6 => VNET_HDR_LEN..1600,
        1 => MAX_FRAME_LEN - 2..MAX_FRAME_LEN + 64,
    ];
    vec(len, 0..6)
}

#[test]
fn net_rx_delivers_or_drops_every_frame_into_hostile_rings() {
    let coverage = Coverage::default();
    fuzzkit::check(
        file!(),
        CASES,
        (ring(&rx_model()), frame_lens()),
        |(rx, lens)| {
            let (net, peer, counters) = backend()?;
            let mut sent = Vec::new();
            for (i, &len) in lens.iter().enumerate() {
                let frame: Vec<u8> = (0..len)
                    .map(|b| (b as u8).wrapping_mul(7) ^ i as u8)
                    .collect();
                match peer.send(&frame) {
                    Ok(_) => sent.push(len),
                    // A full socket: the frame was never offered.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(fail(e)),
                }
            }
            let tx = Ring::empty(rx.size);
            let case = Case::start(net, vec![rx, tx], &[true, false])?;
            let settled = |c: &Case<Net>| {
                let done = counters.rx_frames.load(Ordering::Relaxed)
                    + counters.rx_dropped.load(Ordering::Relaxed);
                done == sent.len() as u64 || c.answered(RX)
            };
            case.settle(settled)?;
            let f = case.finish(false)?;
            coverage.record(&f);
            let delivered = counters.rx_frames.load(Ordering::Relaxed);
            let dropped = counters.rx_dropped.load(Ordering::Relaxed);
            prop_assert!(delivered + dropped <= sent.len() as u64);
            if f.exact {
                // A datagram longer than the device reads arrives cut to what it reads.
                let lens: Vec<u32> = sent.iter().map(|&l| l.min(MAX_FRAME_LEN) as u32).collect();
                for &(_, len) in &f.used[RX] {
                    prop_assert!(
                        len == 0 || lens.contains(&len),
                        "answered {} bytes; frames {:?}",
                        len,
                        lens
                    );
                }
                let full = f.used[RX].iter().filter(|&&(_, len)| len > 0).count() as u64;
                prop_assert_eq!(full, delivered);
                if !f.needs_reset {
                    let empty = f.used[RX].len() as u64 - full;
                    prop_assert_eq!(empty, counters.malformed_chains.load(Ordering::Relaxed));
                    prop_assert_eq!(empty, f.errors.chains_rejected);
                }
            }
            Ok(())
        },
    );
    coverage.assert_reached();
}
