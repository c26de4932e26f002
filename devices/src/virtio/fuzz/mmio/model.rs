//! What the MMIO target checks the transport against: a model of the registers the
//! driver wrote, and a wrapper around the real device that records what the transport
//! hands it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_DRIVER_OK;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;
use virtio_queue::QueueT;

use super::INIT;
use crate::virtio::mmio::regs::*;
use crate::virtio::{ActivateContext, ActivateError, VirtioDevice};

const INDIRECT_DESC: u64 = 1 << VIRTIO_RING_F_INDIRECT_DESC;

/// (index, size, descriptor table, available ring, used ring) of a queue handed over.
pub(super) type QueueSeen = (usize, u16, u64, u64, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Activation {
    pub queues: Vec<QueueSeen>,
    pub features: u64,
}

#[derive(Debug, Default)]
pub(super) struct Log {
    pub activations: Vec<Activation>,
    /// The device accepted an activation and has not been reset since.
    pub active: bool,
    /// An activation reached a device that was still active.
    pub activated_twice: bool,
}

/// The real device, with every activation and reset recorded on the way through.
pub(super) struct Recorder {
    pub inner: Box<dyn VirtioDevice>,
    pub log: Arc<Mutex<Log>>,
}

pub(super) fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VirtioDevice for Recorder {
    fn device_type(&self) -> u32 {
        self.inner.device_type()
    }
    fn queue_max_sizes(&self) -> &[u16] {
        self.inner.queue_max_sizes()
    }
    /// The device's features and VIRTIO_RING_F_INDIRECT_DESC, which the transport must
    /// never show a driver nor let it acknowledge (`virtio::chain` refuses indirect
    /// descriptors): no real device offers it, so without this the check would be idle.
    fn avail_features(&self) -> u64 {
        self.inner.avail_features() | INDIRECT_DESC
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.inner.read_config(offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.inner.write_config(offset, data)
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let queues = ctx
            .ready_queues()
            .map(|(i, q)| {
                let q = &q.queue;
                (i, q.size(), q.desc_table(), q.avail_ring(), q.used_ring())
            })
            .collect();
        {
            let mut log = lock(&self.log);
            log.activated_twice |= log.active;
            log.activations.push(Activation {
                queues,
                features: ctx.acked_features,
            });
        }
        let result = self.inner.activate(ctx);
        lock(&self.log).active = result.is_ok();
        result
    }
    fn reset(&mut self) {
        lock(&self.log).active = false;
        self.inner.reset()
    }
}

/// The registers that configure a queue, each a 32-bit cell (an address is its LOW and
/// HIGH halves).
pub(super) const QUEUE_REGS: [u64; 8] = [
    QUEUE_NUM,
    QUEUE_READY,
    QUEUE_DESC_LOW,
    QUEUE_DESC_HIGH,
    QUEUE_DRIVER_LOW,
    QUEUE_DRIVER_HIGH,
    QUEUE_DEVICE_LOW,
    QUEUE_DEVICE_HIGH,
];

/// One queue: its maximum size and what the driver last wrote to each of its registers.
#[derive(Debug, Clone)]
struct QueueRegs {
    max: u16,
    written: BTreeMap<u64, u32>,
}

impl QueueRegs {
    fn new(max: u16) -> Self {
        QueueRegs {
            max,
            written: BTreeMap::new(),
        }
    }

    fn reg(&self, offset: u64) -> u32 {
        self.written.get(&offset).copied().unwrap_or(0)
    }

    /// The address whose low half is register `low` (the high half is the next one).
    fn addr(&self, low: u64) -> u64 {
        u64::from(self.reg(low + 4)) << 32 | u64::from(self.reg(low))
    }

    /// QueueNum starts at the maximum, so a driver that never writes it gets the largest
    /// queue.
    fn size(&self) -> u32 {
        self.written
            .get(&QUEUE_NUM)
            .copied()
            .unwrap_or(u32::from(self.max))
    }

    fn ready(&self) -> bool {
        self.reg(QUEUE_READY) == 1
    }
}

/// What the driver wrote, by the rules of virtio 1.x §4.2.2: registers are 32-bit, queue
/// registers are fixed from DRIVER_OK on, features are written between DRIVER and
/// FEATURES_OK, and a status of 0 resets everything.
#[derive(Debug, Clone)]
pub(super) struct Model {
    /// What the transport must offer: the device's features less INDIRECT_DESC.
    pub offered: u64,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<QueueRegs>,
}

impl Model {
    pub(super) fn new(dev: &dyn VirtioDevice) -> Self {
        Model {
            offered: dev.avail_features() & !INDIRECT_DESC,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues: dev
                .queue_max_sizes()
                .iter()
                .map(|&m| QueueRegs::new(m))
                .collect(),
        }
    }

    fn reset(&mut self) {
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            *q = QueueRegs::new(q.max);
        }
    }

    fn selected(&self) -> Option<&QueueRegs> {
        self.queues.get(self.queue_sel as usize)
    }

    /// A write of `data` at `offset` while the device status was `status`.
    pub(super) fn write(&mut self, offset: u64, data: &[u8], status: u32) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if offset >= CONFIG {
            return;
        }
        let value = u32::from_le_bytes(bytes);
        let low = |old: u64| (old & !0xffff_ffff) | u64::from(value);
        let high = |old: u64| (old & 0xffff_ffff) | (u64::from(value) << 32);
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            DRIVER_FEATURES if status == INIT => match self.driver_features_sel {
                0 => self.driver_features = low(self.driver_features),
                1 => self.driver_features = high(self.driver_features),
                _ => {}
            },
            QUEUE_SEL => self.queue_sel = value,
            STATUS if value == 0 => self.reset(),
            _ if QUEUE_REGS.contains(&offset) && status & VIRTIO_CONFIG_S_DRIVER_OK == 0 => {
                if let Some(q) = self.queues.get_mut(self.queue_sel as usize) {
                    q.written.insert(offset, value);
                }
            }
            _ => {}
        }
    }

    /// What the device must be given if DRIVER_OK activates it now.
    pub(super) fn activation(&self) -> Activation {
        let queues = (0..)
            .zip(&self.queues)
            .filter(|(_, q)| q.ready())
            .map(|(i, q)| {
                let addrs = [QUEUE_DESC_LOW, QUEUE_DRIVER_LOW, QUEUE_DEVICE_LOW].map(|r| q.addr(r));
                (i, q.size() as u16, addrs[0], addrs[1], addrs[2])
            })
            .collect();
        Activation {
            queues,
            features: self.driver_features,
        }
    }

    /// What a 4-byte read of register `offset` answers, when the model knows.
    pub(super) fn register(&self, offset: u64, device_type: u32) -> Option<u32> {
        Some(match offset {
            MAGIC => MAGIC_VALUE,
            VERSION => MMIO_VERSION,
            DEVICE_ID => device_type,
            VENDOR => VENDOR_ID,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered as u32,
                1 => (self.offered >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX => self.selected().map_or(0, |q| u32::from(q.max)),
            QUEUE_READY => self.selected().map_or(0, |q| u32::from(q.ready())),
            CONFIG_GENERATION => 0,
            // Answered by the device's state: checked on their own.
            INTERRUPT_STATUS | STATUS => return None,
            // Write-only, reserved, unaligned.
            _ => 0,
        })
    }
}
