//! A balloon in a snapshot: the target the host set and the size the guest reached (the
//! config space), the statistics so far, and the stats buffer the worker was holding
//! until its next poll (the driver posted it and waits for it to come back, so the
//! restored device must hold it in turn). The pages the guest gave the balloon are in the
//! memory file as the VMM copied them (zeros, once released); the guest does not read
//! them before it deflates.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::{Balloon, BalloonStats, BALLOON_QUEUE_SIZE};
use crate::virtio::state::{DeviceState, SavedDevice, StateError};

const DEVICE: &str = "balloon";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonState {
    /// The host's target, in 4 KiB pages.
    pub target_pages: u32,
    /// The size the guest last wrote, in 4 KiB pages.
    pub actual_pages: u32,
    /// The guest's last statistics and the device's counts (their target and actual
    /// fields are the two above).
    pub stats: BalloonStats,
    /// The head of the stats buffer the device holds until its next poll.
    pub held_stats_buffer: Option<u16>,
}

impl Balloon {
    /// Stops the worker and takes its queues and the stats buffer back (see
    /// `VirtioDevice::save`).
    pub(super) fn save_state(&mut self) -> Result<SavedDevice, StateError> {
        let (queues, held) = match self.worker.take() {
            Some(worker) => {
                self.stop_worker();
                let handler = worker
                    .stop_and_take()
                    .ok_or(StateError::WorkerLost { device: DEVICE })?;
                let (queues, held) = handler.into_saved();
                (queues.into_iter().map(Some).collect(), held)
            }
            // Not running: a buffer restored for the next activation is still held.
            None => (Vec::new(), self.held_stats_head),
        };
        let state = BalloonState {
            target_pages: self.shared.target_pages.load(Ordering::SeqCst),
            actual_pages: self.shared.actual_pages.load(Ordering::SeqCst),
            stats: self.shared.stats().clone(),
            held_stats_buffer: held,
        };
        Ok(SavedDevice {
            state: DeviceState::Balloon(Box::new(state)),
            queues,
        })
    }

    pub(super) fn restore_state(&mut self, state: DeviceState) -> Result<(), StateError> {
        let DeviceState::Balloon(saved) = state else {
            return Err(StateError::wrong_device(DEVICE, &state));
        };
        if let Some(head) = saved.held_stats_buffer {
            if self.stats_interval.is_none() || head >= BALLOON_QUEUE_SIZE {
                return Err(StateError::Invalid {
                    device: DEVICE,
                    problem: format!(
                        "a held stats buffer (descriptor {head}) for a device without \
                         statistics or past its {BALLOON_QUEUE_SIZE}-entry queue"
                    ),
                });
            }
        }
        self.shared
            .target_pages
            .store(saved.target_pages, Ordering::SeqCst);
        self.shared
            .actual_pages
            .store(saved.actual_pages, Ordering::SeqCst);
        *self.shared.stats() = saved.stats;
        self.held_stats_head = saved.held_stats_buffer;
        self.saved_target_pages = Some(saved.target_pages);
        Ok(())
    }
}
