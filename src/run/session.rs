//! One workload run through the guest agent: create it, attach its three standard streams
//! (one connection each), start it, pass `vmm`'s stdin and signals on to it and its output
//! back, and wait for its end.

use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::net::Shutdown;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use agent_protocol::protocol::{
    ConsoleSize, LinkAddresses, Op, RootfsSource, StartReply, StreamKind, WaitReply,
};
use runtime::config::{ContainerConfig, ProcessConfig};

use super::agent_client::{attach, Control};
use super::error::RunError;
use super::signals::ForwardedSignals;
use super::timings::Timings;

/// After the workload ended, how long its output may take to arrive in full (the agent
/// has written and closed both streams before it answers `wait`; this covers the path
/// through the VMM).
const OUTPUT_DRAIN: Duration = Duration::from_secs(10);

/// What the session watches besides the agent: the VM's end, when there is a VM of ours.
pub struct Watch<'a> {
    pub signals: &'a ForwardedSignals,
    /// Readable when the VM has ended; `None` for a VM this run does not own.
    pub vm_ended: Option<RawFd>,
    /// Hold the created workload until an OCI runtime's `start` (vmm-runc's microVM
    /// levels).
    pub hold: Option<&'a Hold>,
}

/// An OCI `create`'s hold: once the workload is created in the guest, say so on
/// `ready_fd` (one byte, then closed), then wait until `start` opens the FIFO, and write
/// it the byte that tells `start` the workload runs.
#[derive(Debug, Clone)]
pub struct Hold {
    pub fifo: std::path::PathBuf,
    pub ready_fd: Option<RawFd>,
}

/// Whether `ready_fd` was used (by the ready byte or a failure's message): it is closed
/// then, and its number may be reused.
static READY_FD_USED: AtomicBool = AtomicBool::new(false);

impl Hold {
    /// Says on `ready_fd`, in place of the ready byte, why the run failed before the
    /// workload was created. vmm-runc reports it: the run's stderr is the container's,
    /// which its caller may keep in a log that no one reads for a failed `create`.
    pub fn report_failure(&self, message: &str) {
        if let Some(fd) = self
            .ready_fd
            .filter(|_| !READY_FD_USED.swap(true, Ordering::SeqCst))
        {
            // SAFETY: as in `wait_for_start`, which has not taken it (READY_FD_USED).
            let mut ready = unsafe { std::fs::File::from_raw_fd(fd) };
            let _ = ready.write_all(message.as_bytes());
        }
    }

    fn wait_for_start(&self) -> Result<(), RunError> {
        if let Some(fd) = self
            .ready_fd
            .filter(|_| !READY_FD_USED.swap(true, Ordering::SeqCst))
        {
            // SAFETY: the descriptor was handed to this process for this one message; it
            // is owned (and closed) here.
            let mut ready = unsafe { std::fs::File::from_raw_fd(fd) };
            ready
                .write_all(&[1])
                .map_err(RunError::io("tell vmm-runc the workload is created"))?;
        }
        let mut fifo = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.fifo)
            .map_err(RunError::io("open the exec FIFO"))?;
        fifo.write_all(b"0")
            .map_err(RunError::io("write to the exec FIFO"))
    }
}

/// How the session ended early.
pub enum Interrupted {
    /// The VM ended: the caller knows why.
    VmEnded,
    Error(RunError),
}

impl From<RunError> for Interrupted {
    fn from(e: RunError) -> Self {
        Interrupted::Error(e)
    }
}

/// Runs `config` through the agent behind `control` (reached at `uds`) to its end; the
/// workload's name in the guest is its container id. With `link`, the agent gives the
/// guest's eth0 its end of the link before it answers the create.
pub fn run_workload(
    uds: &Path,
    mut control: Control,
    config: ContainerConfig,
    rootfs: RootfsSource,
    link: Option<LinkAddresses>,
    watch: &Watch,
    timings: &Timings,
) -> Result<WaitReply, Interrupted> {
    let id = config.id.clone();
    let terminal = config.terminal;
    let files = super::vm_mounts::copies(&config)?;
    let _: serde_json::Value = control.call(Op::Create {
        container: id.clone(),
        config: Box::new(config),
        rootfs,
        link,
        files,
    })?;
    timings.mark("created");
    run_prepared(uds, control, &id, terminal, watch, timings)
}

/// A process to run in the guest's running workload `target` (vmm-runc's `exec` at the
/// VM levels), under the name `name`.
pub struct Exec<'a> {
    pub name: &'a str,
    pub target: &'a str,
    pub process: ProcessConfig,
    /// It runs on a terminal in the guest.
    pub terminal: bool,
}

/// Runs `exec` to its end; its streams and status are this run's.
pub fn run_exec(
    uds: &Path,
    mut control: Control,
    exec: Exec,
    watch: &Watch,
    timings: &Timings,
) -> Result<WaitReply, Interrupted> {
    let _: serde_json::Value = control.call(Op::Exec {
        container: exec.name.to_owned(),
        target: exec.target.to_owned(),
        process: Box::new(exec.process),
        terminal: exec.terminal,
    })?;
    timings.mark("created");
    run_prepared(uds, control, exec.name, exec.terminal, watch, timings)
}

/// The rest of a run, for the workload `id` that `create` or `exec` prepared: attach its
/// streams, start it, relay, pass signals on, wait for its end and its output. With a
/// `terminal` in the guest, its size follows this run's stdin's, when that is a terminal:
/// at the start, and at each SIGWINCH (taken here, not passed on: the guest's kernel
/// sends the workload its own when the size changes).
fn run_prepared(
    uds: &Path,
    mut control: Control,
    id: &str,
    terminal: bool,
    watch: &Watch,
    timings: &Timings,
) -> Result<WaitReply, Interrupted> {
    let stdin = attach(uds, id, StreamKind::Stdin)?;
    let stdout = attach(uds, id, StreamKind::Stdout)?;
    let stderr = attach(uds, id, StreamKind::Stderr)?;
    timings.mark("attached");
    if let Some(hold) = watch.hold {
        hold.wait_for_start()?;
        timings.mark("start");
    }
    let _: StartReply = control.call(Op::Start {
        container: id.to_owned(),
        console_size: terminal.then(stdin_window_size).flatten(),
    })?;
    timings.mark("started");

    let (done_tx, done_rx) = mpsc::channel();
    spawn_relay("stdin", move || relay_stdin(stdin), None)?;
    spawn_relay(
        "stdout",
        move || relay_output(stdout, 1),
        Some(done_tx.clone()),
    )?;
    spawn_relay("stderr", move || relay_output(stderr, 2), Some(done_tx))?;

    let wait_id = control.send(Op::Wait {
        container: id.to_owned(),
    })?;
    let ended = loop {
        match wait_for_events(&control, watch)? {
            Event::Agent => {
                if let Some(reply) = control.poll_reply(wait_id)? {
                    break reply.into_result::<WaitReply>().map_err(RunError::Agent)?;
                }
            }
            Event::Signal => {
                while let Some(signal) = watch.signals.take() {
                    let resize = (terminal && signal == libc::SIGWINCH)
                        .then(stdin_window_size)
                        .flatten();
                    // The reply (ESRCH when the workload just ended) is of no interest.
                    control.send(match resize {
                        Some(size) => Op::Resize {
                            container: id.to_owned(),
                            size,
                        },
                        None => Op::Signal {
                            container: id.to_owned(),
                            signal,
                        },
                    })?;
                }
            }
            Event::VmEnded => return Err(Interrupted::VmEnded),
        }
    };
    timings.mark("ended");
    // Both output streams end (EOF) right after; bounded in case the path stalls.
    for _ in 0..2 {
        if done_rx.recv_timeout(OUTPUT_DRAIN).is_err() {
            eprintln!("vmm: the workload's output did not finish arriving within {OUTPUT_DRAIN:?}");
            break;
        }
    }
    timings.mark("output drained");
    Ok(ended)
}

/// The size of this run's stdin, when it is a terminal.
fn stdin_window_size() -> Option<ConsoleSize> {
    runtime::sys::linux::window_size(0)
}

fn spawn_relay(
    name: &str,
    body: impl FnOnce() + Send + 'static,
    done: Option<mpsc::Sender<()>>,
) -> Result<(), RunError> {
    std::thread::Builder::new()
        .name(format!("relay-{name}"))
        .spawn(move || {
            body();
            if let Some(done) = done {
                let _ = done.send(());
            }
        })
        .map(drop)
        .map_err(RunError::io("start a stdio relay thread"))
}

/// A standard stream of this process, borrowed (never closed here).
fn std_stream(fd: RawFd) -> ManuallyDrop<std::fs::File> {
    // SAFETY: fds 0-2 stay open for the life of the process; ManuallyDrop keeps this File
    // from closing them.
    ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// `vmm`'s stdin to the workload's; at its end the connection is shut down, which the
/// workload reads as EOF. Left blocked on a terminal when the workload never reads: the
/// thread ends with the process.
fn relay_stdin(mut conn: UnixStream) {
    let mut stdin = std_stream(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    // The workload closed its stdin (or ended).
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = conn.shutdown(Shutdown::Write);
}

/// The workload's stdout or stderr to ours, until it ends. When ours is closed (a reader
/// like `head` went away), the connection is closed too, so the workload sees EPIPE or
/// SIGPIPE as it would writing to a closed pipe on the host.
fn relay_output(mut conn: UnixStream, fd: RawFd) {
    let mut out = std_stream(fd);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    let _ = conn.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

enum Event {
    Agent,
    Signal,
    VmEnded,
}

/// Blocks until the agent's connection is readable, a signal is pending, or the VM ended.
fn wait_for_events(control: &Control, watch: &Watch) -> Result<Event, RunError> {
    let mut fds = vec![
        libc::pollfd {
            fd: control.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: watch.signals.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    if let Some(fd) = watch.vm_ended {
        fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    loop {
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(RunError::io("wait for the agent")(e));
        }
        // A signal first: it must reach the workload even while output floods in.
        if fds[1].revents != 0 {
            return Ok(Event::Signal);
        }
        if fds[0].revents != 0 {
            return Ok(Event::Agent);
        }
        if fds.get(2).is_some_and(|f| f.revents != 0) {
            return Ok(Event::VmEnded);
        }
    }
}
