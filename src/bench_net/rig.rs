//! The rig of `vmm bench net`: a real [`Net`] worker, guest memory in this process, this
//! thread playing the guest driver through the devices' test driver (`devices::testing`:
//! rings in guest memory, sleeping on the irq eventfd as a guest waits for its interrupt)
//! and a `SOCK_SEQPACKET` socketpair standing in for the tap. It measures what the VMM
//! side costs per frame: ring handling, copies and the backend syscalls.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devices::testing::{DeviceHarness, DriverError, DriverQueue, Waited};
use devices::virtio::tap::VNET_HDR_LEN;
use devices::virtio::Net;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Ethernet frame without FCS at a 1500-byte MTU.
pub const BENCH_FRAME_LEN: usize = 1514;
const QUEUE_SIZE: u16 = 256;
/// tx chains per kick: what a guest sends between interrupts under load, and few enough
/// that the socket's send buffer holds them while the drain thread catches up.
const TX_BATCH: u64 = 32;
const RX_RING: u64 = 0;
const TX_RING: u64 = 0x1_0000;
const BUFS: u64 = 0x10_0000;
const BUF_STRIDE: u64 = 0x1000;
const MEM_SIZE: usize = 0x40_0000;
/// virtio-net queue indices (§5.1.2).
const RX: usize = 0;
const TX: usize = 1;
/// The buffer is device-writable (virtio 1.x §2.7.5).
const VRING_DESC_F_WRITE: u16 = 2;

/// One direction's result.
#[derive(Debug, Clone, Copy)]
pub struct PathResult {
    pub frames: u64,
    pub elapsed: Duration,
    /// Frames the device dropped.
    pub dropped: u64,
    /// CPU time the device's worker thread used (None when it cannot be told apart,
    /// e.g. other net devices run in the same process).
    pub worker_cpu: Option<Duration>,
}

impl PathResult {
    pub fn frames_per_sec(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64()
    }

    /// Wall time per frame.
    pub fn micros_per_frame(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.frames.max(1) as f64
    }

    /// The worker's CPU time per frame: the VMM's own cost, without the time it waits
    /// for the driver or the backend.
    pub fn worker_micros_per_frame(&self) -> Option<f64> {
        self.worker_cpu
            .map(|cpu| cpu.as_secs_f64() * 1e6 / self.frames.max(1) as f64)
    }
}

/// guest → backend: `frames` frames of [`BENCH_FRAME_LEN`] bytes through the tx queue.
pub fn bench_tx(frames: u32) -> io::Result<PathResult> {
    let (mut rig, peer) = Rig::new()?;
    let want = u64::from(frames);
    // The host side drains concurrently, as the host stack behind a tap would.
    let drain = std::thread::spawn(move || -> io::Result<u64> {
        let mut buf = vec![0u8; 65536];
        let mut got = 0;
        while got < want {
            recv_blocking(&peer, &mut buf)?;
            got += 1;
        }
        Ok(got)
    });
    let hdr_and_frame = (VNET_HDR_LEN + BENCH_FRAME_LEN) as u32;
    for i in 0..QUEUE_SIZE {
        rig.h
            .mem
            .write_slice(&frame(i as u8), GuestAddress(buf_addr(i)))
            .map_err(io::Error::other)?;
    }
    let cpu_start = worker_cpu_at_start();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < want {
        // Fill what the device has returned, kick, wait for the interrupt.
        let batch = (want - sent).min(TX_BATCH) as u16;
        for _ in 0..batch {
            let slot = rig.tx_next % QUEUE_SIZE;
            rig.h.queues[TX]
                .push(slot, buf_addr(slot), hdr_and_frame, 0)
                .map_err(io_err)?;
            rig.tx_next = rig.tx_next.wrapping_add(1);
        }
        rig.h.kick(TX).map_err(io_err)?;
        rig.wait_used(TX, rig.tx_next)?;
        sent += u64::from(batch);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_between(cpu_start, worker_cpu());
    let dropped = rig.h.dev.counters().tx_dropped.load(Ordering::Relaxed);
    // Closing our end ends the drain thread even if frames it waits for were dropped.
    drop(rig);
    let drained = drain
        .join()
        .map_err(|_| io::Error::other("drain panicked"))?;
    if dropped == 0 {
        drained?;
    }
    Ok(PathResult {
        frames: want - dropped,
        elapsed,
        dropped,
        worker_cpu: cpu,
    })
}

/// backend → guest: `frames` frames of [`BENCH_FRAME_LEN`] bytes into rx buffers that this
/// thread keeps refilling.
pub fn bench_rx(frames: u32) -> io::Result<PathResult> {
    let (mut rig, peer) = Rig::new()?;
    let want = u64::from(frames);
    let feed = std::thread::spawn(move || -> io::Result<()> {
        let mut packet = vec![0u8; VNET_HDR_LEN];
        packet.extend(frame(7));
        for _ in 0..want {
            send_blocking(&peer, &packet)?;
        }
        Ok(())
    });
    let cpu_start = worker_cpu_at_start();
    let start = Instant::now();
    for slot in 0..QUEUE_SIZE {
        rig.post_rx(slot)?;
    }
    rig.h.kick(RX).map_err(io_err)?;
    let mut received = 0u64;
    while received < want {
        for slot in rig.wait_any_rx()? {
            rig.post_rx(slot)?;
            received += 1;
        }
        rig.h.kick(RX).map_err(io_err)?;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_between(cpu_start, worker_cpu());
    feed.join()
        .map_err(|_| io::Error::other("feeder panicked"))??;
    Ok(PathResult {
        frames: received,
        elapsed,
        dropped: rig.h.dev.counters().rx_dropped.load(Ordering::Relaxed),
        worker_cpu: cpu,
    })
}

/// A running device and where the driver is in its two queues: one descriptor per
/// chain, descriptor index = slot.
struct Rig {
    h: DeviceHarness<Net>,
    /// The free-running index of the next tx chain.
    tx_next: u16,
    /// How far the driver has read the rx used ring.
    rx_seen: u16,
}

impl Rig {
    /// The rig and the backend's peer end (blocking), which the caller feeds or drains.
    fn new() -> io::Result<(Rig, OwnedFd)> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
            .map_err(io::Error::other)?;
        let (ours, peer) = seqpacket_pair()?;
        let queues = [RX_RING, TX_RING]
            .into_iter()
            .map(|base| DriverQueue::new(&mem, base, QUEUE_SIZE))
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        let net = Net::with_backend(Arc::new(ours), None);
        let h = DeviceHarness::activate(net, &mem, queues).map_err(io_err)?;
        let rig = Rig {
            h,
            tx_next: 0,
            rx_seen: 0,
        };
        Ok((rig, peer))
    }

    fn post_rx(&self, slot: u16) -> io::Result<()> {
        self.h.queues[RX]
            .push(slot, buf_addr(slot), 2048, VRING_DESC_F_WRITE)
            .map_err(io_err)
    }

    /// Sleeps on the interrupt until queue `q` has used chains up to `target`.
    fn wait_used(&self, q: usize, target: u16) -> io::Result<()> {
        match self.h.wait_used(q, target, None).map_err(io_err)? {
            Waited::Used => Ok(()),
            Waited::NeedsReset => Err(io::Error::other("the device set DEVICE_NEEDS_RESET")),
        }
    }

    /// Blocks until the device used at least one rx chain; returns their slots.
    fn wait_any_rx(&mut self) -> io::Result<Vec<u16>> {
        self.wait_used(RX, self.rx_seen.wrapping_add(1))?;
        let rx = &self.h.queues[RX];
        let idx = rx.used_idx().map_err(io_err)?;
        let mut slots = Vec::new();
        while self.rx_seen != idx {
            let (id, _) = rx.used_elem(self.rx_seen).map_err(io_err)?;
            // Ids are descriptor indices, below the queue size.
            slots.push(id as u16);
            self.rx_seen = self.rx_seen.wrapping_add(1);
        }
        Ok(slots)
    }
}

fn io_err(e: DriverError) -> io::Error {
    io::Error::other(edge::error_chain(&e))
}

/// CPU time of this process's one `vmm-virtio-net` thread, from its schedstat (ns on CPU).
fn worker_cpu() -> Option<Duration> {
    let mut found = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != "vmm-virtio-net" {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        found = Some(Duration::from_nanos(stat.split(' ').next()?.parse().ok()?));
    }
    found
}

/// The worker's CPU time once it has named itself (std names a thread from inside it, so
/// right after `activate` it may not be findable yet).
fn worker_cpu_at_start() -> Option<Duration> {
    for _ in 0..1000 {
        if let Some(cpu) = worker_cpu() {
            return Some(cpu);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

fn cpu_between(start: Option<Duration>, end: Option<Duration>) -> Option<Duration> {
    end?.checked_sub(start?)
}

fn buf_addr(slot: u16) -> u64 {
    BUFS + BUF_STRIDE * u64::from(slot)
}

fn frame(seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend((0..BENCH_FRAME_LEN).map(|i| (i as u8) ^ seed));
    f
}

/// Our end non-blocking (as a tap is), the peer's blocking.
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded, so both fds are open and nobody else owns them.
    let (ours, peer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETFL with a flag value touches no memory.
    let ret = unsafe { libc::fcntl(ours.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ours, peer))
}

fn recv_blocking(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    match n {
        n if n > 0 => Ok(n as usize),
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn send_blocking(fd: &OwnedFd, buf: &[u8]) -> io::Result<()> {
    // SAFETY: `buf` is valid for reads of its length.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_moves_frames_both_ways() {
        let tx = bench_tx(1000).unwrap();
        assert_eq!(tx.frames + tx.dropped, 1000);
        let rx = bench_rx(1000).unwrap();
        assert_eq!((rx.frames, rx.dropped), (1000, 0));
    }
}
