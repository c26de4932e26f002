//! The thread that starts device workers. A thread inherits its parent's filter, and the
//! vCPU that activates a device may not start threads, nor make the calls its worker
//! makes; so the vCPU asks this thread, which may do what any worker may (and start a
//! thread), and each worker confines itself further before its first event.
//!
//! Only a VM with virtio devices has workers, so only such a VM starts the spawner (see
//! [`crate::vm::run_built`]), and each worker kind's filter is compiled when its first
//! worker starts ([`super::program`]), not all five up front.

use std::io;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use super::{confine_or_exit, program, SeccompError, ThreadKind};
use devices::virtio::worker::{self, WorkerBody};

struct Request {
    name: String,
    body: WorkerBody,
    started: mpsc::SyncSender<io::Result<JoinHandle<()>>>,
}

static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

/// Starts the spawner (once per process) and makes it start every device worker from now
/// on. Call it before the first device is activated.
pub fn start_spawner() -> Result<(), SeccompError> {
    STARTED
        .get_or_init(|| start().map_err(|e| edge::error_chain(&e)))
        .clone()
        .map_err(|e| SeccompError::Spawner(io::Error::other(e)))
}

fn start() -> Result<(), SeccompError> {
    let own = program(ThreadKind::Spawner)?;
    let (requests, incoming) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name(ThreadKind::Spawner.name().into())
        .spawn(move || {
            confine_or_exit(ThreadKind::Spawner, &own);
            for request in incoming {
                let started = spawn_confined(request.name, request.body);
                let _ = request.started.send(started);
            }
        })
        .map_err(SeccompError::Spawner)?;
    let requests = Mutex::new(requests);
    worker::set_launcher(Box::new(move |name, body| {
        let (started, result) = mpsc::sync_channel(1);
        let request = Request {
            name: name.to_owned(),
            body,
            started,
        };
        let sent = requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(request);
        sent.map_err(|_| io::Error::other("the worker spawner has ended"))?;
        result
            .recv()
            .map_err(|_| io::Error::other("the worker spawner has ended"))?
    }));
    Ok(())
}

/// Starts worker `name`, which confines itself to its kind's filter before its body runs.
fn spawn_confined(name: String, body: WorkerBody) -> io::Result<JoinHandle<()>> {
    let Some(kind) = ThreadKind::of_worker(&name) else {
        return Err(io::Error::other(format!(
            "no seccomp filter for the device worker {name:?}"
        )));
    };
    let program = program(kind).map_err(|e| io::Error::other(edge::error_chain(&e)))?;
    std::thread::Builder::new().name(name).spawn(move || {
        confine_or_exit(kind, &program);
        body();
    })
}
