//! Saving and restoring a virtio-mmio transport with its device (`virtio::state` has the
//! design): the registers the driver wrote, each queue's rings and the device's position
//! in them, the interrupt flags, and the device's own state.
//!
//! A restore checks the whole state against the device it is given and against guest
//! memory before it changes anything, and starts nothing: [`MmioTransport::resume`] does,
//! so a VMM can restore every device first and start them only once all were accepted.
//! ConfigGeneration is saved with InterruptStatus: a driver that read the configuration
//! before the snapshot must see the same generation after it.

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::queue_config::QueueConfig;
use super::{
    MmioTransport, STATUS_FEATURES, STATUS_INIT, STATUS_LIVE, VIRTIO_CONFIG_S_ACKNOWLEDGE,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_RING_F_EVENT_IDX,
};
use crate::virtio::device::VirtioDevice;
use crate::virtio::state::{device_kind, DeviceState, StateError, STATE_VERSION};

/// One queue: its registers as the driver wrote them, and where the device is in its
/// rings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// QueueNumMax, the device's: a restore checks it is still the device's.
    pub max_size: u16,
    /// QueueNum as the driver wrote it.
    pub size: u32,
    pub ready: bool,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// The next available-ring entry the device takes (free-running).
    pub next_avail: u16,
    /// The next used-ring entry the device fills: the used index it last published.
    pub next_used: u16,
}

impl QueueState {
    fn config(&self) -> QueueConfig {
        QueueConfig {
            max_size: self.max_size,
            size: self.size,
            ready: self.ready,
            desc: self.desc,
            avail: self.avail,
            used: self.used,
        }
    }

    /// Puts `queue` where the saved device was in its rings.
    pub(super) fn set_indices(&self, queue: &mut Queue) {
        queue.set_next_avail(self.next_avail);
        queue.set_next_used(self.next_used);
    }
}

/// A transport and its device, as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportState {
    /// [`STATE_VERSION`] of the build that saved it.
    pub version: u32,
    /// The virtio device ID.
    pub device_type: u32,
    /// Status as the driver wrote it (without DEVICE_NEEDS_RESET, kept apart below).
    pub status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    /// The features the driver accepted (or is negotiating, before FEATURES_OK).
    pub driver_features: u64,
    pub queue_sel: u32,
    pub queues: Vec<QueueState>,
    /// InterruptStatus: what the driver has not acknowledged yet.
    pub interrupt_status: u32,
    pub needs_reset: bool,
    /// ConfigGeneration.
    pub config_generation: u32,
    /// The device was processing its queues: resuming starts it again.
    pub running: bool,
    pub device: DeviceState,
}

impl MmioTransport {
    /// Saves the transport and its device, with the vCPUs paused. The device's worker is
    /// stopped between two requests and stays stopped until [`Self::resume`]: call that
    /// once guest memory has been copied, so that no device writes it meanwhile. Saving a
    /// stopped transport again returns the same state.
    pub fn save(&mut self) -> Result<TransportState, StateError> {
        if let Some(state) = &self.quiesced {
            return Ok(state.clone());
        }
        let saved = match self.device.save() {
            Ok(saved) => saved,
            Err(e) => {
                // Any other refusal (a device that cannot be saved) left the device as it
                // was, running.
                if matches!(e, StateError::WorkerLost { .. }) {
                    self.lose_device();
                }
                return Err(e);
            }
        };
        let running = std::mem::take(&mut self.activated) && !self.interrupt.needs_reset();
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, cfg)| {
                // A queue the worker did not take was never used: the device is at 0.
                let taken = saved.queues.get(i).and_then(Option::as_ref);
                QueueState {
                    max_size: cfg.max_size,
                    size: cfg.size,
                    ready: cfg.ready,
                    desc: cfg.desc,
                    avail: cfg.avail,
                    used: cfg.used,
                    next_avail: taken.map_or(0, |q| q.next_avail()),
                    next_used: taken.map_or(0, |q| q.next_used()),
                }
            })
            .collect();
        let state = TransportState {
            version: STATE_VERSION,
            device_type: self.device.device_type(),
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            queues,
            interrupt_status: self.interrupt.status(),
            needs_reset: self.interrupt.needs_reset(),
            config_generation: self.interrupt.config_generation(),
            running,
            device: saved.state,
        };
        if running {
            // The device goes on from the state just saved, as a restored one would.
            self.device_loaded = true;
            if let Err(e) = self.device.restore(state.device.clone()) {
                self.lose_device();
                return Err(e);
            }
            self.quiesced = Some(state.clone());
        }
        Ok(state)
    }

    /// A transport for `device` in the saved `state`, over `mem` (the guest memory saved
    /// with it) and with `irq` as its interrupt line. Everything is checked first: the
    /// version, the device type, its queues and features, the queues' rings against guest
    /// memory, and the device's own state against its configuration. The device does not
    /// run until [`Self::resume`].
    pub fn restore(
        mem: GuestMemoryMmap,
        device: Box<dyn VirtioDevice>,
        irq: EventFd,
        state: TransportState,
    ) -> Result<Self, StateError> {
        let mut transport = MmioTransport::new(mem, device, irq).map_err(StateError::EventFd)?;
        transport.check(&state)?;
        transport.device_loaded = true;
        transport.device.restore(state.device.clone())?;
        for (cfg, q) in transport.queues.iter_mut().zip(&state.queues) {
            *cfg = q.config();
        }
        transport.status = state.status;
        transport.device_features_sel = state.device_features_sel;
        transport.driver_features_sel = state.driver_features_sel;
        transport.driver_features = state.driver_features;
        transport.queue_sel = state.queue_sel;
        transport.interrupt.restore(
            state.interrupt_status,
            state.needs_reset,
            state.config_generation,
        );
        transport.raise_on_resume = state.interrupt_status != 0;
        transport.quiesced = state.running.then_some(state);
        Ok(transport)
    }

    /// Starts a saved or restored device again from its state, its queues at their saved
    /// indices; each ready queue is looked at once at start (buffers may be waiting), and
    /// a restored interrupt the driver had not acknowledged is raised again. Does nothing
    /// more for a transport that is not stopped.
    pub fn resume(&mut self) -> Result<(), StateError> {
        if let Some(state) = self.quiesced.take() {
            self.start_device(Some(&state.queues))?;
            for (cfg, evt) in self.queues.iter().zip(&self.queue_evts) {
                if cfg.ready {
                    // A full counter (never in practice) is a kick already.
                    let _ = evt.write(1);
                }
            }
        }
        if std::mem::take(&mut self.raise_on_resume) {
            self.interrupt.trigger();
        }
        Ok(())
    }

    /// Whether the device is stopped by a save or a restore, waiting for [`Self::resume`].
    pub fn is_quiesced(&self) -> bool {
        self.quiesced.is_some()
    }

    /// The device's worker is gone with its queues (it panicked, or its state could not
    /// be taken): the driver is told to reset the device.
    fn lose_device(&mut self) {
        if std::mem::take(&mut self.activated) {
            self.interrupt.set_needs_reset();
        }
    }

    /// Everything `restore` relies on, checked before anything is changed.
    fn check(&self, state: &TransportState) -> Result<(), StateError> {
        if state.version != STATE_VERSION {
            return Err(StateError::Version {
                found: state.version,
            });
        }
        let expected = self.device.device_type();
        let device = device_kind(expected);
        if state.device_type != expected {
            return Err(StateError::WrongDevice {
                expected: device,
                found: device_kind(state.device_type),
            });
        }
        let max_sizes = self.device.queue_max_sizes();
        if state.queues.len() != max_sizes.len() {
            return Err(StateError::QueueCount {
                device,
                found: state.queues.len(),
                expected: max_sizes.len(),
            });
        }
        for (index, (q, &max)) in state.queues.iter().zip(max_sizes).enumerate() {
            if q.max_size != max {
                return Err(StateError::QueueMaxSize {
                    index,
                    found: q.max_size,
                    expected: max,
                });
            }
        }
        check_status(state)?;
        let offered = self.offered_features();
        let negotiated = state.status & VIRTIO_CONFIG_S_FEATURES_OK != 0;
        if negotiated && state.driver_features & !offered != 0 {
            return Err(StateError::Features {
                accepted: state.driver_features,
                offered,
            });
        }
        if state.running {
            self.check_rings(state)?;
        }
        Ok(())
    }

    /// The rings of a running device: usable (as activation checks them), no more chains
    /// in flight than a queue holds, and the used index in guest memory the one the
    /// device published, which it is unless the memory is another snapshot's.
    fn check_rings(&self, state: &TransportState) -> Result<(), StateError> {
        let event_idx = state.driver_features & (1u64 << VIRTIO_RING_F_EVENT_IDX) != 0;
        for (index, q) in state.queues.iter().enumerate().filter(|(_, q)| q.ready) {
            let queue = q
                .config()
                .to_queue(&self.mem, event_idx)
                .map_err(|source| StateError::Queue { index, source })?;
            let in_flight = q.next_avail.wrapping_sub(q.next_used);
            if in_flight > queue.size() {
                return Err(StateError::InFlight {
                    index,
                    in_flight,
                    next_avail: q.next_avail,
                    next_used: q.next_used,
                    size: queue.size(),
                });
            }
            let in_memory = queue
                .used_idx(&self.mem, std::sync::atomic::Ordering::Acquire)
                .map_err(|source| StateError::UsedRing { index, source })?
                .0;
            if in_memory != q.next_used {
                return Err(StateError::UsedIndex {
                    index,
                    in_memory,
                    saved: q.next_used,
                });
            }
        }
        Ok(())
    }
}

/// The status is one the state machine in `write_status` can reach, and agrees with
/// whether the device runs: only a live device runs, and a live one that does not has
/// asked for a reset.
fn check_status(state: &TransportState) -> Result<(), StateError> {
    let status = state.status;
    let steps = status & !VIRTIO_CONFIG_S_FAILED;
    let reachable = [
        0,
        VIRTIO_CONFIG_S_ACKNOWLEDGE,
        STATUS_INIT,
        STATUS_FEATURES,
        STATUS_LIVE,
    ]
    .contains(&steps);
    if !reachable {
        return Err(StateError::Status { status });
    }
    let live = steps == STATUS_LIVE;
    if state.running && (!live || state.needs_reset) || live && !state.running && !state.needs_reset
    {
        return Err(StateError::Inconsistent {
            status,
            running: state.running,
        });
    }
    Ok(())
}
