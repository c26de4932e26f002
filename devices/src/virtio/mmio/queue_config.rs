//! One queue's configuration as the driver writes it through the MMIO registers, and its
//! validation into a `virtio_queue::Queue` when the driver sets DRIVER_OK.
//!
//! The raw values are kept as written (rather than fed to `Queue`'s setters at once)
//! because those setters silently keep the old value when given a bad one: the device
//! would then run with a size or address the driver never chose.

use std::mem::size_of;

use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Why a queue the driver marked ready cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("queue size {size} is not a power of two between 1 and {max}")]
    Size { size: u32, max: u16 },
    #[error("queue {ring} at {addr:#x} is not aligned to {align} bytes")]
    Misaligned {
        ring: &'static str,
        addr: u64,
        align: u64,
    },
    #[error("queue {ring} at {addr:#x} ({len} bytes) is not inside guest memory")]
    OutsideMemory {
        ring: &'static str,
        addr: u64,
        len: u64,
    },
}

/// The registers of one queue (QueueNum, QueueReady, QueueDesc/Driver/Device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_size: u16,
    pub size: u32,
    pub ready: bool,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl QueueConfig {
    /// A queue as after reset: size defaults to the maximum (virtio 1.x §4.2.2.1 leaves
    /// QueueNum to the driver; Linux always writes it).
    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: u32::from(max_size),
            ready: false,
            desc: 0,
            avail: 0,
            used: 0,
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// Checks the configuration against the spec's rules (§2.7: size a power of two, rings
    /// aligned to 16/2/4 bytes) and guest memory, and builds the queue the device uses.
    pub fn to_queue(&self, mem: &GuestMemoryMmap, event_idx: bool) -> Result<Queue, QueueError> {
        let size = u16::try_from(self.size)
            .ok()
            .filter(|s| s.is_power_of_two() && *s <= self.max_size)
            .ok_or(QueueError::Size {
                size: self.size,
                max: self.max_size,
            })?;
        let n = u64::from(size);
        // With EVENT_IDX the rings carry one more u16 (used_event / avail_event).
        let event = if event_idx { 2 } else { 0 };
        let rings = [
            (
                "descriptor table",
                self.desc,
                16,
                n * size_of::<RawDescriptor>() as u64,
            ),
            ("available ring", self.avail, 2, 4 + 2 * n + event),
            ("used ring", self.used, 4, 4 + 8 * n + event),
        ];
        for (ring, addr, align, len) in rings {
            if addr % align != 0 {
                return Err(QueueError::Misaligned { ring, addr, align });
            }
            // `len` is at most 512 KiB (size <= 32768), so it fits a usize.
            if !usize::try_from(len).is_ok_and(|len| mem.check_range(GuestAddress(addr), len)) {
                return Err(QueueError::OutsideMemory { ring, addr, len });
            }
        }
        // Queue::new only fails for a max size that is not a power of two, which the
        // device's queue_max_sizes() could give: report it as a size error, not a panic.
        let mut queue = Queue::new(self.max_size).map_err(|_| QueueError::Size {
            size: self.size,
            max: self.max_size,
        })?;
        queue.set_size(size);
        let [desc, avail, used] = [self.desc, self.avail, self.used].map(halves);
        queue.set_desc_table_address(desc.0, desc.1);
        queue.set_avail_ring_address(avail.0, avail.1);
        queue.set_used_ring_address(used.0, used.1);
        queue.set_event_idx(event_idx);
        queue.set_ready(true);
        Ok(queue)
    }
}

/// A ring address as the low and high halves virtio-queue's setters take.
fn halves(addr: u64) -> (Option<u32>, Option<u32>) {
    (Some((addr & 0xffff_ffff) as u32), Some((addr >> 32) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn config(size: u32) -> QueueConfig {
        QueueConfig {
            size,
            ready: true,
            desc: 0x1000,
            avail: 0x2000,
            used: 0x3000,
            ..QueueConfig::new(16)
        }
    }

    #[test]
    fn valid_config_builds_queue_with_driver_values() {
        let q = config(8).to_queue(&mem(), false).unwrap();
        assert_eq!(q.size(), 8);
        assert_eq!(q.desc_table(), 0x1000);
        assert_eq!(q.avail_ring(), 0x2000);
        assert_eq!(q.used_ring(), 0x3000);
        assert!(q.ready());
    }

    #[test]
    fn size_not_power_of_two_or_above_max_or_zero_is_rejected() {
        for size in [0, 3, 32, 0x1_0000] {
            assert_eq!(
                config(size).to_queue(&mem(), false),
                Err(QueueError::Size { size, max: 16 })
            );
        }
    }

    #[test]
    fn misaligned_used_ring_is_rejected() {
        let c = QueueConfig {
            used: 0x3002,
            ..config(8)
        };
        assert!(matches!(
            c.to_queue(&mem(), false),
            Err(QueueError::Misaligned {
                ring: "used ring",
                ..
            })
        ));
    }

    #[test]
    fn ring_past_end_of_memory_is_rejected() {
        let c = QueueConfig {
            desc: 0xfff0,
            ..config(8)
        };
        assert!(matches!(
            c.to_queue(&mem(), false),
            Err(QueueError::OutsideMemory {
                ring: "descriptor table",
                ..
            })
        ));
    }
}
