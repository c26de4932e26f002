//! The container's first process, from the raw `clone` to its `exec`: it waits for the
//! runtime's word (id maps written, cgroup joined, link given), then sets itself up
//! ([`setup_and_exec`]) and execs. Runs in the child of a single-threaded runtime, so only
//! what is safe between `clone` and `exec` belongs here. The runtime's side is the parent
//! module.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use edge::{error_chain, exit_code};

use super::Stdio;
use crate::config::ContainerConfig;
use crate::error::{ContainerError, Result};
use crate::hooks;
use crate::init::{setup_and_exec, Extras};
use crate::rootfs::HostInfo;
use crate::sys::linux::LinuxSyscall;
use crate::sys::BpfInstruction;

/// The child's ends of the runtime's pipes, and the runtime's ends to close.
pub(super) struct ChildPipes {
    pub(super) sync_r: File,
    pub(super) err_w: File,
    pub(super) parent_ends: [i32; 2],
}

/// The descriptors of an OCI `create`'s first process (see [`CreateOptions`]).
pub(super) struct ChildGate {
    pub(super) exec_fifo: RawFd,
}

/// The container's first process: wait for the runtime, set up, exec. Never returns.
pub(super) fn child_main(
    cfg: &ContainerConfig,
    host: HostInfo,
    filters: &[Vec<BpfInstruction>],
    pipes: ChildPipes,
    stdio: Stdio,
    child_mask: &libc::sigset_t,
    gate: Option<ChildGate>,
) -> ! {
    let ChildPipes {
        mut sync_r,
        err_w,
        parent_ends,
    } = pipes;
    for fd in parent_ends {
        // SAFETY: these are the runtime's ends of the pipes, duplicated into this process
        // by clone; this process never uses them, and never returns to code that would.
        unsafe { libc::close(fd) };
    }
    // A run's process dies with the runtime. A created container's must outlive `create`,
    // and needs no death signal before that either: it waits on the sync pipe for the
    // release and for the commit, and a runtime that dies closes it (EOF: it exits).
    if gate.is_none() {
        // SAFETY: integer arguments only.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
    }
    let Some(state) = read_release(&mut sync_r) else {
        // SAFETY: _exit ends this process without running the parent's destructors.
        unsafe { libc::_exit(exit_code::FAILED.into()) };
    };
    let mut keep = vec![sync_r.as_raw_fd(), err_w.as_raw_fd()];
    if let Some(g) = &gate {
        keep.push(g.exec_fifo);
    }
    let console = stdio.console_socket.as_ref().map(AsRawFd::as_raw_fd);
    keep.extend(console);
    let err_w = std::cell::RefCell::new(Some(err_w));
    let placed = redirect_stdio(stdio).and_then(|socket| close_inherited(keep).map(|()| socket));
    let err = match placed {
        // Held open until the exec (close-on-exec) or the exit.
        Ok(_console_socket) => {
            let sys = LinuxSyscall::new(*child_mask);
            let mut wait_for_start = || -> Result<()> {
                let Some(gate) = &gate else { return Ok(()) };
                // Ready: the empty report ends `create`'s wait; then the commit.
                if let Some(mut w) = err_w.borrow_mut().take() {
                    let _ = w.write_all(&[0]);
                }
                let mut committed = [0u8; 1];
                if sync_r.read_exact(&mut committed).is_err() {
                    // `create` failed or died before recording the container: nobody
                    // could start or delete it.
                    // SAFETY: as above.
                    unsafe { libc::_exit(exit_code::FAILED.into()) };
                }
                // From here the container outlives `create`.
                // `start` has opened the FIFO once this open returns; it waits for the byte,
                // so the startContainer hooks end before its poststart hooks begin.
                let mut fifo = open_exec_fifo(gate.exec_fifo)?;
                hooks::run("startContainer", &cfg.hooks.start_container, &state)?;
                fifo.write_all(b"0")
                    .map_err(|e| ContainerError::sys("write to the exec FIFO", e))
            };
            let mut create_container =
                || hooks::run("createContainer", &cfg.hooks.create_container, &state);
            let extras = Extras {
                before_root_switch: gate
                    .is_some()
                    .then_some(&mut create_container as &mut dyn FnMut() -> Result<()>),
                seccomp: filters,
                console_socket: console,
                gate: gate
                    .is_some()
                    .then_some(&mut wait_for_start as &mut dyn FnMut() -> Result<()>),
                outlives_runtime: gate.is_some(),
            };
            match setup_and_exec(&sys, cfg, host, extras) {
                Err(e) => e,
                Ok(never) => match never {},
            }
        }
        Err(e) => e,
    };
    match err_w.borrow_mut().take() {
        Some(mut w) => {
            let kind = if err.is_bad_input() { 2u8 } else { 1u8 };
            let mut report = vec![kind];
            report.extend_from_slice(error_chain(&err).as_bytes());
            let _ = w.write_all(&report);
        }
        // After `create` returned, the container's stderr is the only one left to tell.
        None => eprintln!("container {}: {}", cfg.id, error_chain(&err)),
    }
    // SAFETY: as above.
    unsafe { libc::_exit(exit_code::FAILED.into()) }
}

/// Closes every descriptor above stdio but `keep`: what the runtime had open (the lock on
/// an OCI container's state directory, say) must not live on in a process that waits for
/// `start` before it execs.
pub(crate) fn close_inherited(mut keep: Vec<RawFd>) -> Result<()> {
    keep.retain(|&fd| fd > 2);
    keep.sort_unstable();
    let mut first = 3u32;
    for fd in keep.into_iter().map(|fd| fd as u32).chain([u32::MAX]) {
        if fd > first {
            // SAFETY: close_range only closes descriptors; none of those closed is used later.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0u32) };
            if rc != 0 {
                return Err(ContainerError::sys(
                    "close the runtime's descriptors",
                    std::io::Error::last_os_error(),
                ));
            }
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// The runtime's release: a 1, then the length (u32, little-endian) and bytes of the
/// state for the hooks (empty unless created by [`create`]). None when the runtime went
/// away instead.
fn read_release(sync_r: &mut File) -> Option<Vec<u8>> {
    let mut head = [0u8; 5];
    sync_r.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut state = vec![0u8; len];
    sync_r.read_exact(&mut state).ok()?;
    Some(state)
}

/// Blocks until `start` opens the exec FIFO (held as an `O_PATH` descriptor); the byte
/// written to it then tells `start` the workload is about to run.
fn open_exec_fifo(fifo: RawFd) -> Result<File> {
    let path = format!("/proc/self/fd/{fifo}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| {
            ContainerError::sys(
                format!("open the exec FIFO through {path} (is /proc mounted in the container?)"),
                e,
            )
        })
}

/// Puts the given descriptors on 0, 1 and 2. Each is first copied above 2, so one that
/// happens to sit on a standard number is not overwritten before it is placed (an init
/// may run with 0-2 closed); dup2 leaves the placed copies open across exec. Gives back
/// the console socket, for the terminal made later.
pub(crate) fn redirect_stdio(stdio: Stdio) -> Result<Option<OwnedFd>> {
    let mut moved = Vec::new();
    for (fd, target) in [(stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
        let Some(fd) = fd else { continue };
        // SAFETY: `fd` is an open descriptor; the copy is a new descriptor owned below.
        let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if copy < 0 {
            return Err(ContainerError::sys(
                format!("copy the descriptor for {target}"),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
        moved.push((unsafe { OwnedFd::from_raw_fd(copy) }, target));
    }
    for (fd, target) in moved {
        // SAFETY: `fd` is an open descriptor; dup2 onto a standard stream number.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return Err(ContainerError::sys(
                format!("redirect descriptor {target}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(stdio.console_socket)
}
