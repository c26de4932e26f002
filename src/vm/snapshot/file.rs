//! The state file: a fixed header, then the body.
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `VMMSNAP\n` |
//! | 4 | format version, little endian ([`FORMAT_VERSION`]) |
//! | 4 | CRC-32 (IEEE) of the body |
//! | 8 | body length in bytes |
//! | 32 | version of the vmm that wrote it, NUL padded (for messages only) |
//! | … | body: the [`super::VmSnapshot`], postcard-encoded |
//!
//! Every check runs before the body is decoded, so a file from another format version, a
//! truncated or a corrupt one is refused with a line saying which, never half-read.
//!
//! Why postcard: a compact, documented wire format (stable since 1.0) kept by an active
//! project, with no schema to generate; KVM's structs go in as the bytes kvm-bindings'
//! serde gives them, so the body is about their size (a 1-vCPU VM: ~10 KiB). JSON would
//! triple that and hex-encode the XSAVE area; bincode is no longer maintained. A change
//! to the body's types is a new [`FORMAT_VERSION`]: postcard is not self-describing, so
//! an old body cannot be read with new types, and the version check says so first.

use std::io::{Read, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::atomic_file::Pending;
use super::error::SnapshotError;

pub const MAGIC: [u8; 8] = *b"VMMSNAP\n";
/// The body's layout. Bump it whenever a type in `VmSnapshot` changes.
/// 2: virtio devices' states (transport and device, window and IRQ).
/// 3: each transport's ConfigGeneration (disks swapped at run time); device state 2.
pub const FORMAT_VERSION: u32 = 3;
const VMM_VERSION_LEN: usize = 32;
pub const HEADER_LEN: usize = 8 + 4 + 4 + 8 + VMM_VERSION_LEN;
/// A state file is KVM's structs for each vCPU and a few devices: far below this. A larger
/// file is not one of ours, and is refused before it is read into memory.
const STATE_LIMIT_MIB: u64 = 64;
const VMM_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The header and body of `body`, ready to be written.
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, SnapshotError> {
    let body = postcard::to_allocvec(body).map_err(SnapshotError::Encode)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut version = [0u8; VMM_VERSION_LEN];
    let n = VMM_VERSION.len().min(VMM_VERSION_LEN);
    version[..n].copy_from_slice(&VMM_VERSION.as_bytes()[..n]);
    out.extend_from_slice(&version);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The body of the state file `bytes` (read from `path`, named in errors), after checking
/// its magic, format version, length and checksum.
pub fn decode<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, SnapshotError> {
    let path_buf = || path.to_path_buf();
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::NotAStateFile { path: path_buf() });
    }
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::Truncated {
            path: path_buf(),
            found: bytes.len() as u64,
            expected: HEADER_LEN as u64,
        });
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[16..24]);
    let (format, crc, body_len) = (u32_at(8), u32_at(12), u64::from_le_bytes(len_bytes));
    if format != FORMAT_VERSION {
        let made_by = &bytes[24..HEADER_LEN];
        let end = made_by
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(made_by.len());
        return Err(SnapshotError::OtherFormat {
            path: path_buf(),
            found: format,
            expected: FORMAT_VERSION,
            made_by: String::from_utf8_lossy(&made_by[..end]).into_owned(),
            ours: VMM_VERSION,
        });
    }
    let body = &bytes[HEADER_LEN..];
    let have = body.len() as u64;
    if have < body_len {
        return Err(SnapshotError::Truncated {
            path: path_buf(),
            found: bytes.len() as u64,
            expected: HEADER_LEN as u64 + body_len,
        });
    }
    if have > body_len {
        return Err(SnapshotError::TrailingData {
            path: path_buf(),
            extra: have - body_len,
        });
    }
    let found = crc32fast::hash(body);
    if found != crc {
        return Err(SnapshotError::Corrupt {
            path: path_buf(),
            found,
            expected: crc,
        });
    }
    postcard::from_bytes(body).map_err(|source| SnapshotError::Undecodable {
        path: path_buf(),
        source,
    })
}

/// Writes `body` as the state file for `path` into a new file beside it; committing the
/// result renames it over `path`, which is never a half-written state file.
pub fn write<T: Serialize>(path: &Path, body: &T) -> Result<Pending, SnapshotError> {
    let bytes = encode(body)?;
    super::atomic_file::prepare(path, |file, tmp| {
        file.write_all(&bytes)
            .map_err(SnapshotError::write("writing the snapshot state file", tmp))
    })
}

/// Reads and checks the state file at `path`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, SnapshotError> {
    use devices::user_file::{open, Allowed};
    let mut file = open(path, false, Allowed::RegularFile).map_err(SnapshotError::OpenState)?;
    let read_err = |source| SnapshotError::ReadState {
        path: path.to_path_buf(),
        source,
    };
    let len = file.metadata().map_err(read_err)?.len();
    if len > STATE_LIMIT_MIB << 20 {
        return Err(SnapshotError::StateTooLarge {
            path: path.to_path_buf(),
            limit_mib: STATE_LIMIT_MIB,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes).map_err(read_err)?;
    decode(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Body {
        name: String,
        words: Vec<u64>,
    }

    fn body() -> Body {
        Body {
            name: "vm".into(),
            words: (0..100).collect(),
        }
    }

    fn path() -> &'static Path {
        Path::new("state")
    }

    #[test]
    fn a_state_file_reads_back_what_was_written() {
        let bytes = encode(&body()).unwrap();
        assert_eq!(&bytes[..8], b"VMMSNAP\n");
        assert_eq!(decode::<Body>(path(), &bytes).unwrap(), body());
    }

    #[test]
    fn another_format_version_is_refused_naming_both_versions() {
        let mut bytes = encode(&body()).unwrap();
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let e = decode::<Body>(path(), &bytes).unwrap_err();
        assert!(
            matches!(e, SnapshotError::OtherFormat { found, .. } if found == FORMAT_VERSION + 1)
        );
        assert!(
            e.to_string()
                .contains(&format!("reads version {FORMAT_VERSION} only")),
            "{e}"
        );
        assert!(e.is_bad_input());
    }

    #[test]
    fn a_truncated_body_is_refused_as_truncated() {
        let bytes = encode(&body()).unwrap();
        let e = decode::<Body>(path(), &bytes[..bytes.len() - 1]).unwrap_err();
        assert!(matches!(e, SnapshotError::Truncated { .. }), "{e}");
    }

    #[test]
    fn a_truncated_header_is_refused_as_truncated() {
        let bytes = encode(&body()).unwrap();
        let e = decode::<Body>(path(), &bytes[..HEADER_LEN - 1]).unwrap_err();
        assert!(matches!(e, SnapshotError::Truncated { .. }), "{e}");
    }

    #[test]
    fn a_flipped_body_bit_is_refused_by_the_checksum() {
        let mut bytes = encode(&body()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let e = decode::<Body>(path(), &bytes).unwrap_err();
        assert!(matches!(e, SnapshotError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn bytes_after_the_body_are_refused() {
        let mut bytes = encode(&body()).unwrap();
        bytes.push(0);
        let e = decode::<Body>(path(), &bytes).unwrap_err();
        assert!(
            matches!(e, SnapshotError::TrailingData { extra: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_the_magic_is_not_a_state_file() {
        let e = decode::<Body>(path(), b"{\"json\": true}").unwrap_err();
        assert!(matches!(e, SnapshotError::NotAStateFile { .. }), "{e}");
        let e = decode::<Body>(path(), b"").unwrap_err();
        assert!(matches!(e, SnapshotError::NotAStateFile { .. }), "{e}");
    }

    #[test]
    fn a_body_of_other_types_with_a_good_checksum_is_undecodable() {
        let bytes = encode(&7u8).unwrap();
        let e = decode::<Body>(path(), &bytes).unwrap_err();
        assert!(matches!(e, SnapshotError::Undecodable { .. }), "{e}");
        assert!(e.is_bad_input());
    }

    #[test]
    fn the_header_names_the_vmm_version_that_wrote_it() {
        let bytes = encode(&body()).unwrap();
        assert!(bytes[24..HEADER_LEN].starts_with(VMM_VERSION.as_bytes()));
    }
}
