//! A rate-limited disk: requests beyond the buckets wait in the ring, the limiter's timer
//! resumes the queue, and nothing is lost or reordered.

use std::time::{Duration, Instant};

use super::*;
use crate::testing::Waited;
use crate::virtio::{QueueLimiter, RateLimiterConfig, TokenBucketConfig};

/// Where a second set of rings goes, after a reset.
const RING2: u64 = 0x8000;

fn bucket(size: u64, refill_time_ms: u64) -> Option<TokenBucketConfig> {
    Some(TokenBucketConfig {
        size,
        one_time_burst: 0,
        refill_time_ms,
    })
}

/// A live disk whose queue is limited by `config`, and its rings.
fn limited(config: RateLimiterConfig) -> (Env, DriverQueue) {
    let image = TempFile::new().unwrap();
    let bytes: Vec<u8> = (0..DISK_SECTORS * SECTOR_SIZE).map(pattern).collect();
    image.as_file().write_all(&bytes).unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
    let limiter = QueueLimiter::from_config(Some(config)).unwrap();
    let block = Block::new(image.as_path(), false, None)
        .unwrap()
        .with_rate_limiter(limiter);
    let mut d = MmioDriver::new(&mem, Box::new(block)).unwrap();
    let vq = ring(&mem);
    d.bring_up(&[&vq]).unwrap();
    (Env { d, image }, vq)
}

/// Makes `n` reads available, read `i` of `len` bytes from sector `i` into its own buffer
/// at `DATA + i * 0x1000`, with its own header and status byte.
fn queue_reads(e: &Env, vq: &DriverQueue, n: u16, len: u32) {
    let mem = &e.d.mem;
    let mut descs = Vec::new();
    for i in 0..n {
        let (hdr, data, status) = read_addrs(i);
        mem.write_obj(VIRTIO_BLK_T_IN.to_le(), GuestAddress(hdr))
            .unwrap();
        mem.write_obj(0u32, GuestAddress(hdr + 4)).unwrap();
        mem.write_obj(u64::from(i).to_le(), GuestAddress(hdr + 8))
            .unwrap();
        mem.write_obj(0xffu8, GuestAddress(status)).unwrap();
        descs.extend(chain(
            3 * i,
            &[(hdr, 16, R), (data, len, W), (status, 1, W)],
        ));
    }
    vq.add_desc_chains(&descs, 0).unwrap();
}

fn read_addrs(i: u16) -> (u64, u64, u64) {
    let i = u64::from(i);
    (HDR + 0x20 * i, DATA + 0x1000 * i, STATUS + i)
}

/// Checks that read `i` completed with the bytes of sector `i`.
fn assert_read(e: &Env, i: u16, len: usize) {
    let (_, data, status) = read_addrs(i);
    let status: u8 = e.d.mem.read_obj(GuestAddress(status)).unwrap();
    assert_eq!(status, VIRTIO_BLK_S_OK as u8, "read {i}");
    let mut got = vec![0u8; len];
    e.d.mem.read_slice(&mut got, GuestAddress(data)).unwrap();
    let start = u64::from(i) * SECTOR_SIZE;
    let want: Vec<u8> = (start..start + len as u64).map(pattern).collect();
    assert_eq!(got, want, "read {i}");
}

fn throttled(e: &Env) -> u64 {
    e.d.transport.errors().throttled_count()
}

#[test]
fn ops_limit_holds_requests_in_the_ring_until_the_timer_resumes_the_queue() {
    // One request per 100 ms, one in the bucket.
    let (mut e, vq) = limited(RateLimiterConfig {
        bandwidth: None,
        ops: bucket(1, 100),
    });
    queue_reads(&e, &vq, 3, 512);
    let start = Instant::now();
    e.d.notify(0);
    e.d.wait_used(&vq, 1, Some(WAIT)).unwrap();

    // The other two wait: no token comes back before 100 ms (checked only if this runs
    // before then, so a slow host cannot fail it).
    std::thread::sleep(Duration::from_millis(30));
    let used = vq.used_idx().unwrap();
    if start.elapsed() < Duration::from_millis(100) {
        assert_eq!(used, 1, "a throttled request was served");
    }
    assert!(throttled(&e) >= 1);

    // The timer resumes the queue without another notify.
    assert_eq!(e.d.wait_used(&vq, 3, Some(WAIT)).unwrap(), Waited::Used);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(190), "3 requests in {took:?}");
    for i in 0..3 {
        assert_eq!(vq.used_elem(i).unwrap(), (3 * u32::from(i), 513));
        assert_read(&e, i, 512);
    }
    assert!(!e.errors().any(), "{:?}", e.errors());
}

#[test]
fn bandwidth_limit_spaces_reads_by_their_size() {
    // 2 KiB per 100 ms: four 1 KiB reads are two at once, then one each 50 ms.
    let (mut e, vq) = limited(RateLimiterConfig {
        bandwidth: bucket(2048, 100),
        ops: None,
    });
    queue_reads(&e, &vq, 4, 1024);
    let start = Instant::now();
    e.d.notify(0);
    assert_eq!(e.d.wait_used(&vq, 4, Some(WAIT)).unwrap(), Waited::Used);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(95), "4 KiB in {took:?}");
    for i in 0..4 {
        assert_read(&e, i, 1024);
    }
    assert!(throttled(&e) >= 1);
}

#[test]
fn a_read_larger_than_the_bucket_still_completes() {
    // A 4 KiB read against a 1 KiB bucket goes when the bucket is full, as Firecracker's
    // does; the next request pays for it.
    let (mut e, vq) = limited(RateLimiterConfig {
        bandwidth: bucket(1024, 50),
        ops: None,
    });
    queue_reads(&e, &vq, 2, 4096);
    let start = Instant::now();
    e.d.notify(0);
    assert_eq!(e.d.wait_used(&vq, 2, Some(WAIT)).unwrap(), Waited::Used);
    // The first left the bucket 3 KiB in debt; the second waits for the debt and a full
    // bucket again: 4 KiB at 1 KiB per 50 ms.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(190),
        "two 4 KiB reads in {took:?}"
    );
    assert_read(&e, 0, 4096);
    assert_read(&e, 1, 4096);
}

#[test]
fn a_reset_does_not_refill_the_buckets() {
    // One request, then none for 10 s: a guest must not get another by resetting the device.
    let (mut e, vq) = limited(RateLimiterConfig {
        bandwidth: None,
        ops: bucket(1, 10_000),
    });
    queue_reads(&e, &vq, 1, 512);
    e.d.notify(0);
    e.d.wait_used(&vq, 1, Some(WAIT)).unwrap();

    e.d.write(REG_STATUS, 0);
    let vq2 = DriverQueue::new(&e.d.mem, RING2, QSIZE).unwrap();
    e.d.bring_up(&[&vq2]).unwrap();
    queue_reads(&e, &vq2, 1, 512);
    e.d.notify(0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        vq2.used_idx().unwrap(),
        0,
        "the reset gave the guest a fresh bucket"
    );
    assert!(throttled(&e) >= 1);
}
