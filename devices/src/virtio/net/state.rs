//! A virtio-net device in a snapshot: its MAC, which the guest read from the config space
//! (a restore into a device with another one is refused), and the frame the worker had
//! read from the backend for a guest rx buffer that was not there yet, which the restored
//! device delivers first. The backend (the tap) is the VMM's, reopened by name; frames it
//! holds are not the guest's and stay with it. The queues' positions are the transport's.
//! The rate limiters, kept outside the state, start a restored VM full (as a fresh VM's
//! do), and a VM that goes on after a save keeps its own.

use serde::{Deserialize, Serialize};

use super::handler::MAX_FRAME_LEN;
use super::Net;
use crate::virtio::state::{DeviceState, SavedDevice, StateError};
use crate::virtio::tap::VNET_HDR_LEN;

const DEVICE: &str = "net";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub mac: Option<[u8; 6]>,
    /// A received frame, vnet header first, waiting for a guest rx buffer.
    pub held_rx_frame: Option<Vec<u8>>,
}

impl Net {
    /// Stops the worker and takes its queues and held frame back (see
    /// `VirtioDevice::save`).
    pub(super) fn save_state(&mut self) -> Result<SavedDevice, StateError> {
        let (queues, frame) = match self.worker.take() {
            Some(worker) => {
                let handler = worker
                    .stop_and_take()
                    .ok_or(StateError::WorkerLost { device: DEVICE })?;
                let (queues, frame) = handler.into_saved();
                (queues.map(Some).into(), frame)
            }
            // Not running: a frame restored for the next activation is still owed.
            None => (Vec::new(), self.held_frame.clone()),
        };
        let state = NetState {
            mac: self.mac,
            held_rx_frame: frame,
        };
        Ok(SavedDevice {
            state: DeviceState::Net(state),
            queues,
        })
    }

    pub(super) fn restore_state(&mut self, state: DeviceState) -> Result<(), StateError> {
        let DeviceState::Net(saved) = state else {
            return Err(StateError::wrong_device(DEVICE, &state));
        };
        if saved.mac != self.mac {
            return Err(StateError::mismatch(
                DEVICE,
                "MAC address",
                mac_string(saved.mac),
                mac_string(self.mac),
            ));
        }
        if let Some(frame) = &saved.held_rx_frame {
            if !(VNET_HDR_LEN..=MAX_FRAME_LEN).contains(&frame.len()) {
                return Err(StateError::Invalid {
                    device: DEVICE,
                    problem: format!(
                        "a held frame of {} bytes, outside {VNET_HDR_LEN}..={MAX_FRAME_LEN}",
                        frame.len()
                    ),
                });
            }
        }
        self.held_frame = saved.held_rx_frame;
        Ok(())
    }
}

fn mac_string(mac: Option<[u8; 6]>) -> String {
    match mac {
        Some(m) => m
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        None => "none (the guest chose one)".to_string(),
    }
}
