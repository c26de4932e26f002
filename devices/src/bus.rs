//! A bus of devices addressed by ranges: one for port I/O, one for MMIO.
//!
//! Ranges are kept in a `BTreeMap` keyed by base address, so a lookup is one O(log n) range
//! query; an access is dispatched to the device whose range contains its first address, with
//! `offset = addr - base`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// A device on a [`Bus`]. `offset` is relative to the base the device was inserted at.
pub trait BusDevice: Send {
    /// Fills `data` from the register at `offset` (the caller zeroes it first).
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes `data` to the register at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// An inclusive range of bus addresses, printed as `[base, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusRange {
    /// First address.
    pub base: u64,
    /// Last address (inclusive, so a range may end at `u64::MAX`).
    pub last: u64,
}

impl fmt::Display for BusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x}]", self.base, self.last)
    }
}

/// Why a device could not be inserted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range has no addresses.
    #[error("bus range at {base:#x} has zero length")]
    ZeroLength {
        /// Requested base.
        base: u64,
    },
    /// The range runs past the end of the address space.
    #[error("bus range at {base:#x} with length {len:#x} runs past the end of the address space")]
    Overflow {
        /// Requested base.
        base: u64,
        /// Requested length.
        len: u64,
    },
    /// The range overlaps a device already on the bus.
    #[error("bus range {new} overlaps the existing range {existing}")]
    Overlap {
        /// The range being inserted.
        new: BusRange,
        /// The range already on the bus.
        existing: BusRange,
    },
}

#[derive(Clone)]
struct Entry {
    last: u64,
    dev: Arc<Mutex<dyn BusDevice>>,
}

/// A sorted map from address ranges to devices. Cheap to share: `read`/`write` take `&self`
/// and lock only the device they reach.
#[derive(Clone, Default)]
pub struct Bus {
    devices: BTreeMap<u64, Entry>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.devices
                    .iter()
                    .map(|(&base, e)| BusRange { base, last: e.last }),
            )
            .finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `dev` at `[base, base + len)`. Fails on a zero length, a range past the end of
    /// the address space, or an overlap with a device already on the bus.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        dev: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::ZeroLength { base });
        }
        let last = base
            .checked_add(len - 1)
            .ok_or(BusError::Overflow { base, len })?;
        let new = BusRange { base, last };
        // Only two neighbours can overlap: the last range starting at or below `base`, and the
        // first starting inside the new range.
        let before = self.devices.range(..=base).next_back();
        let inside = self.devices.range(base..=last).next();
        for (&existing_base, entry) in before.into_iter().chain(inside) {
            if existing_base <= last && entry.last >= base {
                return Err(BusError::Overlap {
                    new,
                    existing: BusRange {
                        base: existing_base,
                        last: entry.last,
                    },
                });
            }
        }
        self.devices.insert(base, Entry { last, dev });
        Ok(())
    }

    /// Reads from the device covering `addr`. Returns false (leaving `data` untouched) when
    /// no device covers it.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((base, dev)) => {
                lock(dev).read(addr - base, data);
                true
            }
            None => false,
        }
    }

    /// Writes to the device covering `addr`. Returns false when no device covers it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((base, dev)) => {
                lock(dev).write(addr - base, data);
                true
            }
            None => false,
        }
    }

    fn find(&self, addr: u64) -> Option<(u64, &Arc<Mutex<dyn BusDevice>>)> {
        let (&base, entry) = self.devices.range(..=addr).next_back()?;
        (addr <= entry.last).then_some((base, &entry.dev))
    }
}

/// Locks a device, recovering it if another thread panicked while holding the lock: one
/// vCPU thread's panic must not take every later access (and the VMM) down with it.
fn lock<'a>(dev: &'a Mutex<dyn BusDevice + 'static>) -> MutexGuard<'a, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the last access; reads return the low byte of the offset.
    #[derive(Default)]
    struct Probe {
        last_write: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }

        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    fn probe() -> Arc<Mutex<Probe>> {
        Arc::new(Mutex::new(Probe::default()))
    }

    #[test]
    fn bus_dispatches_with_offset_from_base() {
        let mut bus = Bus::new();
        let dev = probe();
        bus.insert(0x3f8, 8, dev.clone()).unwrap();

        let mut data = [0u8; 1];
        assert!(bus.read(0x3fd, &mut data));
        assert_eq!(data, [5]);
        assert!(bus.write(0x3f8, &[0x41]));
        assert_eq!(dev.lock().unwrap().last_write, Some((0, vec![0x41])));
    }

    #[test]
    fn bus_returns_false_outside_every_range() {
        let mut bus = Bus::new();
        bus.insert(0x60, 5, probe()).unwrap();
        let mut data = [0u8; 1];
        assert!(!bus.read(0x5f, &mut data));
        assert!(!bus.read(0x65, &mut data));
        assert!(!bus.write(0x1000, &[1]));
        assert_eq!(data, [0]);
    }

    #[test]
    fn bus_covers_first_and_last_address_of_range() {
        let mut bus = Bus::new();
        bus.insert(0x60, 5, probe()).unwrap();
        let mut data = [0xffu8; 1];
        assert!(bus.read(0x60, &mut data));
        assert_eq!(data, [0]);
        assert!(bus.read(0x64, &mut data));
        assert_eq!(data, [4]);
    }

    #[test]
    fn bus_picks_the_right_device_among_many() {
        let mut bus = Bus::new();
        let devs: Vec<_> = (0..16u64).map(|_| probe()).collect();
        for (i, dev) in devs.iter().enumerate() {
            bus.insert(0x1000 * i as u64, 0x10, dev.clone()).unwrap();
        }
        assert!(bus.write(0x7003, &[9]));
        assert_eq!(devs[7].lock().unwrap().last_write, Some((3, vec![9])));
        assert!(!bus.write(0x7010, &[9]));
    }

    #[test]
    fn bus_rejects_zero_length() {
        let mut bus = Bus::new();
        assert_eq!(
            bus.insert(0x10, 0, probe()),
            Err(BusError::ZeroLength { base: 0x10 })
        );
    }

    #[test]
    fn bus_rejects_range_past_end_of_address_space() {
        let mut bus = Bus::new();
        assert!(matches!(
            bus.insert(u64::MAX, 2, probe()),
            Err(BusError::Overflow { .. })
        ));
        bus.insert(u64::MAX - 0xfff, 0x1000, probe()).unwrap();
        assert!(bus.read(u64::MAX, &mut [0u8; 1]));
    }

    #[test]
    fn bus_rejects_overlapping_ranges() {
        let mut bus = Bus::new();
        bus.insert(0x100, 0x10, probe()).unwrap();
        // Starts inside, ends inside, covers, and is covered.
        for (base, len) in [(0x108, 0x10), (0xf8, 0x10), (0xf0, 0x40), (0x104, 2)] {
            let err = bus.insert(base, len, probe()).unwrap_err();
            assert_eq!(
                err,
                BusError::Overlap {
                    new: BusRange {
                        base,
                        last: base + len - 1
                    },
                    existing: BusRange {
                        base: 0x100,
                        last: 0x10f
                    },
                }
            );
        }
        // Adjacent ranges are fine.
        bus.insert(0xf0, 0x10, probe()).unwrap();
        bus.insert(0x110, 0x10, probe()).unwrap();
    }

    #[test]
    fn bus_overlap_error_names_both_ranges() {
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, probe()).unwrap();
        let msg = bus.insert(0x3f0, 0x10, probe()).unwrap_err().to_string();
        assert_eq!(
            msg,
            "bus range [0x3f0, 0x3ff] overlaps the existing range [0x3f8, 0x3ff]"
        );
    }

    #[test]
    fn bus_survives_poisoned_device_lock() {
        let mut bus = Bus::new();
        let dev = probe();
        bus.insert(0x10, 1, dev.clone()).unwrap();
        let _ = std::thread::spawn(move || {
            let _guard = dev.lock().unwrap();
            panic!("poison the device lock");
        })
        .join();
        let mut data = [0u8; 1];
        assert!(bus.read(0x10, &mut data));
        assert!(bus.write(0x10, &[1]));
    }
}
