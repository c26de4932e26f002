//! A virtio-rng device in a snapshot: it has no state of its own (no config space, and
//! nothing held between requests), only its queue's position, which is the transport's.
//! The rate limiter, kept outside the state, starts a restored VM full (as a fresh VM's
//! does), and a VM that goes on after a save keeps its own.

use serde::{Deserialize, Serialize};

use super::Rng;
use crate::virtio::state::{DeviceState, SavedDevice, StateError};

const DEVICE: &str = "rng";

/// Empty, so that a state still names its device type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {}

impl Rng {
    /// Stops the worker and takes its queue back (see `VirtioDevice::save`).
    pub(super) fn save_state(&mut self) -> Result<SavedDevice, StateError> {
        let queues = match self.worker.take() {
            Some(worker) => {
                let handler = worker
                    .stop_and_take()
                    .ok_or(StateError::WorkerLost { device: DEVICE })?;
                vec![Some(handler.queue)]
            }
            None => Vec::new(),
        };
        Ok(SavedDevice {
            state: DeviceState::Rng(RngState {}),
            queues,
        })
    }

    pub(super) fn restore_state(&mut self, state: DeviceState) -> Result<(), StateError> {
        match state {
            DeviceState::Rng(RngState {}) => Ok(()),
            other => Err(StateError::wrong_device(DEVICE, &other)),
        }
    }
}
