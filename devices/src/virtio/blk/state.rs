//! A virtio-blk device in a snapshot. The disk's contents are not in it: the VMM reopens
//! the image by path, and the state only makes sure it is the disk the guest knew, whose
//! capacity it read from the config space and whose read-only flag from the features.
//! The request queue's position is the transport's; the rate limiter, kept outside the
//! state, starts a restored VM full (as a fresh VM's does), and a VM that goes on after a
//! save keeps its own.

use serde::{Deserialize, Serialize};

use super::Block;
use crate::virtio::state::{DeviceState, SavedDevice, StateError};

const DEVICE: &str = "blk";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    /// Size in 512-byte sectors.
    pub capacity: u64,
    pub read_only: bool,
}

impl Block {
    /// Stops the worker and takes its queue back (see `VirtioDevice::save`).
    pub(super) fn save_state(&mut self) -> Result<SavedDevice, StateError> {
        let queues = match self.worker.take() {
            Some(worker) => {
                let handler = worker
                    .stop_and_take()
                    .ok_or(StateError::WorkerLost { device: DEVICE })?;
                vec![Some(handler.into_queue())]
            }
            None => Vec::new(),
        };
        let state = BlockState {
            capacity: self.capacity(),
            read_only: self.read_only(),
        };
        Ok(SavedDevice {
            state: DeviceState::Block(state),
            queues,
        })
    }

    /// Accepts a state of this disk; the worker holds nothing between requests, so there
    /// is nothing to hand the next activation.
    pub(super) fn restore_state(&mut self, state: DeviceState) -> Result<(), StateError> {
        let DeviceState::Block(saved) = state else {
            return Err(StateError::wrong_device(DEVICE, &state));
        };
        if saved.capacity != self.capacity() {
            return Err(StateError::mismatch(
                DEVICE,
                "capacity in sectors",
                saved.capacity,
                self.capacity(),
            ));
        }
        if saved.read_only != self.read_only() {
            return Err(StateError::mismatch(
                DEVICE,
                "read-only flag",
                saved.read_only,
                self.read_only(),
            ));
        }
        Ok(())
    }
}
