//! The thread that starts device workers. A thread inherits its parent's filter, and the
//! vCPU that activates a device may not start threads, nor make the calls its worker
//! makes; so the vCPU asks this thread, which may do what any worker may (and start a
//! thread), and each worker confines itself further before its first event.

use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use devices::virtio::worker::{self, WorkerBody};
use seccompiler::BpfProgram;

use super::{compile, confine_or_exit, SeccompError, ThreadKind};

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
    let own = compile(ThreadKind::Spawner)?;
    let mut programs = BTreeMap::new();
    for kind in ThreadKind::WORKERS {
        programs.insert(kind.name(), compile(kind)?);
    }
    let (requests, incoming) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name(ThreadKind::Spawner.name().into())
        .spawn(move || {
            confine_or_exit(ThreadKind::Spawner, &own);
            for request in incoming {
                let started = spawn_confined(&programs, request.name, request.body);
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
fn spawn_confined(
    programs: &BTreeMap<&'static str, BpfProgram>,
    name: String,
    body: WorkerBody,
) -> io::Result<JoinHandle<()>> {
    let Some((kind, program)) = ThreadKind::of_worker(&name)
        .and_then(|kind| Some((kind, programs.get(kind.name())?.clone())))
    else {
        return Err(io::Error::other(format!(
            "no seccomp filter for the device worker {name:?}"
        )));
    };
    std::thread::Builder::new().name(name).spawn(move || {
        confine_or_exit(kind, &program);
        body();
    })
}
