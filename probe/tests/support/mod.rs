//! Helpers of the probe's integration tests: the built `vmm-probe`, names no one else uses,
//! and real canaries planted on this host (removed when dropped), so a test can check the
//! probe sees what is there and does not see what is not.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use probe::report::Canaries;

pub const PROBE: &str = env!("CARGO_BIN_EXE_vmm-probe");

/// A number no other test, run or process is likely to pick: pid, time and a counter,
/// mixed (splitmix64's finaliser).
pub fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z =
        nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A process name of at most 15 bytes (the kernel's limit), unique.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}{:08x}", unique() as u32)
}

/// A SysV IPC key that is neither IPC_PRIVATE (0) nor negative.
pub fn unique_key() -> i32 {
    (unique() as i32 & 0x3fff_ffff) | 0x4000_0000
}

/// A loopback port nothing listens on (just bound and released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// Canaries with fresh names, none of which exists.
pub fn absent_canaries() -> Canaries {
    Canaries {
        process_name: unique_name("absent-"),
        shm_key: unique_key(),
        msg_key: unique_key(),
        hostname: unique_name("absent-host-"),
        tmp_file: format!("/tmp/{}", unique_name("vmm-probe-absent-")),
        abstract_socket: unique_name("vmm-probe-absent-"),
        tcp_port: free_port(),
    }
}

/// `vmm-probe hold NAME`, once it has said `holding`; killed when dropped.
pub struct Holder(Child);

impl Holder {
    pub fn start(name: &str) -> Holder {
        let mut child = Command::new(PROBE)
            .args(["hold", name])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "holding\n");
        Holder(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every kind of canary, really there on this host, as the host side of `vmm compare`
/// plants them. The hostname is this host's own (the test cannot rename the host).
pub struct Planted {
    pub canaries: Canaries,
    _holder: Holder,
    shm_id: i32,
    msg_id: i32,
    tmp_file: PathBuf,
    _socket: UnixListener,
    _port: TcpListener,
}

impl Planted {
    pub fn new() -> Planted {
        let process_name = unique_name("canary-");
        let holder = Holder::start(&process_name);
        let shm_key = unique_key();
        // SAFETY: creates a new 4 KiB segment; nothing is attached.
        let shm_id =
            unsafe { libc::shmget(shm_key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(shm_id >= 0, "shmget: {}", std::io::Error::last_os_error());
        let msg_key = unique_key();
        // SAFETY: creates a new, empty message queue.
        let msg_id = unsafe { libc::msgget(msg_key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(msg_id >= 0, "msgget: {}", std::io::Error::last_os_error());
        let tmp_file = PathBuf::from(format!("/tmp/{}", unique_name("vmm-probe-canary-")));
        fs::write(&tmp_file, b"canary").unwrap();
        let abstract_socket = unique_name("vmm-probe-canary-");
        let socket =
            UnixListener::bind_addr(&UnixAddr::from_abstract_name(&abstract_socket).unwrap())
                .unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        Planted {
            canaries: Canaries {
                process_name,
                shm_key,
                msg_key,
                hostname: hostname.trim().to_owned(),
                tmp_file: tmp_file.to_string_lossy().into_owned(),
                abstract_socket,
                tcp_port: port.local_addr().unwrap().port(),
            },
            _holder: holder,
            shm_id,
            msg_id,
            tmp_file,
            _socket: socket,
            _port: port,
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID on the ids this value created; no buffer is passed.
        unsafe {
            libc::shmctl(self.shm_id, libc::IPC_RMID, std::ptr::null_mut());
            libc::msgctl(self.msg_id, libc::IPC_RMID, std::ptr::null_mut());
        }
        let _ = fs::remove_file(&self.tmp_file);
    }
}
