//! A handler in a snapshot: it gives back its queues and the frame it held for a missing
//! rx buffer, and a new handler holds that frame in turn (see `net::state`).

use virtio_queue::Queue;

use super::{NetHandler, MAX_FRAME_LEN};
use crate::virtio::tap::VNET_HDR_LEN;

impl NetHandler {
    /// Holds `frame` (vnet header included, as read from the backend) for the guest's next
    /// rx buffer, as a saved worker held it; a frame that is not one is dropped.
    pub(in crate::virtio::net) fn hold_frame(&mut self, frame: &[u8]) {
        if (VNET_HDR_LEN..=MAX_FRAME_LEN).contains(&frame.len()) {
            self.rx_buf[..frame.len()].copy_from_slice(frame);
            self.rx_frame = Some(frame.len());
        }
    }

    /// The queues (rx, tx), where the worker left them, and the frame it held for the
    /// guest (for a snapshot).
    pub(in crate::virtio::net) fn into_saved(mut self) -> ([Queue; 2], Option<Vec<u8>>) {
        let frame = self.rx_frame.map(|len| {
            self.rx_buf.truncate(len);
            self.rx_buf
        });
        ([self.rx, self.tx], frame)
    }
}
