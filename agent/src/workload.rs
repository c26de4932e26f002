//! The agent's record of one workload, from `create` until its end has been reported: its
//! config and root, the connections relaying its streams, its running process, and the
//! `wait` requests to answer when it is over.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use agent_protocol::protocol::{StreamKind, WaitReply};
use runtime::config::ContainerConfig;
use runtime::launch::Running;

use crate::connection::ConnId;
use crate::files::CopiedFiles;
use crate::rootfs::OverlayRoot;

/// How long a workload without a cgroup or a PID namespace may keep its output pipes open
/// after its first process ended: a background child it left could hold them for ever,
/// and nothing else would kill it.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum Phase {
    Created,
    Running(Running),
    /// The first process was reaped; how it ended.
    Ended(WaitReply),
}

#[derive(Debug)]
pub struct Workload {
    /// The control connection that created it; the workload ends with it.
    pub owner: ConnId,
    pub config: ContainerConfig,
    /// The overlay root, for a workload made from a disk (none for a directory).
    pub overlay: Option<OverlayRoot>,
    /// The copies of host files its bind mounts name (removed with it).
    pub files: Option<CopiedFiles>,
    /// For an exec: the workload whose namespaces and cgroup its process joins.
    pub exec_of: Option<String>,
    pub phase: Phase,
    /// The connection relaying each stream while it is open, by [`stream_index`].
    pub streams: [Option<ConnId>; 3],
    /// Which streams have ever been attached (each may be, once).
    pub attached: [bool; 3],
    /// `wait` requests to answer: (connection, request id).
    pub waiters: Vec<(ConnId, u64)>,
    /// Its owner went away: it is killed, and removed once reaped.
    pub abandoned: bool,
    /// When its output pipes are closed whether or not they reached end of file.
    pub output_deadline: Option<Instant>,
    /// The guest's OOM kill count when it started (guest only), see [`oom_fallback`].
    pub oom_kills_at_start: Option<u64>,
    /// The primary end of its terminal, while it runs with one (for `resize`).
    pub terminal: Option<OwnedFd>,
}

pub fn stream_index(kind: StreamKind) -> usize {
    match kind {
        StreamKind::Stdin => 0,
        StreamKind::Stdout => 1,
        StreamKind::Stderr => 2,
    }
}

impl Workload {
    pub fn new(owner: ConnId, config: ContainerConfig, overlay: Option<OverlayRoot>) -> Self {
        Self {
            owner,
            config,
            overlay,
            files: None,
            exec_of: None,
            phase: Phase::Created,
            streams: [None; 3],
            attached: [false; 3],
            waiters: Vec::new(),
            abandoned: false,
            output_deadline: None,
            oom_kills_at_start: None,
            terminal: None,
        }
    }

    /// The first process, while it runs.
    pub fn pid(&self) -> Option<i32> {
        match &self.phase {
            Phase::Running(running) => Some(running.pid()),
            _ => None,
        }
    }

    /// Records the end of the first process (reaped by the caller with `wait_status`):
    /// whatever is left in its cgroup is killed, so the output pipes reach end of file.
    /// Without a cgroup or a PID namespace leftovers may survive: the output gets
    /// [`OUTPUT_GRACE`].
    pub fn finish(&mut self, wait_status: libc::c_int, now: Instant) {
        let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Created) else {
            return;
        };
        let outcome = running.finish(wait_status);
        self.terminal = None;
        let oom_kills_now = self.oom_kills_at_start.and_then(|_| global_oom_kills());
        let oom_killed = outcome.oom_killed
            || oom_fallback(outcome.signal, self.oom_kills_at_start, oom_kills_now);
        self.phase = Phase::Ended(WaitReply {
            status: outcome.status,
            signal: outcome.signal,
            oom_killed,
        });
        // An exec's leftovers live on in its target's cgroup, which its end does not kill.
        if self.exec_of.is_some() || (!self.config.cgroup && !self.config.namespaces.pid) {
            self.output_deadline = Some(now + OUTPUT_GRACE);
        }
    }

    /// True while stdout or stderr is still being relayed.
    pub fn output_open(&self) -> bool {
        self.streams[stream_index(StreamKind::Stdout)].is_some()
            || self.streams[stream_index(StreamKind::Stderr)].is_some()
    }
}

/// The guest's count of OOM kills (`oom_kill` in /proc/vmstat).
pub fn global_oom_kills() -> Option<u64> {
    vmstat_oom_kills(&std::fs::read_to_string("/proc/vmstat").ok()?)
}

fn vmstat_oom_kills(vmstat: &str) -> Option<u64> {
    vmstat.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// In a guest, a workload killed by SIGKILL while the guest's OOM kill count rose was
/// killed by the OOM killer, even when its cgroup could not say so (no memory controller).
/// `at_start` is only taken in a guest, where every process belongs to the workloads.
pub fn oom_fallback(signal: Option<i32>, at_start: Option<u64>, now: Option<u64>) -> bool {
    match (signal, at_start, now) {
        (Some(libc::SIGKILL), Some(before), Some(after)) => after > before,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmstat_oom_kill_count_is_read() {
        let text = "nr_free_pages 1234\noom_kill 3\nnr_foo 9\n";
        assert_eq!(vmstat_oom_kills(text), Some(3));
        assert_eq!(vmstat_oom_kills("nr_free_pages 1\n"), None);
    }

    #[test]
    fn sigkill_with_a_rising_oom_count_is_an_oom_kill() {
        assert!(oom_fallback(Some(libc::SIGKILL), Some(1), Some(2)));
    }

    #[test]
    fn other_ends_are_not_oom_kills() {
        assert!(!oom_fallback(Some(libc::SIGKILL), Some(2), Some(2)));
        assert!(!oom_fallback(Some(libc::SIGTERM), Some(1), Some(2)));
        assert!(!oom_fallback(None, Some(1), Some(2)));
        assert!(!oom_fallback(Some(libc::SIGKILL), None, Some(2)));
    }
}
