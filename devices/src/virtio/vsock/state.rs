//! A vsock device in a snapshot. Streams cannot be saved: their host ends are Unix
//! sockets of host processes, which a restored VM (another process, maybe much later)
//! does not have. So, as Firecracker does, saving resets them all: the host ends are
//! closed, and the guest is sent TRANSPORT_RESET on the event queue before the queues'
//! positions are taken, so the event is in the snapshot (the driver then drops every
//! connection and reads the CID again; listening sockets stay). The connection table
//! saved here gives the restored device one RST per stream as well, for a driver that
//! had no event buffer posted (the event is then owed, and sent when one comes); a driver
//! that already dropped the stream ignores it. The host listener is the VMM's, bound
//! again at the configured path.

use serde::{Deserialize, Serialize};

use super::handler::VsockHandler;
use super::muxer::{ConnKey, FIRST_HOST_PORT, LAST_HOST_PORT, MAX_CONNECTIONS};
use super::Vsock;
use crate::virtio::state::{DeviceState, SavedDevice, StateError};

const DEVICE: &str = "vsock";

/// One stream open when the device was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockConnection {
    pub host_port: u32,
    pub guest_port: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockState {
    pub guest_cid: u64,
    /// The streams open at the save, all reset by it.
    pub connections: Vec<VsockConnection>,
    /// Where host-initiated streams' local ports go on from.
    pub next_host_port: u32,
    /// The guest had no event buffer for TRANSPORT_RESET: send it when one comes.
    pub transport_reset_owed: bool,
}

impl Vsock {
    /// Stops the worker, resets every stream (see the module docs) and takes the queues
    /// back (see `VirtioDevice::save`).
    pub(super) fn save_state(&mut self) -> Result<SavedDevice, StateError> {
        let mut state = VsockState {
            guest_cid: self.guest_cid,
            connections: Vec::new(),
            next_host_port: FIRST_HOST_PORT,
            transport_reset_owed: false,
        };
        let queues = match self.worker.take() {
            Some(worker) => {
                let handler = worker
                    .stop_and_take()
                    .ok_or(StateError::WorkerLost { device: DEVICE })?;
                // Dropping the muxer in here closes the streams' host ends.
                let saved = handler.into_saved();
                state.connections = saved
                    .connections
                    .iter()
                    .map(|k| VsockConnection {
                        host_port: k.local_port,
                        guest_port: k.peer_port,
                    })
                    .collect();
                state.next_host_port = saved.next_host_port;
                state.transport_reset_owed = saved.reset_owed;
                saved.queues.map(Some).into()
            }
            None => {
                // Not running: what a restore left for the next activation is still owed.
                if let Some(saved) = &self.saved {
                    state = saved.clone();
                }
                Vec::new()
            }
        };
        Ok(SavedDevice {
            state: DeviceState::Vsock(state),
            queues,
        })
    }

    pub(super) fn restore_state(&mut self, state: DeviceState) -> Result<(), StateError> {
        let DeviceState::Vsock(saved) = state else {
            return Err(StateError::wrong_device(DEVICE, &state));
        };
        // The guest read its CID from the config space; it reads it again only after a
        // TRANSPORT_RESET, which it may not have had yet.
        if saved.guest_cid != self.guest_cid {
            return Err(StateError::mismatch(
                DEVICE,
                "guest CID",
                saved.guest_cid,
                self.guest_cid,
            ));
        }
        if saved.connections.len() > MAX_CONNECTIONS {
            return Err(invalid(format!(
                "{} connections, more than the {MAX_CONNECTIONS} a device holds",
                saved.connections.len()
            )));
        }
        if !(FIRST_HOST_PORT..=LAST_HOST_PORT).contains(&saved.next_host_port) {
            return Err(invalid(format!(
                "next host port {} outside {FIRST_HOST_PORT}..={LAST_HOST_PORT}",
                saved.next_host_port
            )));
        }
        self.saved = Some(saved);
        Ok(())
    }
}

fn invalid(problem: String) -> StateError {
    StateError::Invalid {
        device: DEVICE,
        problem,
    }
}

/// Gives a new handler what the saved one left: a RST owed for every stream, the next
/// host port, and TRANSPORT_RESET if it could not be sent, or else rx held until the
/// driver has acted on the one sent.
pub(super) fn resume_from(handler: &mut VsockHandler, saved: &VsockState) {
    let reset: Vec<ConnKey> = saved
        .connections
        .iter()
        .map(|c| ConnKey {
            local_port: c.host_port,
            peer_port: c.guest_port,
        })
        .collect();
    handler.muxer_mut().restore(saved.next_host_port, &reset);
    if saved.transport_reset_owed {
        handler.owe_transport_reset();
    } else {
        // Sent at the save: in the guest's event queue, not acted on yet.
        handler.await_reset_ack();
    }
}
