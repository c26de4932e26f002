//! How workloads end and go away: reaped, their output flushed, their waits answered,
//! then cleaned up (mounts, directory, id); or killed when the control connection that
//! created them closes.

use std::time::Instant;

use agent_protocol::protocol::{Reply, StreamKind};

use crate::connection::{ConnId, Ending};
use crate::event_loop::Agent;
use crate::request_error::RequestError;
use crate::workload::{stream_index, Phase};

impl Agent {
    /// A child was reaped: if it is a workload's first process, the workload has ended.
    /// Its stdin relay closes (no one reads it any more); its output relays drain.
    pub(crate) fn on_reaped(&mut self, pid: libc::pid_t, wait_status: libc::c_int, now: Instant) {
        let Some(name) = self
            .workloads
            .iter()
            .find(|(_, w)| w.pid() == Some(pid))
            .map(|(name, _)| name.clone())
        else {
            // An orphan the agent inherited: reaping it was all there was to do.
            return;
        };
        let stdin_conn = self.workloads.get_mut(&name).and_then(|w| {
            w.finish(wait_status, now);
            w.streams[stream_index(StreamKind::Stdin)].take()
        });
        if let Some(id) = stdin_conn {
            self.close_conn(id, Ending::Done);
        }
        self.settle(&name);
    }

    /// Once a workload has ended and its output is out: answers its waits, and removes it
    /// when they were answered or when its owner is gone.
    pub(crate) fn settle(&mut self, name: &str) {
        let Some(workload) = self.workloads.get_mut(name) else {
            return;
        };
        let Phase::Ended(outcome) = &workload.phase else {
            return;
        };
        if workload.output_open() {
            return;
        }
        let waiters = std::mem::take(&mut workload.waiters);
        let outcome = outcome.clone();
        let abandoned = workload.abandoned;
        for &(conn_id, request_id) in &waiters {
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.send(&Reply::ok(request_id, &outcome));
                conn.flush();
            }
        }
        if abandoned || !waiters.is_empty() {
            self.remove_workload(name);
        }
    }

    /// The grace of workloads whose leftovers may hold their output open is over: close
    /// their output pipes, so what was read goes out and the streams end.
    pub(crate) fn expire_output_deadlines(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for workload in self.workloads.values_mut() {
            if workload.output_deadline.is_some_and(|t| t <= now) {
                workload.output_deadline = None;
                expired.extend(workload.streams.iter().flatten().copied());
            }
        }
        for id in expired {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.close_pipe();
            }
        }
    }

    /// Closes a connection and tells whoever depends on it: the workload whose stream it
    /// relayed, or the workloads it created (which die with it).
    pub(crate) fn close_conn(&mut self, id: ConnId, ending: Ending) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        let stream = conn.stream().map(|(name, kind)| (name.to_owned(), kind));
        conn.close(ending);
        match stream {
            Some((name, kind)) => {
                if let Some(workload) = self.workloads.get_mut(&name) {
                    let slot = &mut workload.streams[stream_index(kind)];
                    if *slot == Some(id) {
                        *slot = None;
                    }
                }
                self.settle(&name);
            }
            None => self.abandon_owned_by(id),
        }
    }

    /// The host that created these workloads is gone: kill them, close their streams,
    /// and remove each once nothing of it runs.
    fn abandon_owned_by(&mut self, owner: ConnId) {
        let names: Vec<String> = self
            .workloads
            .iter()
            .filter(|(_, w)| w.owner == owner)
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let Some(workload) = self.workloads.get_mut(&name) else {
                continue;
            };
            workload.abandoned = true;
            let running = matches!(workload.phase, Phase::Running(_));
            if let Phase::Running(process) = &workload.phase {
                process.kill_all();
            }
            let streams: Vec<ConnId> = workload.streams.iter().flatten().copied().collect();
            for stream in streams {
                self.close_conn(stream, Ending::Done);
            }
            // A running one is removed when it is reaped (settle); the others now.
            if !running {
                self.remove_workload(&name);
            }
        }
    }

    /// Forgets a workload: closes its streams, kills and reaps what still runs (only at
    /// shutdown does a running one get here), undoes its mounts. Its id is free again.
    pub(crate) fn remove_workload(&mut self, name: &str) {
        let Some(workload) = self.workloads.remove(name) else {
            return;
        };
        // Waits still pending here will never see an end (an ended workload's were
        // answered by settle): say so rather than leave them hanging.
        for &(conn_id, request_id) in &workload.waiters {
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.send(&RequestError::Removed(name.to_owned()).reply(request_id));
                conn.flush();
            }
        }
        for &id in workload.streams.iter().flatten() {
            self.close_conn(id, Ending::Done);
        }
        // Dropping a Running kills its cgroup and first process and reaps it.
        drop(workload.phase);
        if let Some(overlay) = &workload.overlay {
            overlay.unmount();
        }
    }
}
