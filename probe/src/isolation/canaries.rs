//! Looks for the canaries the host planted, one per kind of host resource a workload could
//! reach: a process, SysV IPC objects, the hostname, a file, an abstract unix socket and a
//! loopback TCP port. Seeing one means the level shares that resource with the host.

use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::time::Duration;

use super::namespaces;
use crate::report::{Canaries, CanarySight};

/// How long a TCP connect may take: a firewall that drops the SYN must not hang the probe.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The kernel keeps 15 bytes of a process name (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

pub fn look_for(canaries: &Canaries) -> CanarySight {
    CanarySight {
        process: process_named(&canaries.process_name),
        shm: shm_exists(canaries.shm_key),
        msg_queue: msg_queue_exists(canaries.msg_key),
        hostname: namespaces::hostname() == canaries.hostname,
        tmp_file: file_opens(&canaries.tmp_file, &canaries.process_name),
        abstract_socket: abstract_socket_answers(&canaries.abstract_socket),
        tcp_port: loopback_port_answers(canaries.tcp_port),
    }
}

/// Some /proc/<pid>/comm is `name` (as the kernel stores it: at most 15 bytes).
fn process_named(name: &str) -> bool {
    pid_named(name).is_some()
}

/// The PID of a process whose comm is `name`.
fn pid_named(name: &str) -> Option<u32> {
    let name = &name.as_bytes()[..name.len().min(COMM_LEN)];
    if name.is_empty() {
        return None;
    }
    namespaces::pids().into_iter().find(|pid| {
        fs::read(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.strip_suffix(b"\n").unwrap_or(&comm) == name)
    })
}

/// `shmget(key, 0, 0)` finds a segment. Key 0 is IPC_PRIVATE, which names no segment.
fn shm_exists(key: i32) -> bool {
    // SAFETY: without IPC_CREAT, shmget only looks the key up; no memory is touched.
    key != libc::IPC_PRIVATE && unsafe { libc::shmget(key, 0, 0) } >= 0
}

/// `msgget(key, 0)` finds a queue. Key 0 is IPC_PRIVATE, which would *create* a queue.
fn msg_queue_exists(key: i32) -> bool {
    // SAFETY: without IPC_CREAT (and not IPC_PRIVATE), msgget only looks the key up.
    key != libc::IPC_PRIVATE && unsafe { libc::msgget(key, 0) } >= 0
}

/// The file opens directly, or through the root of a host process: /proc/1/root, or that
/// of the host's canary process. A chrooted process that shares the host's /proc reaches
/// the host's root that way, so a chroot alone is no wall. (The canary's root serves where
/// PID 1's is closed to us, e.g. when PID 1 belongs to an outer sandbox.)
fn file_opens(path: &str, canary_process: &str) -> bool {
    if path.is_empty() {
        return false;
    }
    let relative = path.trim_start_matches('/');
    let mut candidates = vec![path.to_owned(), format!("/proc/1/root/{relative}")];
    if let Some(pid) = pid_named(canary_process) {
        candidates.push(format!("/proc/{pid}/root/{relative}"));
    }
    candidates.iter().any(|p| {
        OpenOptions::new()
            .read(true)
            // Never block on a FIFO or a device that happens to have the name.
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
            .is_ok()
    })
}

/// `connect` to the abstract unix socket `name` succeeds (abstract names belong to the
/// network namespace, not to the filesystem).
fn abstract_socket_answers(name: &str) -> bool {
    UnixAddr::from_abstract_name(name.as_bytes())
        .and_then(|addr| UnixStream::connect_addr(&addr))
        .is_ok()
}

/// `connect` to 127.0.0.1:port succeeds.
fn loopback_port_answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    port != 0 && TcpStream::connect_timeout(&addr, TCP_CONNECT_TIMEOUT).is_ok()
}
