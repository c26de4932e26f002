use super::*;
use crate::virtio::fuzz::ring::{driver_queue, memory, Ring, INDIRECT_AREA};

fn d(addr: u64, len: u32, flags: u16, next: u16) -> Desc {
    Desc {
        addr,
        len,
        flags,
        next,
    }
}

/// What a device writing its buffers may write when `table` is queue 0 and `heads` are
/// offered; the queue's used ring is the only other range.
fn allowed(table: Vec<Desc>, heads: &[u16], writes: bool) -> (Allowed, Range<u64>) {
    allowed_with(table, heads, heads.len() as u16, Vec::new(), writes)
}

fn allowed_with(
    table: Vec<Desc>,
    heads: &[u16],
    avail_idx: u16,
    indirect: Vec<Vec<Desc>>,
    writes: bool,
) -> (Allowed, Range<u64>) {
    let mem = memory();
    let size = table.len() as u16;
    let vq = driver_queue(&mem, 0, size);
    let ring = Ring {
        table,
        heads: heads.to_vec(),
        avail_idx,
        indirect,
        ..Ring::empty(size)
    };
    ring.write(&mem, &vq).unwrap();
    let before = MemorySnapshot::take(&mem).unwrap();
    let allowed = Allowed::compute(&before, &[&vq], &[writes]).unwrap();
    let [_, _, used] = vq.ring_ranges();
    (allowed, used)
}

#[test]
fn writable_buffers_of_an_offered_chain_are_allowed_and_readable_ones_are_not() {
    let table = vec![
        d(0x5000, 8, NEXT, 1),
        d(0x6000, 8, WRITE, 0),
        d(0x7000, 8, WRITE, 0),
        Desc::default(),
    ];
    let (allowed, used) = allowed(table, &[0], true);
    assert!(allowed.exact());
    assert_eq!(allowed.writable, vec![0x6000..0x6008]);
    assert!(allowed.refused[0].is_empty());
    assert!(!allowed.indirect_offered);
    // The readable buffer, and the writable one of a chain not offered, are not the
    // device's; its used ring is.
    let changed = [0x5000..0x5001, 0x6000..0x6008, 0x7000..0x7001, used];
    assert_eq!(
        allowed.outside(&changed, &[]),
        vec![0x5000..0x5001, 0x7000..0x7001]
    );
    let extra = 0x5000..0x8000;
    assert!(allowed
        .outside(&changed, std::slice::from_ref(&extra))
        .is_empty());
}

#[test]
fn no_buffer_of_a_chain_with_an_indirect_descriptor_is_allowed() {
    // A writable direct buffer, then an indirect table with a writable entry: the devices
    // refuse the whole chain, so neither may be written.
    let table = vec![
        d(0x5000, 8, WRITE | NEXT, 1),
        d(INDIRECT_AREA, 32, INDIRECT, 0),
        Desc::default(),
        Desc::default(),
    ];
    let indirect = vec![vec![d(0x7000, 4, WRITE, 0), d(0x8000, 4, 0, 0)]];
    let (allowed, _) = allowed_with(table, &[0], 1, indirect, true);
    assert!(allowed.writable.is_empty());
    assert_eq!(allowed.refused[0], BTreeSet::from([0]));
    assert!(allowed.indirect_offered);
    assert_eq!(
        allowed.outside(&[0x5000..0x5008, 0x7000..0x7004], &[]),
        vec![0x5000..0x5008, 0x7000..0x7004]
    );
}

#[test]
fn chains_that_loop_leave_the_table_or_reach_4_gib_are_refused() {
    let table = vec![
        // 0 -> 1 -> 0: a loop.
        d(0x5000, 8, WRITE | NEXT, 1),
        d(0x5100, 8, WRITE | NEXT, 0),
        // 2 -> 9: past the 8-entry table.
        d(0x5200, 8, WRITE | NEXT, 9),
        // 3 -> 4: 4 GiB in all.
        d(0x5300, 0x8000_0000, WRITE | NEXT, 4),
        d(0x5400, 0x8000_0000, WRITE, 0),
        // 5 -> 6: just under 4 GiB, accepted.
        d(0x5500, 0x8000_0000, WRITE | NEXT, 6),
        d(0x5600, 0x7fff_ffff, WRITE, 0),
        Desc::default(),
    ];
    let (allowed, _) = allowed(table, &[0, 2, 3, 5, 8], true);
    assert_eq!(allowed.refused[0], BTreeSet::from([0, 2, 3, 8]));
    assert_eq!(
        allowed.writable,
        vec![0x5500..0x8000_5500, 0x5600..0x8000_55ff]
    );
}

#[test]
fn a_chain_through_every_entry_of_the_table_is_accepted() {
    let table = (0..4)
        .map(|i| {
            d(
                0x5000 + 0x100 * u64::from(i),
                8,
                WRITE | if i < 3 { NEXT } else { 0 },
                i + 1,
            )
        })
        .collect();
    let (allowed, _) = allowed(table, &[0], true);
    assert!(allowed.refused[0].is_empty());
    assert_eq!(allowed.writable.len(), 4);
}

#[test]
fn an_avail_index_more_than_a_queue_ahead_offers_nothing() {
    let table = vec![d(0x5000, 8, WRITE, 0), Desc::default()];
    let (allowed, _) = allowed_with(table, &[0], 3, Vec::new(), true);
    assert!(allowed.writable.is_empty());
    assert!(allowed.refused[0].is_empty());
}

#[test]
fn a_device_that_only_reads_its_buffers_may_write_its_used_ring_alone() {
    let table = vec![d(0x5000, 8, WRITE, 0), Desc::default()];
    let (allowed, used) = allowed(table, &[0], false);
    assert!(allowed.writable.is_empty());
    let buffer = 0x5000..0x5001;
    assert_eq!(
        allowed.outside(std::slice::from_ref(&buffer), &[]),
        vec![buffer]
    );
    assert!(allowed.outside(&[used], &[]).is_empty());
}

#[test]
fn a_writable_buffer_over_the_rings_makes_the_check_inexact() {
    let table = vec![d(0, 64, WRITE, 0); 4];
    let (allowed, _) = allowed(table, &[0], true);
    assert!(!allowed.exact());
}
