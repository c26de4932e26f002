//! An in-process benchmark of the virtio-net data path: a real [`Net`] worker, guest memory
//! in this process, this thread playing the guest driver (rings written by hand, waiting
//! on the irq eventfd as a guest waits for its interrupt) and a `SOCK_SEQPACKET`
//! socketpair standing in for the tap. It measures what the VMM side costs per frame:
//! ring handling, copies and the backend syscalls.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::Net;
use crate::virtio::tap::VNET_HDR_LEN;
use crate::virtio::{ActivateContext, Interrupt, VirtioDevice};

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
    let mut rig = Rig::new()?;
    let peer = rig.peer.take().expect("peer");
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
        rig.mem
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
            let slot = rig.tx.next_avail % QUEUE_SIZE;
            rig.tx
                .push(&rig.mem, slot, buf_addr(slot), hdr_and_frame, 0)?;
        }
        rig.tx_evt.write(1)?;
        rig.tx.wait_used(&rig.mem, &rig.irq, batch)?;
        sent += u64::from(batch);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_between(cpu_start, worker_cpu());
    let dropped = rig.net.counters().tx_dropped.load(Ordering::Relaxed);
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
    let mut rig = Rig::new()?;
    let peer = rig.peer.take().expect("peer");
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
        rig.rx.push(
            &rig.mem,
            slot,
            buf_addr(slot),
            2048,
            VRING_DESC_F_WRITE as u16,
        )?;
    }
    rig.rx_evt.write(1)?;
    let mut received = 0u64;
    while received < want {
        let used = rig.rx.wait_any_used(&rig.mem, &rig.irq)?;
        for slot in used {
            rig.rx.push(
                &rig.mem,
                slot,
                buf_addr(slot),
                2048,
                VRING_DESC_F_WRITE as u16,
            )?;
            received += 1;
        }
        rig.rx_evt.write(1)?;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_between(cpu_start, worker_cpu());
    feed.join()
        .map_err(|_| io::Error::other("feeder panicked"))??;
    Ok(PathResult {
        frames: received,
        elapsed,
        dropped: rig.net.counters().rx_dropped.load(Ordering::Relaxed),
        worker_cpu: cpu,
    })
}

/// A running device and the driver's view of its two queues.
struct Rig {
    mem: GuestMemoryMmap,
    rx: DriverRing,
    tx: DriverRing,
    rx_evt: EventFd,
    tx_evt: EventFd,
    /// The irq eventfd, blocking: the "guest" sleeps on it.
    irq: EventFd,
    peer: Option<OwnedFd>,
    net: Net,
}

impl Rig {
    fn new() -> io::Result<Rig> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
            .map_err(io::Error::other)?;
        let (ours, peer) = seqpacket_pair()?;
        let mut net = Net::with_backend(Arc::new(ours), None);
        let rx_evt = EventFd::new(EFD_NONBLOCK)?;
        let tx_evt = EventFd::new(EFD_NONBLOCK)?;
        let irq = EventFd::new(0)?;
        let (rx, rx_queue) = DriverRing::new(RX_RING)?;
        let (tx, tx_queue) = DriverRing::new(TX_RING)?;
        net.activate(ActivateContext {
            mem: mem.clone(),
            queues: vec![rx_queue, tx_queue],
            queue_evts: vec![rx_evt.try_clone()?, tx_evt.try_clone()?],
            interrupt: Arc::new(Interrupt::new(irq.try_clone()?)),
            acked_features: net.avail_features(),
        })
        .map_err(io::Error::other)?;
        Ok(Rig {
            mem,
            rx,
            tx,
            rx_evt,
            tx_evt,
            irq,
            peer: Some(peer),
            net,
        })
    }
}

/// The driver side of a split queue: one descriptor per chain, descriptor index = slot.
struct DriverRing {
    desc: u64,
    avail: u64,
    used: u64,
    next_avail: u16,
    last_used: u16,
}

impl DriverRing {
    fn new(base: u64) -> io::Result<(DriverRing, Queue)> {
        let size = u64::from(QUEUE_SIZE);
        let ring = DriverRing {
            desc: base,
            avail: base + 16 * size,
            // Used ring: 4-byte aligned after the avail ring (flags, idx, ring, used_event).
            used: (base + 16 * size + 6 + 2 * size + 3) & !3,
            next_avail: 0,
            last_used: 0,
        };
        let mut queue = Queue::new(QUEUE_SIZE).map_err(io::Error::other)?;
        queue.set_size(QUEUE_SIZE);
        let halves = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
        let (lo, hi) = halves(ring.desc);
        queue.set_desc_table_address(lo, hi);
        let (lo, hi) = halves(ring.avail);
        queue.set_avail_ring_address(lo, hi);
        let (lo, hi) = halves(ring.used);
        queue.set_used_ring_address(lo, hi);
        queue.set_ready(true);
        Ok((ring, queue))
    }

    fn push(
        &mut self,
        mem: &GuestMemoryMmap,
        slot: u16,
        addr: u64,
        len: u32,
        flags: u16,
    ) -> io::Result<()> {
        let mut desc = [0u8; 16];
        desc[..8].copy_from_slice(&addr.to_le_bytes());
        desc[8..12].copy_from_slice(&len.to_le_bytes());
        desc[12..14].copy_from_slice(&flags.to_le_bytes());
        let err = io::Error::other;
        mem.write_slice(&desc, GuestAddress(self.desc + 16 * u64::from(slot)))
            .map_err(err)?;
        let entry = self.avail + 4 + 2 * u64::from(self.next_avail % QUEUE_SIZE);
        mem.write_obj(slot.to_le(), GuestAddress(entry))
            .map_err(err)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        // The device must see the entry before the index that publishes it.
        fence(Ordering::Release);
        mem.write_obj(self.next_avail.to_le(), GuestAddress(self.avail + 2))
            .map_err(err)
    }

    fn used_idx(&self, mem: &GuestMemoryMmap) -> io::Result<u16> {
        let idx: u16 = mem
            .read_obj(GuestAddress(self.used + 2))
            .map_err(io::Error::other)?;
        fence(Ordering::Acquire);
        Ok(u16::from_le(idx))
    }

    fn wait_used(&mut self, mem: &GuestMemoryMmap, irq: &EventFd, n: u16) -> io::Result<()> {
        let target = self.last_used.wrapping_add(n);
        while self.used_idx(mem)? != target {
            irq.read()?;
        }
        self.last_used = target;
        Ok(())
    }

    /// Blocks until the device used at least one chain; returns their slots.
    fn wait_any_used(&mut self, mem: &GuestMemoryMmap, irq: &EventFd) -> io::Result<Vec<u16>> {
        let mut idx = self.used_idx(mem)?;
        while idx == self.last_used {
            irq.read()?;
            idx = self.used_idx(mem)?;
        }
        let mut slots = Vec::new();
        while self.last_used != idx {
            let elem = self.used + 4 + 8 * u64::from(self.last_used % QUEUE_SIZE);
            let id: u32 = mem.read_obj(GuestAddress(elem)).map_err(io::Error::other)?;
            slots.push(u32::from_le(id) as u16);
            self.last_used = self.last_used.wrapping_add(1);
        }
        Ok(slots)
    }
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
