//! A disk saved with requests in flight and restored into a new transport and device over
//! the same guest memory and image: every request is done once, and the disk ends as if
//! nothing had happened in between.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::test_util::through_json;
use crate::testing::Waited;
use crate::virtio::{
    QueueLimiter, RateLimiterConfig, StateError, TokenBucketConfig, TransportState,
};

/// 16 requests of 3 descriptors each fit a 64-entry ring.
const RING_SIZE: u16 = 64;
const REQUESTS: u16 = 16;

/// A live disk (limited by `limiter`) whose queue is a 64-entry ring at 0.
fn live(limiter: QueueLimiter) -> (Env, DriverQueue) {
    let e = env();
    let block = Block::new(e.image.as_path(), false, None)
        .unwrap()
        .with_rate_limiter(limiter);
    let mut d = MmioDriver::new(&e.d.mem, Box::new(block)).unwrap();
    let vq = DriverQueue::new(&d.mem, 0, RING_SIZE).unwrap();
    d.bring_up(&[&vq]).unwrap();
    (Env { d, image: e.image }, vq)
}

/// Makes writes `requests` available: write `i` fills sector `i` with the byte `i + 1`,
/// from its own buffer, with its own header and status byte (descriptors `3i..3i+3`).
fn queue_writes(mem: &GuestMemoryMmap, vq: &DriverQueue, requests: std::ops::Range<u16>) {
    let first = 3 * requests.start;
    let mut descs = Vec::new();
    for i in requests {
        let n = u64::from(i);
        let (hdr, data, status) = (HDR + 0x20 * n, DATA + 0x1000 * n, STATUS + n);
        mem.write_obj(VIRTIO_BLK_T_OUT.to_le(), GuestAddress(hdr))
            .unwrap();
        mem.write_obj(0u32, GuestAddress(hdr + 4)).unwrap();
        mem.write_obj(n.to_le(), GuestAddress(hdr + 8)).unwrap();
        mem.write_slice(&[i as u8 + 1; 512], GuestAddress(data))
            .unwrap();
        mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
        descs.extend(chain(
            3 * i,
            &[(hdr, 16, R), (data, 512, R), (status, 1, W)],
        ));
    }
    vq.add_desc_chains(&descs, first).unwrap();
}

/// Restores `state` into a new disk on the same image and resumes it.
fn restore(e: Env, state: TransportState) -> Env {
    let mem = e.d.mem.clone();
    drop(e.d);
    let block = Block::new(e.image.as_path(), false, None).unwrap();
    let mut d = MmioDriver::restore(&mem, Box::new(block), through_json(&state)).unwrap();
    d.transport.resume().unwrap();
    Env { d, image: e.image }
}

/// Every write was used exactly once, answered OK, and is on the disk; nothing more is
/// used afterwards.
fn assert_all_writes_done_once(e: &Env, vq: &DriverQueue) {
    let waited = e.d.wait_used(vq, REQUESTS, Some(WAIT)).unwrap();
    assert_eq!(waited, Waited::Used);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(vq.used_idx().unwrap(), REQUESTS, "a request ran twice");
    let mut uses = BTreeMap::new();
    for n in 0..REQUESTS {
        let (head, len) = vq.used_elem(n).unwrap();
        assert_eq!(len, 1, "request at head {head}");
        *uses.entry(head).or_insert(0) += 1;
    }
    let heads: Vec<u32> = (0..u32::from(REQUESTS)).map(|i| 3 * i).collect();
    assert_eq!(uses.keys().copied().collect::<Vec<_>>(), heads);
    assert!(uses.values().all(|&n| n == 1), "{uses:?}");
    for i in 0..u64::from(REQUESTS) {
        let status: u8 = e.d.mem.read_obj(GuestAddress(STATUS + i)).unwrap();
        assert_eq!(status, VIRTIO_BLK_S_OK as u8, "request {i}");
    }
    let mut disk = vec![0u8; (REQUESTS as usize + 1) * 512];
    let mut file = e.image.as_file();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_exact(&mut disk).unwrap();
    for (i, sector) in disk.chunks(512).enumerate() {
        let want: Vec<u8> = if i < REQUESTS as usize {
            vec![i as u8 + 1; 512]
        } else {
            (i as u64 * 512..(i as u64 + 1) * 512)
                .map(pattern)
                .collect()
        };
        assert_eq!(sector, &want[..], "sector {i}");
    }
}

#[test]
fn blk_writes_in_flight_at_the_save_are_each_done_once_after_restore() {
    let (mut e, vq) = live(QueueLimiter::default());
    // Half done, half made available by a guest paused before it could notify.
    queue_writes(&e.d.mem, &vq, 0..REQUESTS / 2);
    e.d.notify(0);
    // The worker interrupts once it found no more requests: the rest come after that.
    assert!(crate::testing::wait_until(WAIT, || e.d.irq_raised()));
    assert_eq!(vq.used_idx().unwrap(), REQUESTS / 2);
    queue_writes(&e.d.mem, &vq, REQUESTS / 2..REQUESTS);
    let state = e.d.transport.save().unwrap();
    let q = &state.queues[0];
    assert_eq!((q.next_avail, q.next_used), (REQUESTS / 2, REQUESTS / 2));
    let e = restore(e, state);
    assert_all_writes_done_once(&e, &vq);
}

#[test]
fn blk_writes_notified_just_before_the_save_are_each_done_once() {
    let (mut e, vq) = live(QueueLimiter::default());
    queue_writes(&e.d.mem, &vq, 0..REQUESTS);
    e.d.notify(0);
    // The save races the worker: it stops it between two batches, whichever it reached.
    let state = e.d.transport.save().unwrap();
    let q = &state.queues[0];
    assert_eq!(q.next_used, vq.used_idx().unwrap());
    assert_eq!(q.next_avail, q.next_used, "a request was left half done");
    let e = restore(e, state);
    assert_all_writes_done_once(&e, &vq);
}

#[test]
fn blk_writes_the_rate_limiter_held_back_at_save_run_after_restore() {
    // 8 requests a minute: half the writes wait in the ring when the save comes.
    let ops = TokenBucketConfig {
        size: 8,
        one_time_burst: 0,
        refill_time_ms: 60_000,
    };
    let config = RateLimiterConfig {
        bandwidth: None,
        ops: Some(ops),
    };
    let (mut e, vq) = live(QueueLimiter::from_config(Some(config)).unwrap());
    queue_writes(&e.d.mem, &vq, 0..REQUESTS);
    e.d.notify(0);
    assert_eq!(e.d.wait_used(&vq, 8, Some(WAIT)).unwrap(), Waited::Used);
    let state = e.d.transport.save().unwrap();
    assert_eq!(
        (state.queues[0].next_avail, state.queues[0].next_used),
        (8, 8)
    );
    // The restored disk has no limiter here, as a VMM restoring without one.
    let e = restore(e, state);
    assert_all_writes_done_once(&e, &vq);
}

#[test]
fn blk_goes_on_after_save_and_resume_and_reads_what_was_written_before() {
    let (mut e, vq) = live(QueueLimiter::default());
    queue_writes(&e.d.mem, &vq, 0..REQUESTS);
    e.d.notify(0);
    assert_eq!(
        e.d.wait_used(&vq, REQUESTS, Some(WAIT)).unwrap(),
        Waited::Used
    );
    e.d.transport.save().unwrap();
    e.d.transport.resume().unwrap();
    // A read of sector 5 after the save, in descriptors past the writes'.
    let (hdr, data, status) = (HDR + 0x800, DATA + 0x8_0000, STATUS + 0x100);
    e.d.mem
        .write_obj(VIRTIO_BLK_T_IN.to_le(), GuestAddress(hdr))
        .unwrap();
    e.d.mem
        .write_obj(5u64.to_le(), GuestAddress(hdr + 8))
        .unwrap();
    let first = 3 * REQUESTS;
    let read = chain(first, &[(hdr, 16, R), (data, 512, W), (status, 1, W)]);
    vq.add_desc_chains(&read, first).unwrap();
    e.d.notify(0);
    let waited = e.d.wait_used(&vq, REQUESTS + 1, Some(WAIT)).unwrap();
    assert_eq!(waited, Waited::Used);
    let mut got = [0u8; 512];
    e.d.mem.read_slice(&mut got, GuestAddress(data)).unwrap();
    assert_eq!(got, [6u8; 512]);
}

#[test]
fn blk_restore_refuses_a_disk_of_another_size_or_read_only_flag() {
    let (mut e, _vq) = live(QueueLimiter::default());
    let state = e.d.transport.save().unwrap();
    let mem = e.d.mem.clone();
    drop(e.d);
    let refusal = |block: Block| match MmioDriver::restore(&mem, Box::new(block), state.clone()) {
        Err(crate::testing::DriverError::State(e)) => e,
        _ => panic!("the restore took another disk"),
    };
    let ro = Block::new(e.image.as_path(), true, None).unwrap();
    let err = refusal(ro);
    assert!(
        matches!(
            err,
            StateError::Mismatch {
                what: "read-only flag",
                ..
            }
        ),
        "{err:?}"
    );
    e.image
        .as_file()
        .set_len(DISK_SECTORS * SECTOR_SIZE * 2)
        .unwrap();
    let bigger = Block::new(e.image.as_path(), false, None).unwrap();
    let err = refusal(bigger);
    assert!(
        matches!(
            err,
            StateError::Mismatch {
                what: "capacity in sectors",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("64"), "{err}");
}
