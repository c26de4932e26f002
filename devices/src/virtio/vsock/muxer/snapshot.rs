//! The muxer in a snapshot: its connection table and next host port are saved, and a
//! restored muxer owes the guest a RST for each saved stream (see `vsock::state`).

use super::{ConnKey, Muxer, FIRST_HOST_PORT, LAST_HOST_PORT};
use crate::virtio::vsock::packet::{Header, HOST_CID, OP_RST, TYPE_STREAM};

impl Muxer {
    /// The streams open now, in port order (a snapshot's connection table).
    pub fn connection_keys(&self) -> Vec<ConnKey> {
        let mut keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// The local port the next host-initiated stream tries first.
    pub fn next_host_port(&self) -> u32 {
        self.next_port
    }

    /// Takes over from a saved muxer whose streams were `reset`: the guest gets a RST for
    /// each (its side may still think it open), and host ports go on from
    /// `next_host_port` (in `FIRST_HOST_PORT..=LAST_HOST_PORT`), so a new stream does not
    /// reuse the port of one the guest has not yet let go of.
    pub fn restore(&mut self, next_host_port: u32, reset: &[ConnKey]) {
        self.next_port = next_host_port.clamp(FIRST_HOST_PORT, LAST_HOST_PORT);
        for key in reset {
            // Bounded by MAX_CONNECTIONS (the state is checked), not by MAX_PENDING_RST:
            // these are owed, not answers the guest can make more of.
            self.rsts.push_back(Header {
                src_cid: HOST_CID,
                dst_cid: self.guest_cid,
                src_port: key.local_port,
                dst_port: key.peer_port,
                type_: TYPE_STREAM,
                op: OP_RST,
                ..Header::default()
            });
        }
    }
}
