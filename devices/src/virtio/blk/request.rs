//! Parsing a virtio-blk descriptor chain (virtio 1.x §5.2.6) into a request, checking
//! everything a hostile driver could get wrong before any byte reaches the disk.
//!
//! Layout: a device-readable header (type, reserved, sector), then data, then one
//! device-writable status byte, the last byte of the chain. VERSION_1 means the device
//! must not assume how these are split into descriptors (§2.7.4), so the header may span
//! descriptors and the status byte may share its descriptor with read data; Linux sends
//! header, data and status in descriptors of their own.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::SECTOR_SIZE;
use crate::virtio::chain::Chain;

/// Size of `struct virtio_blk_outhdr`.
const HEADER_LEN: usize = 16;

/// The status byte that ends a request (§5.2.6): OK, IOERR or UNSUPP.
pub const STATUS_OK: u8 = status_byte(VIRTIO_BLK_S_OK);
pub const STATUS_IOERR: u8 = status_byte(VIRTIO_BLK_S_IOERR);
pub const STATUS_UNSUPP: u8 = status_byte(VIRTIO_BLK_S_UNSUPP);

/// virtio-bindings spells the status codes (0, 1, 2) as u32; the device writes one byte.
/// Only used for the constants above, so a code that did not fit would fail the build.
#[allow(clippy::cast_possible_truncation)] // the assert checks the value fits
const fn status_byte(code: u32) -> u8 {
    assert!(code <= u8::MAX as u32);
    code as u8
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    In,
    Out,
    Flush,
    GetId,
}

/// A guest buffer, already checked to lie inside guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: usize,
}

/// A request that passed every check; its data segments are in the `data` vector given
/// to [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestType,
    pub sector: u64,
    /// Total length of the data segments (the used length the guest reads back is a u32).
    pub data_len: u32,
    pub status: GuestAddress,
}

/// Why a chain is not a request the device runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Answer with this status (IOERR or UNSUPP) at `status`, using no data.
    Status { status: GuestAddress, code: u8 },
    /// There is no writable status byte to answer in: return the chain with length 0.
    NoStatus,
    /// The chain has no end (a loop, more descriptors than the queue holds, an unreadable
    /// descriptor or next index) or uses an indirect table, which was not negotiated:
    /// nothing in it can be trusted and the queue is broken.
    Broken,
}

/// The disk facts a request is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Most descriptors one chain may have (the queue size).
    pub max_descriptors: usize,
}

/// Parses `chain`; `descs` and `data` are scratch vectors reused between requests so the
/// fast path does not allocate.
pub fn parse(
    mem: &GuestMemoryMmap,
    chain: &Chain,
    limits: Limits,
    descs: &mut Vec<Descriptor>,
    data: &mut Vec<Segment>,
) -> Result<Request, Reject> {
    descs.clear();
    data.clear();
    // A loop, an out-of-range next index, an indirect table or a chain over 4 GiB: the
    // chain has no end we can trust (`chain::pop` found it), and the queue is broken.
    let chain = chain.descriptors().map_err(|_| Reject::Broken)?;
    for &desc in chain {
        if descs.len() == limits.max_descriptors {
            return Err(Reject::Broken);
        }
        descs.push(desc);
    }
    let last = *descs.last().ok_or(Reject::Broken)?;
    if last.has_next() {
        return Err(Reject::Broken);
    }

    // The status byte: the last byte of the last descriptor, which must be writable.
    if !last.is_write_only() || last.len() == 0 {
        return Err(Reject::NoStatus);
    }
    let status = last
        .addr()
        .checked_add(u64::from(last.len()) - 1)
        .filter(|a| mem.check_range(*a, 1))
        .ok_or(Reject::NoStatus)?;
    let ioerr = Reject::Status {
        status,
        code: STATUS_IOERR,
    };

    // Device-readable descriptors come first, then device-writable ones (§2.7.4.2).
    let first_writable = descs.iter().position(|d| d.is_write_only()).unwrap_or(0);
    if descs[first_writable..].iter().any(|d| !d.is_write_only()) {
        return Err(ioerr);
    }
    let (readable, writable) = descs.split_at(first_writable);

    // Header: the first 16 readable bytes; what follows them is OUT data.
    let mut header = [0u8; HEADER_LEN];
    let mut have = 0;
    let mut readable_data = false;
    for d in readable {
        let take = (HEADER_LEN - have).min(d.len() as usize);
        if take > 0 {
            mem.read_slice(&mut header[have..have + take], d.addr())
                .map_err(|_| ioerr)?;
            have += take;
        }
        let rest = d.len() as usize - take;
        if rest > 0 {
            readable_data = true;
            let addr = d.addr().checked_add(take as u64).ok_or(ioerr)?;
            push_segment(mem, data, addr, rest).ok_or(ioerr)?;
        }
    }
    if have < HEADER_LEN {
        return Err(ioerr);
    }
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());

    let kind = match kind {
        VIRTIO_BLK_T_IN => RequestType::In,
        VIRTIO_BLK_T_OUT => RequestType::Out,
        VIRTIO_BLK_T_FLUSH => RequestType::Flush,
        VIRTIO_BLK_T_GET_ID => RequestType::GetId,
        _ => {
            return Err(Reject::Status {
                status,
                code: STATUS_UNSUPP,
            })
        }
    };

    match kind {
        // The device writes the data: a readable data buffer is a read into read-only
        // memory.
        RequestType::In | RequestType::GetId => {
            if readable_data {
                return Err(ioerr);
            }
            for d in &writable[..writable.len() - 1] {
                push_segment(mem, data, d.addr(), d.len() as usize).ok_or(ioerr)?;
            }
            if last.len() > 1 {
                push_segment(mem, data, last.addr(), last.len() as usize - 1).ok_or(ioerr)?;
            }
        }
        // The device only reads (OUT) or uses no data (FLUSH): the status byte must be the
        // only writable byte.
        RequestType::Out | RequestType::Flush => {
            if writable.len() > 1 || last.len() > 1 {
                return Err(ioerr);
            }
        }
    }
    let data_len: u64 = data.iter().map(|s| s.len as u64).sum();

    // virtio-queue ends a chain before 4 GiB, so this holds; checked all the same, since
    // the length is guest-made and goes back to the guest as a u32.
    let data_len = u32::try_from(data_len).map_err(|_| ioerr)?;

    if matches!(kind, RequestType::In | RequestType::Out) {
        let data_len = u64::from(data_len);
        let sectors = data_len / SECTOR_SIZE;
        let in_range = sector
            .checked_add(sectors)
            .is_some_and(|end| end <= limits.capacity);
        if !data_len.is_multiple_of(SECTOR_SIZE) || !in_range {
            return Err(ioerr);
        }
    }
    Ok(Request {
        kind,
        sector,
        data_len,
        status,
    })
}

/// Adds a data segment if it lies inside guest memory.
fn push_segment(
    mem: &GuestMemoryMmap,
    data: &mut Vec<Segment>,
    addr: GuestAddress,
    len: usize,
) -> Option<()> {
    if len > 0 {
        mem.check_range(addr, len).then_some(())?;
        data.push(Segment { addr, len });
    }
    Some(())
}
