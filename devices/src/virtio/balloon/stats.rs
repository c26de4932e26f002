//! The balloon's statistics: the guest's memory statistics (virtio 1.x §5.5.6.3, tag/value
//! pairs from the stats queue) plus what the device itself did, shaped like Firecracker's
//! `GET /balloon/statistics`.

/// Size of one `virtio_balloon_stat` on the wire: le16 tag, le64 value, packed.
pub(super) const STAT_LEN: usize = 10;
/// The balloon counts in 4 KiB pages whatever the guest's page size (§5.5.6).
pub const PAGE_SIZE: u64 = 4096;
pub(super) const PAGES_PER_MIB: u32 = 256;
const _: () = assert!(PAGES_PER_MIB as u64 * PAGE_SIZE == 1 << 20);

use serde::{Deserialize, Serialize};

/// A snapshot of the balloon. Guest statistics are `None` until the guest reported them
/// (it only does when the stats queue was negotiated, i.e. a polling interval was set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonStats {
    /// The target size the host asked for, in 4 KiB pages and in MiB.
    pub target_pages: u32,
    pub target_mib: u32,
    /// The size the guest says it has reached.
    pub actual_pages: u32,
    pub actual_mib: u32,
    pub swap_in: Option<u64>,
    pub swap_out: Option<u64>,
    pub major_faults: Option<u64>,
    pub minor_faults: Option<u64>,
    pub free_memory: Option<u64>,
    pub total_memory: Option<u64>,
    pub available_memory: Option<u64>,
    pub disk_caches: Option<u64>,
    pub hugetlb_allocations: Option<u64>,
    pub hugetlb_failures: Option<u64>,
    pub oom_kills: Option<u64>,
    pub alloc_stalls: Option<u64>,
    /// How many stats buffers the guest delivered.
    pub stats_updates: u64,
    /// Pages the device returned to the host (madvise) on inflate.
    pub inflated_pages: u64,
    /// Pages the guest took back on deflate.
    pub deflated_pages: u64,
    /// PFNs in inflate requests that are not guest RAM (or could not be released).
    pub invalid_pfns: u64,
}

impl BalloonStats {
    /// Applies one stats buffer; unknown tags are ignored, as newer guests send more.
    pub(super) fn apply(&mut self, buf: &[u8]) {
        for stat in buf.chunks_exact(STAT_LEN) {
            let tag = u16::from_le_bytes([stat[0], stat[1]]);
            let mut value = [0u8; 8];
            value.copy_from_slice(&stat[2..]);
            let value = Some(u64::from_le_bytes(value));
            // Tags from Linux's include/uapi/linux/virtio_balloon.h.
            match tag {
                0 => self.swap_in = value,
                1 => self.swap_out = value,
                2 => self.major_faults = value,
                3 => self.minor_faults = value,
                4 => self.free_memory = value,
                5 => self.total_memory = value,
                6 => self.available_memory = value,
                7 => self.disk_caches = value,
                8 => self.hugetlb_allocations = value,
                9 => self.hugetlb_failures = value,
                10 => self.oom_kills = value,
                11 => self.alloc_stalls = value,
                _ => {}
            }
        }
        self.stats_updates += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(tag: u16, value: u64) -> Vec<u8> {
        let mut v = tag.to_le_bytes().to_vec();
        v.extend(value.to_le_bytes());
        v
    }

    #[test]
    fn stats_buffer_tags_land_in_their_fields_and_unknown_tags_are_ignored() {
        let mut buf = stat(4, 123 << 20);
        buf.extend(stat(5, 512 << 20));
        buf.extend(stat(99, 7));
        buf.extend([1, 2, 3]); // a trailing partial entry
        let mut stats = BalloonStats::default();
        stats.apply(&buf);
        assert_eq!(stats.free_memory, Some(123 << 20));
        assert_eq!(stats.total_memory, Some(512 << 20));
        assert_eq!(stats.swap_in, None);
        assert_eq!(stats.stats_updates, 1);
    }
}
