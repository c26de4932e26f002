//! The `Vsock` device itself: construction, config space, activation, reset.

use std::io::Write;

use super::*;
use crate::testing::DriverError;
use crate::virtio::vsock::VsockError;
use crate::virtio::ActivateError;

#[test]
fn new_rejects_existing_path_naming_it() {
    let dir = TempDir::new();
    let path = dir.path().join("taken");
    std::fs::write(&path, b"").unwrap();
    let err = Vsock::new(3, &path).unwrap_err();
    assert!(matches!(&err, VsockError::SocketExists { path: p } if *p == path));
    assert!(err.to_string().contains("taken"), "{err}");
}

#[test]
fn new_names_path_it_cannot_bind() {
    let path = Path::new("/nonexistent-dir/v.sock");
    let err = Vsock::new(3, path).unwrap_err();
    assert!(matches!(err, VsockError::Bind { .. }));
    assert!(err.to_string().contains("/nonexistent-dir/v.sock"), "{err}");
}

#[test]
fn new_rejects_reserved_and_oversized_cids() {
    let dir = TempDir::new();
    for cid in [0, 1, 2, u64::from(u32::MAX), 1 << 32] {
        let err = Vsock::new(cid, &dir.path().join("v.sock")).unwrap_err();
        assert!(matches!(err, VsockError::InvalidCid { .. }), "cid {cid}");
    }
}

#[test]
fn drop_removes_socket_file() {
    let dir = TempDir::new();
    let path = dir.path().join("v.sock");
    let dev = Vsock::new(3, &path).unwrap();
    assert!(path.exists());
    drop(dev);
    assert!(!path.exists());
}

#[test]
fn config_space_is_guest_cid_le64() {
    let dir = TempDir::new();
    let dev = Vsock::new(0x1234_5678, &dir.path().join("v.sock")).unwrap();
    let mut full = [0xffu8; 8];
    dev.read_config(0, &mut full);
    assert_eq!(full, 0x1234_5678u64.to_le_bytes());
    let mut tail = [0xffu8; 4];
    dev.read_config(6, &mut tail);
    assert_eq!(
        tail,
        [0, 0, 0, 0],
        "bytes 6..8 of the CID, then past the end"
    );
    let mut far = [0xffu8; 2];
    dev.read_config(u64::MAX, &mut far);
    assert_eq!(far, [0, 0]);
}

#[test]
fn device_id_features_and_queues() {
    let dir = TempDir::new();
    let dev = Vsock::new(3, &dir.path().join("v.sock")).unwrap();
    assert_eq!(dev.device_type(), 19);
    assert_eq!(dev.avail_features(), 1 << 32);
    assert_eq!(dev.queue_max_sizes(), &[256, 256, 256]);
}

#[test]
fn activate_with_two_queues_fails() {
    let dir = TempDir::new();
    let dev = Vsock::new(3, &dir.path().join("v.sock")).unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    let queues = (0..2)
        .map(|_| DriverQueue::new(&mem, 0, 16).unwrap())
        .collect();
    let err = DeviceHarness::activate(dev, &mem, queues).err().unwrap();
    assert!(matches!(
        err,
        DriverError::Activate(ActivateError::QueueCount { got: 2, want: 3 })
    ));
}

#[test]
fn reset_closes_host_streams() {
    let mut h = Harness::new();
    let (mut s, _) = h.establish_host_initiated(52);
    h.dev.reset();
    assert!(read_to_eof(&mut s).is_empty());
}

#[test]
fn host_connect_before_activation_is_served_after_it() {
    let mut early = None;
    let mut h = Harness::build(8, |dev| {
        let mut s = UnixStream::connect(dev.uds_path()).unwrap();
        s.write_all(b"CONNECT 52\n").unwrap();
        early = Some(s);
    });
    let (req, _) = h.recv();
    assert_eq!((req.op, req.dst_port), (OP_REQUEST, 52));
}
