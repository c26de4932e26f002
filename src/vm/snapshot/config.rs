//! What a snapshot records of the VM it was taken from, so that a restore builds the same
//! machine without being told again: guest RAM and its layout, the vCPU count, the
//! command line the guest booted with, and every device by its spec (disks and TAPs are
//! reopened by path).

use serde::{Deserialize, Serialize};

use crate::vm::device_specs::DeviceSpecs;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedConfig {
    pub mem_mib: u64,
    /// Guest RAM's regions in the memory file, in guest-physical order.
    pub regions: Vec<SavedRegion>,
    pub cpus: u8,
    /// The command line the guest was booted with, device tokens included (for the
    /// record: the guest has long read it).
    pub cmdline: String,
    /// Whether the boot timer (`--boot-timer`) was on the MMIO bus.
    pub boot_timer: bool,
    pub devices: DeviceSpecs,
}

/// One region of guest RAM and where its bytes are in the memory file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRegion {
    pub guest_base: u64,
    pub len: u64,
    pub file_offset: u64,
}

impl SavedConfig {
    /// Guest RAM's size in bytes: the memory file's size.
    pub fn ram_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.len).sum()
    }

    /// Why this config cannot be a VM of ours (`None` when it can): checked before any
    /// of it is used, since a state file with a good checksum may still have been made by
    /// hand.
    pub fn inconsistency(&self, vcpu_states: usize) -> Option<String> {
        let expected = boot::layout::ram_ranges(self.mem_mib.saturating_mul(1 << 20));
        let layout: Vec<(u64, u64)> = self.regions.iter().map(|r| (r.guest_base, r.len)).collect();
        let expected: Vec<(u64, u64)> = expected
            .into_iter()
            .map(|(base, len)| (base.0, len as u64))
            .collect();
        if self.mem_mib == 0 || layout != expected {
            return Some(format!(
                "its RAM regions {layout:x?} are not the layout of {} MiB",
                self.mem_mib
            ));
        }
        let mut offset = 0;
        for region in &self.regions {
            if region.file_offset != offset {
                return Some("its RAM regions do not follow one another in the memory file".into());
            }
            offset += region.len;
        }
        if self.cpus == 0 || usize::from(self.cpus) != vcpu_states {
            return Some(format!(
                "{} vCPUs with {vcpu_states} vCPU states",
                self.cpus
            ));
        }
        None
    }
}

/// Serde for `Option<RateLimiterConfig>` (a `devices` type without serde): as its two
/// buckets' numbers.
pub mod limiter {
    use devices::virtio::{RateLimiterConfig, TokenBucketConfig};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Bucket {
        size: u64,
        one_time_burst: u64,
        refill_time_ms: u64,
    }

    #[derive(Serialize, Deserialize)]
    struct Limiter {
        bandwidth: Option<Bucket>,
        ops: Option<Bucket>,
    }

    fn to_bucket(b: TokenBucketConfig) -> Bucket {
        Bucket {
            size: b.size,
            one_time_burst: b.one_time_burst,
            refill_time_ms: b.refill_time_ms,
        }
    }

    fn from_bucket(b: Bucket) -> TokenBucketConfig {
        TokenBucketConfig {
            size: b.size,
            one_time_burst: b.one_time_burst,
            refill_time_ms: b.refill_time_ms,
        }
    }

    pub fn serialize<S: Serializer>(
        value: &Option<RateLimiterConfig>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        value
            .map(|l| Limiter {
                bandwidth: l.bandwidth.map(to_bucket),
                ops: l.ops.map(to_bucket),
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<RateLimiterConfig>, D::Error> {
        Ok(
            Option::<Limiter>::deserialize(d)?.map(|l| RateLimiterConfig {
                bandwidth: l.bandwidth.map(from_bucket),
                ops: l.ops.map(from_bucket),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use devices::virtio::{RateLimiterConfig, TokenBucketConfig};

    use super::*;
    use crate::vm::device_specs::{DiskSpec, RngSpec};

    fn config(mem_mib: u64) -> SavedConfig {
        let mut offset = 0;
        let regions = boot::layout::ram_ranges(mem_mib << 20)
            .into_iter()
            .map(|(base, len)| {
                let r = SavedRegion {
                    guest_base: base.0,
                    len: len as u64,
                    file_offset: offset,
                };
                offset += len as u64;
                r
            })
            .collect();
        SavedConfig {
            mem_mib,
            regions,
            cpus: 2,
            cmdline: "console=ttyS0".into(),
            boot_timer: false,
            devices: DeviceSpecs {
                disks: vec![DiskSpec {
                    path: PathBuf::from("/tmp/disk.img"),
                    read_only: true,
                    id: Some("data".into()),
                    rate_limiter: Some(RateLimiterConfig {
                        bandwidth: Some(TokenBucketConfig::per_second(1 << 20)),
                        ops: None,
                    }),
                }],
                rng: Some(RngSpec::default()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_config_with_devices_round_trips_through_the_encoding() {
        let c = config(4096);
        let back: SavedConfig = postcard::from_bytes(&postcard::to_allocvec(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.ram_bytes(), 4096 << 20);
    }

    #[test]
    fn a_consistent_config_has_no_inconsistency() {
        assert_eq!(config(4096).inconsistency(2), None);
        assert_eq!(config(128).inconsistency(2), None);
    }

    #[test]
    fn regions_that_are_not_the_memory_layout_are_refused() {
        let mut c = config(128);
        c.regions[0].len -= 4096;
        assert!(c
            .inconsistency(2)
            .unwrap()
            .contains("not the layout of 128 MiB"));
        let mut c = config(4096);
        c.regions[1].file_offset += 4096;
        assert!(c.inconsistency(2).is_some());
    }

    #[test]
    fn a_vcpu_count_without_as_many_states_is_refused() {
        assert!(config(128)
            .inconsistency(1)
            .unwrap()
            .contains("2 vCPUs with 1"));
    }
}
