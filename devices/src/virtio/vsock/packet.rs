//! The virtio-vsock packet header (virtio 1.2 §5.10.6) and moving packets between the
//! device and descriptor chains.
//!
//! The header is decoded field by field from little-endian bytes rather than cast from
//! guest memory, so a hostile guest can only ever hand us a value, never a layout.

use std::io::{self, Read, Write};

/// The host's well-known CID; every packet the guest sends to us must be addressed to it.
pub const HOST_CID: u64 = 2;
/// Size of `struct virtio_vsock_hdr` on the wire.
pub const HDR_SIZE: usize = 44;
/// Largest payload accepted in one guest packet. Linux never sends more than its
/// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE (64 KiB); anything larger is a broken or hostile driver.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The only socket type we implement: SOCK_STREAM.
pub const TYPE_STREAM: u16 = 1;

pub const OP_REQUEST: u16 = 1;
pub const OP_RESPONSE: u16 = 2;
pub const OP_RST: u16 = 3;
pub const OP_SHUTDOWN: u16 = 4;
pub const OP_RW: u16 = 5;
pub const OP_CREDIT_UPDATE: u16 = 6;
pub const OP_CREDIT_REQUEST: u16 = 7;

/// SHUTDOWN flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// `struct virtio_vsock_hdr`, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

/// The `N` header bytes at offset `at` (a constant field offset inside the header).
fn field<const N: usize>(b: &[u8; HDR_SIZE], at: usize) -> [u8; N] {
    std::array::from_fn(|i| b[at + i])
}

impl Header {
    pub fn from_bytes(b: &[u8; HDR_SIZE]) -> Self {
        let u64_at = |o: usize| u64::from_le_bytes(field(b, o));
        let u32_at = |o: usize| u32::from_le_bytes(field(b, o));
        let u16_at = |o: usize| u16::from_le_bytes(field(b, o));
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    pub fn to_bytes(self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    /// The header of a RST answering `self` (ports and CIDs swapped, no credit).
    pub fn rst_reply(&self) -> Header {
        Header {
            src_cid: self.dst_cid,
            dst_cid: self.src_cid,
            src_port: self.dst_port,
            dst_port: self.src_port,
            type_: TYPE_STREAM,
            op: OP_RST,
            ..Header::default()
        }
    }
}

/// Why a guest tx chain does not hold a usable packet.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("descriptor chain holds {0} readable bytes, less than a vsock header")]
    ShortHeader(usize),
    #[error("packet payload of {} bytes exceeds the {MAX_PAYLOAD}-byte limit", hdr.len)]
    PayloadTooLong { hdr: Header },
    #[error("header announces {} payload bytes, the chain holds {avail}", hdr.len)]
    PayloadBeyondChain { hdr: Header, avail: usize },
    #[error("cannot read the packet from guest memory")]
    Read(#[source] io::Error),
}

impl PacketError {
    /// The header, when it was read before the packet turned out to be bad: the sender can
    /// then be told with a RST.
    pub fn header(&self) -> Option<&Header> {
        match self {
            PacketError::PayloadTooLong { hdr } | PacketError::PayloadBeyondChain { hdr, .. } => {
                Some(hdr)
            }
            _ => None,
        }
    }
}

/// Reads a guest packet from a tx chain holding `avail` readable bytes. The payload
/// replaces the contents of `payload`, which the caller reuses across packets.
pub fn read_packet<R: Read>(
    r: &mut R,
    avail: usize,
    payload: &mut Vec<u8>,
) -> Result<Header, PacketError> {
    if avail < HDR_SIZE {
        return Err(PacketError::ShortHeader(avail));
    }
    let mut raw = [0u8; HDR_SIZE];
    r.read_exact(&mut raw).map_err(PacketError::Read)?;
    let hdr = Header::from_bytes(&raw);
    let len = hdr.len as usize;
    if len > MAX_PAYLOAD {
        return Err(PacketError::PayloadTooLong { hdr });
    }
    if len > avail - HDR_SIZE {
        return Err(PacketError::PayloadBeyondChain {
            hdr,
            avail: avail - HDR_SIZE,
        });
    }
    payload.resize(len, 0);
    r.read_exact(payload).map_err(PacketError::Read)?;
    Ok(hdr)
}

/// Writes a packet for the guest into an rx chain; `hdr.len` must equal `payload.len()`
/// and the chain must have room for both (the caller sized `payload` from it).
pub fn write_packet<W: Write>(w: &mut W, hdr: &Header, payload: &[u8]) -> io::Result<usize> {
    w.write_all(&hdr.to_bytes())?;
    w.write_all(payload)?;
    Ok(HDR_SIZE + payload.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1234,
            dst_port: 52,
            len: 5,
            type_: TYPE_STREAM,
            op: OP_RW,
            flags: 0,
            buf_alloc: 65536,
            fwd_cnt: 7,
        }
    }

    #[test]
    fn header_round_trips_through_le_bytes() {
        let hdr = sample();
        let bytes = hdr.to_bytes();
        assert_eq!(&bytes[0..8], &3u64.to_le_bytes());
        assert_eq!(&bytes[30..32], &OP_RW.to_le_bytes());
        assert_eq!(Header::from_bytes(&bytes), hdr);
    }

    #[test]
    fn read_packet_returns_header_and_payload() {
        let mut wire = sample().to_bytes().to_vec();
        wire.extend_from_slice(b"hello");
        let mut payload = Vec::new();
        let hdr = read_packet(&mut wire.as_slice(), wire.len(), &mut payload).unwrap();
        assert_eq!(hdr, sample());
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn read_packet_rejects_short_header() {
        let wire = [0u8; 20];
        let err = read_packet(&mut wire.as_slice(), wire.len(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, PacketError::ShortHeader(20)));
        assert!(err.header().is_none());
    }

    #[test]
    fn read_packet_rejects_len_beyond_chain_and_keeps_header_for_rst() {
        let wire = sample().to_bytes();
        let err = read_packet(&mut wire.as_slice(), wire.len(), &mut Vec::new()).unwrap_err();
        assert!(matches!(
            err,
            PacketError::PayloadBeyondChain { avail: 0, .. }
        ));
        assert_eq!(err.header(), Some(&sample()));
    }

    #[test]
    fn read_packet_rejects_len_over_limit() {
        let mut hdr = sample();
        hdr.len = u32::MAX;
        let wire = hdr.to_bytes();
        let err = read_packet(&mut wire.as_slice(), usize::MAX, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, PacketError::PayloadTooLong { .. }));
    }

    #[test]
    fn rst_reply_swaps_addresses() {
        let rst = sample().rst_reply();
        assert_eq!((rst.src_cid, rst.dst_cid), (HOST_CID, 3));
        assert_eq!((rst.src_port, rst.dst_port), (52, 1234));
        assert_eq!((rst.op, rst.len, rst.buf_alloc), (OP_RST, 0, 0));
    }
}
