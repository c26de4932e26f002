//! virtio-vsock (device ID 19) with Firecracker's host side: guest streams end on Unix
//! sockets.
//!
//! - Host-initiated: a host process connects to `uds_path` and writes `CONNECT <port>\n`;
//!   the guest gets a REQUEST from an ephemeral host port (from 2^30 up) to `<port>`; once
//!   the guest accepts, the host process reads `OK <host_port>\n` and then the stream's
//!   bytes. A guest RST, a refusal or no answer within 2 s closes the Unix stream.
//! - Guest-initiated: a guest REQUEST to CID 2 port P connects to `<uds_path>_P`.
//!
//! Credit-based flow control both ways: we never send a stream more than the guest's
//! advertised buffer, and we advertise 256 KiB per stream, which bounds what we hold for
//! a slow host reader (a guest that overruns it gets a RST).
//!
//! Files: `packet` (header, chains), `credit` (counters), `connection` (one stream's state
//! machine), `unix` (host sockets, handshake), `muxer` (routing, epoll), `worker` (thread).

mod connection;
mod credit;
mod muxer;
mod packet;
mod unix;
mod worker;

#[cfg(test)]
mod tests;

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device::{ActivateContext, ActivateError, VirtioDevice};
use muxer::Muxer;
use worker::Worker;

pub use connection::CONN_BUF_SIZE;
pub use muxer::{FIRST_HOST_PORT, MAX_CONNECTIONS};
pub use packet::HOST_CID;

/// The virtio device ID of vsock.
pub const VIRTIO_ID_VSOCK: u32 = 19;
/// Queue order fixed by the spec: rx, tx, event.
const NUM_QUEUES: usize = 3;
const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; NUM_QUEUES] = [QUEUE_SIZE; NUM_QUEUES];
/// The CIDs a guest may have: 0, 1 and 2 are the hypervisor, local and host, and
/// u32::MAX is VMADDR_CID_ANY; Linux reads only 32 bits of the CID.
pub const GUEST_CIDS: std::ops::Range<u64> = 3..u32::MAX as u64;

#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    #[error("guest CID {cid} is reserved or out of range (valid: 3..=4294967294)")]
    InvalidCid { cid: u64 },
    #[error("vsock socket path {path:?} already exists")]
    SocketExists { path: PathBuf },
    #[error("cannot listen on the vsock socket {path:?}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The running worker, stopped by writing `stop`.
#[derive(Debug)]
struct WorkerHandle {
    stop: EventFd,
    thread: JoinHandle<()>,
}

#[derive(Debug)]
pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    /// Bound at creation so host processes can connect (and wait in the backlog) before
    /// the guest's driver is up; shared with the worker while it runs.
    listener: Arc<UnixListener>,
    worker: Option<WorkerHandle>,
}

impl Vsock {
    /// Creates the device and listens on `uds_path`, which must not exist yet; the socket
    /// file is removed again when the device is dropped.
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Vsock, VsockError> {
        if !GUEST_CIDS.contains(&guest_cid) {
            return Err(VsockError::InvalidCid { cid: guest_cid });
        }
        let path = uds_path.to_path_buf();
        if path.symlink_metadata().is_ok() {
            return Err(VsockError::SocketExists { path });
        }
        let bind_err = |source| VsockError::Bind {
            path: path.clone(),
            source,
        };
        let listener = UnixListener::bind(&path).map_err(bind_err)?;
        // Non-blocking: the worker accepts until EAGAIN and must never stall in accept.
        if let Err(e) = listener.set_nonblocking(true) {
            let _ = std::fs::remove_file(&path);
            return Err(bind_err(e));
        }
        Ok(Vsock {
            guest_cid,
            uds_path: path,
            listener: Arc::new(listener),
            worker: None,
        })
    }

    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    /// Stops the worker and waits for it; all of its streams are closed.
    fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            // The thread may already have ended (broken driver); the write is then moot.
            let _ = w.stop.write(1);
            let _ = w.thread.join();
        }
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        self.stop_worker();
        let _ = std::fs::remove_file(&self.uds_path);
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
    }

    /// Config space: `le64 guest_cid`.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.guest_cid.to_le_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            let pos = offset.checked_add(i as u64);
            *byte = pos
                .and_then(|p| config.get(usize::try_from(p).ok()?))
                .copied()
                .unwrap_or(0);
        }
    }

    /// The config space is read-only for the driver.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        if ctx.queues.len() != NUM_QUEUES || ctx.queue_evts.len() != NUM_QUEUES {
            return Err(ActivateError::QueueCount {
                got: ctx.queues.len().min(ctx.queue_evts.len()),
                want: NUM_QUEUES,
            });
        }
        self.stop_worker();
        let muxer = Muxer::new(
            self.guest_cid,
            self.uds_path.clone(),
            Arc::clone(&self.listener),
        )
        .map_err(ActivateError::Worker)?;
        let stop = EventFd::new(EFD_NONBLOCK).map_err(ActivateError::Worker)?;
        let mut queues = ctx.queues.into_iter();
        let mut evts = ctx.queue_evts.into_iter();
        let worker = Worker {
            mem: ctx.mem,
            rxq: queues.next().expect("checked length"),
            txq: queues.next().expect("checked length"),
            _evq: queues.next().expect("checked length"),
            rx_evt: evts.next().expect("checked length"),
            tx_evt: evts.next().expect("checked length"),
            ev_evt: evts.next().expect("checked length"),
            stop: stop.try_clone().map_err(ActivateError::Worker)?,
            interrupt: ctx.interrupt,
            muxer,
        };
        let thread = std::thread::Builder::new()
            .name("vsock".into())
            .spawn(move || worker.run())
            .map_err(ActivateError::Worker)?;
        self.worker = Some(WorkerHandle { stop, thread });
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }
}
