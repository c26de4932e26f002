//! End to end: virtio-vsock with Firecracker's host side. A guest connection to host
//! port 5000 reaches the Unix listener at `<uds>_5000`; a host process that connects to
//! `<uds>` and writes `CONNECT 5001` reaches the guest's listener on port 5001.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::{scratch_dir, skip_without_kvm, spawn_guest};

const GUEST_CID: &str = "42";
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads exactly n bytes or what came before EOF/timeout.
fn read_n(stream: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    buf.truncate(got);
    buf
}

/// Accepts one connection within `timeout`.
fn accept_within(listener: &UnixListener, timeout: Duration) -> Option<UnixStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return Some(s);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    None
}

#[test]
fn vsock_streams_flow_both_ways_through_the_unix_socket() {
    if skip_without_kvm("vsock_streams_flow_both_ways_through_the_unix_socket") {
        return;
    }
    let dir = scratch_dir("virtio-vsock");
    let uds = dir.join("v.sock");
    let uds_str = uds.to_string_lossy().into_owned();
    // Guest-initiated connections to port 5000 land here.
    let listener = UnixListener::bind(format!("{uds_str}_5000")).unwrap();
    let host_server = std::thread::spawn(move || {
        let mut s = accept_within(&listener, Duration::from_secs(5))?;
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let ping = read_n(&mut s, b"ping-from-guest".len());
        s.write_all(b"pong-from-host").ok()?;
        // The guest shuts the stream down after reading: EOF (not a timeout) here.
        let mut byte = [0u8; 1];
        let eof = matches!(s.read(&mut byte), Ok(0));
        Some((ping, eof))
    });

    let vsock = format!("cid={GUEST_CID},uds={uds_str}");
    let mut vm = spawn_guest(&["--vsock", &vsock], "tests=vsock");
    let listening = vm.wait_for_line("vmmtest: vsock listening port=5001", Duration::from_secs(5));
    let mut host_client = None;
    if listening {
        let mut s = UnixStream::connect(&uds).expect("connect to the vsock Unix socket");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(b"CONNECT 5001\n").unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut ok_line = String::new();
        let _ = reader.read_line(&mut ok_line);
        s.write_all(b"hello-from-host").unwrap();
        let echo = read_n(&mut s, b"hello-from-host".len());
        drop(reader);
        drop(s); // the guest sees the stream close
        host_client = Some((ok_line, echo));
    }
    let run = vm.finish(common::GUEST_TIMEOUT);
    let server = host_server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(listening, "the guest never listened: {}", run.describe());
    assert_eq!(run.fact("vsock_cid"), Some(GUEST_CID), "{}", run.describe());
    let (ping, eof) =
        server.unwrap_or_else(|| panic!("no guest connection on <uds>_5000: {}", run.describe()));
    assert_eq!(ping, b"ping-from-guest", "{}", run.describe());
    assert!(eof, "the guest's SHUTDOWN did not close the host end");
    assert_eq!(
        run.fact("vsock_rx"),
        Some("pong-from-host"),
        "{}",
        run.describe()
    );

    let (ok_line, echo) = host_client.unwrap();
    assert!(
        ok_line.starts_with("OK "),
        "CONNECT got {ok_line:?}: {}",
        run.describe()
    );
    let host_port: u32 = ok_line[3..].trim().parse().expect("OK <port>");
    assert_eq!(
        run.fact("vsock_host_port"),
        Some(host_port.to_string().as_str()),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("vsock_host_rx"),
        Some("hello-from-host"),
        "{}",
        run.describe()
    );
    assert_eq!(echo, b"hello-from-host", "the guest's echo");
    assert_eq!(run.code(), Some(0), "{}", run.describe());
}

#[test]
fn vsock_device_honours_the_guests_credit() {
    if skip_without_kvm("vsock_device_honours_the_guests_credit") {
        return;
    }
    let dir = scratch_dir("virtio-vsock-credit");
    let uds = dir.join("v.sock");
    let vsock = format!("cid={GUEST_CID},uds={}", uds.to_string_lossy());
    let mut vm = spawn_guest(&["--vsock", &vsock], "tests=vsockcredit");
    let listening = vm.wait_for_line("vmmtest: vsock listening port=5002", Duration::from_secs(5));
    let mut ok_line = String::new();
    if listening {
        let mut s = UnixStream::connect(&uds).expect("connect to the vsock Unix socket");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(b"CONNECT 5002\n").unwrap();
        let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut ok_line);
        // 96 bytes at once, three times the 32 bytes of buffer the guest advertises.
        let data: Vec<u8> = (0..96u8).map(|i| b'A' + i % 26).collect();
        s.write_all(&data).unwrap();
        // Keep the stream open until the guest has it all (or gives up).
        let _ = vm.wait_for_line("vmmtest: fact vsock_credit_total=96", IO_TIMEOUT);
    }
    let run = vm.finish(common::GUEST_TIMEOUT);
    let _ = std::fs::remove_dir_all(&dir);

    assert!(listening, "the guest never listened: {}", run.describe());
    assert!(
        ok_line.starts_with("OK "),
        "CONNECT got {ok_line:?}: {}",
        run.describe()
    );
    assert_eq!(
        run.fact("vsock_credit_total"),
        Some("96"),
        "{}",
        run.describe()
    );
    assert_eq!(
        run.fact("vsock_credit_data_ok"),
        Some("1"),
        "{}",
        run.describe()
    );
    let max: u32 = run
        .fact("vsock_credit_max_unconsumed")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        max <= 32,
        "the device sent {max} bytes over a 32-byte credit"
    );
    assert_eq!(run.code(), Some(0), "{}", run.describe());
}
