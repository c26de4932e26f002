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
//! machine), `unix` (host sockets, handshake), `muxer` (routing, epoll), `handler` (the
//! queues, on the device's worker thread), `state` (snapshots: every stream is reset).

mod connection;
mod credit;
mod handler;
mod muxer;
mod packet;
mod reset_ack;
mod state;
mod unix;

#[cfg(test)]
mod tests;

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config;
use super::device::{ActivateContext, ActivateError, VirtioDevice};
use super::state::{DeviceState, SavedDevice, StateError};
use super::worker::Worker;
use handler::VsockHandler;
use muxer::Muxer;

pub use connection::CONN_BUF_SIZE;
pub use muxer::{FIRST_HOST_PORT, MAX_CONNECTIONS};
pub use packet::HOST_CID;
pub use state::{VsockConnection, VsockState};

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

#[derive(Debug)]
pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    /// Bound at creation so host processes can connect (and wait in the backlog) before
    /// the guest's driver is up; shared with the worker while it runs.
    listener: Arc<UnixListener>,
    /// Dropping it stops and joins the thread, which closes all of its streams.
    worker: Option<Worker<VsockHandler>>,
    /// A saved state the next activation starts from (the streams to reset, the next
    /// host port, a TRANSPORT_RESET still owed).
    saved: Option<VsockState>,
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
            saved: None,
        })
    }

    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        // Stop the worker (closing its streams) before the socket file goes.
        self.worker = None;
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

    /// Config space: `le64 guest_cid`.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        config::read(&self.guest_cid.to_le_bytes(), offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        // Stopped first: the new muxer takes over the listener.
        self.worker = None;
        let muxer = Muxer::new(
            self.guest_cid,
            self.uds_path.clone(),
            Arc::clone(&self.listener),
        )
        .map_err(ActivateError::Worker)?;
        let mut handler = VsockHandler::new(ctx, muxer)?;
        if let Some(saved) = self.saved.take() {
            state::resume_from(&mut handler, &saved);
        }
        let fds = handler.fds();
        let worker = Worker::start("vmm-vsock", &fds, handler).map_err(ActivateError::Worker)?;
        self.worker = Some(worker);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
        self.saved = None;
    }

    fn save(&mut self) -> Result<SavedDevice, StateError> {
        self.save_state()
    }

    fn restore(&mut self, state: DeviceState) -> Result<(), StateError> {
        self.restore_state(state)
    }
}
