//! Holding rx back after a TRANSPORT_RESET until the driver has acted on it.
//!
//! Linux's driver handles the event in a work item that resets every connected socket and
//! only then posts the event buffer again. A host stream connected before that work runs
//! (a host that connects right after a restore: `vmm run --from-snapshot`, an API client)
//! would be reset with the streams the snapshot ended, and the host would have to try
//! again. So the device puts nothing on rx from the event until the driver posts an event
//! buffer again (the event queue's avail index moves), or [`ACK_TIMEOUT`] passed, for a
//! driver that never does. Guest tx goes on meanwhile.

use std::num::Wrapping;
use std::time::{Duration, Instant};

/// How long rx waits for the driver to act on the reset.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetAck {
    /// The event queue's avail index when the reset went out; `None` for a reset that went
    /// out before this handler (a snapshot's): read at the first check, which comes
    /// before the vCPUs run again.
    avail_at: Option<Wrapping<u16>>,
    deadline: Instant,
}

impl ResetAck {
    pub fn new(avail_at: Option<Wrapping<u16>>, now: Instant) -> Self {
        ResetAck {
            avail_at,
            deadline: now + ACK_TIMEOUT,
        }
    }

    /// Whether rx may go on: the driver posted an event buffer since the reset (its avail
    /// index is `avail_now`), or the wait timed out.
    pub fn acked(&mut self, avail_now: Wrapping<u16>, now: Instant) -> bool {
        if now >= self.deadline {
            return true;
        }
        match self.avail_at {
            None => {
                self.avail_at = Some(avail_now);
                false
            }
            Some(at) => at != avail_now,
        }
    }

    /// When the wait ends at the latest: the worker wakes then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_waits_until_the_driver_posts_an_event_buffer_again() {
        let now = Instant::now();
        let mut ack = ResetAck::new(Some(Wrapping(5)), now);
        assert!(!ack.acked(Wrapping(5), now));
        assert!(ack.acked(Wrapping(6), now));
    }

    #[test]
    fn a_snapshots_reset_takes_the_avail_index_at_the_first_check() {
        let now = Instant::now();
        let mut ack = ResetAck::new(None, now);
        assert!(!ack.acked(Wrapping(u16::MAX), now));
        assert!(!ack.acked(Wrapping(u16::MAX), now));
        assert!(ack.acked(Wrapping(0), now), "the index wraps");
    }

    #[test]
    fn rx_goes_on_after_the_timeout_for_a_driver_that_never_acts() {
        let now = Instant::now();
        let mut ack = ResetAck::new(Some(Wrapping(1)), now);
        assert_eq!(ack.deadline(), now + ACK_TIMEOUT);
        assert!(!ack.acked(Wrapping(1), now + ACK_TIMEOUT / 2));
        assert!(ack.acked(Wrapping(1), now + ACK_TIMEOUT));
    }
}
