//! Credit-based flow control for one stream (virtio 1.2 §5.10.6.3).
//!
//! Each side advertises `buf_alloc` (its receive buffer) and `fwd_cnt` (bytes it has
//! consumed). A sender may have at most `buf_alloc - (tx_cnt - fwd_cnt)` bytes in flight.
//! All counters are free-running `u32`s that wrap, as in the spec.

use std::num::Wrapping;

/// The guest sent more than the buffer we advertised.
#[derive(Debug, PartialEq, Eq)]
pub struct CreditExceeded;

#[derive(Debug)]
pub struct Credit {
    /// Our receive buffer for this stream, advertised to the guest.
    buf_alloc: u32,
    /// Payload bytes received from the guest.
    rx_cnt: Wrapping<u32>,
    /// Of those, bytes delivered to the host stream.
    fwd_cnt: Wrapping<u32>,
    /// `fwd_cnt` as the guest last heard it.
    fwd_cnt_sent: Wrapping<u32>,
    /// The guest's receive buffer and consumption, from its latest header.
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    /// Payload bytes sent to the guest.
    tx_cnt: Wrapping<u32>,
}

impl Credit {
    pub fn new(buf_alloc: u32) -> Self {
        Credit {
            buf_alloc,
            rx_cnt: Wrapping(0),
            fwd_cnt: Wrapping(0),
            fwd_cnt_sent: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            tx_cnt: Wrapping(0),
        }
    }

    /// Records the credit fields every guest packet carries.
    pub fn update_peer(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = Wrapping(fwd_cnt);
    }

    /// How many payload bytes we may still send the guest. Saturates, because a guest may
    /// shrink its buffer below what is already in flight.
    pub fn peer_free(&self) -> u32 {
        let in_flight = (self.tx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// We sent `n` payload bytes to the guest.
    pub fn sent(&mut self, n: u32) {
        self.tx_cnt += Wrapping(n);
    }

    /// The guest sent `n` payload bytes; refused if they don't fit the buffer we
    /// advertised, which bounds what we hold for a slow host stream.
    pub fn received(&mut self, n: u32) -> Result<(), CreditExceeded> {
        let buffered = (self.rx_cnt - self.fwd_cnt).0;
        if u64::from(buffered) + u64::from(n) > u64::from(self.buf_alloc) {
            return Err(CreditExceeded);
        }
        self.rx_cnt += Wrapping(n);
        Ok(())
    }

    /// `n` bytes of guest payload reached the host stream.
    pub fn forwarded(&mut self, n: u32) {
        self.fwd_cnt += Wrapping(n);
    }

    /// Whether the guest should be told about freed buffer space now: it believes less
    /// than half the buffer is free and we have freed some since we last told it. Waiting
    /// until half is used keeps updates rare; not waiting until zero keeps it streaming.
    pub fn needs_update(&self) -> bool {
        let guest_view_used = (self.rx_cnt - self.fwd_cnt_sent).0;
        self.fwd_cnt != self.fwd_cnt_sent
            && self.buf_alloc.saturating_sub(guest_view_used) < self.buf_alloc / 2
    }

    /// The (buf_alloc, fwd_cnt) to put in an outgoing header; the guest will know them.
    pub fn stamp(&mut self) -> (u32, u32) {
        self.fwd_cnt_sent = self.fwd_cnt;
        (self.buf_alloc, self.fwd_cnt.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_free_is_buf_alloc_minus_in_flight() {
        let mut c = Credit::new(1024);
        c.update_peer(4096, 0);
        c.sent(1000);
        assert_eq!(c.peer_free(), 3096);
        c.update_peer(4096, 1000);
        assert_eq!(c.peer_free(), 4096);
    }

    #[test]
    fn peer_free_saturates_when_guest_shrinks_its_buffer() {
        let mut c = Credit::new(1024);
        c.update_peer(4096, 0);
        c.sent(4000);
        c.update_peer(100, 0);
        assert_eq!(c.peer_free(), 0);
    }

    #[test]
    fn peer_free_survives_counter_wrap() {
        let mut c = Credit::new(1024);
        c.sent(u32::MAX - 9);
        c.update_peer(100, u32::MAX - 9);
        c.sent(30);
        assert_eq!(c.peer_free(), 70);
    }

    #[test]
    fn received_refuses_more_than_advertised_buffer() {
        let mut c = Credit::new(100);
        assert_eq!(c.received(60), Ok(()));
        assert_eq!(c.received(41), Err(CreditExceeded));
        c.forwarded(60);
        assert_eq!(c.received(100), Ok(()));
    }

    #[test]
    fn update_needed_once_guest_sees_less_than_half_free() {
        let mut c = Credit::new(100);
        c.received(40).unwrap();
        c.forwarded(40);
        assert!(!c.needs_update(), "guest still sees 60 free");
        c.received(30).unwrap();
        c.forwarded(30);
        assert!(c.needs_update(), "guest sees 30 free, 70 were freed");
        assert_eq!(c.stamp(), (100, 70));
        assert!(!c.needs_update());
    }
}
