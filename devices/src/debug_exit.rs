//! The debug-exit port: a guest write of byte V ends the VM with exit status V (the
//! `isa-debug-exit` idea, without QEMU's `(V << 1) | 1` encoding). The VMM places it at
//! `boot::platform::DEBUG_EXIT`.

use std::sync::Arc;

use crate::bus::BusDevice;
use crate::stop::{StopReason, StopSignal};

/// Ends the VM with the first byte of any write as its exit status.
#[derive(Debug)]
pub struct DebugExit {
    stop: Arc<StopSignal>,
}

impl DebugExit {
    /// A debug-exit device that requests stops on `stop`.
    pub fn new(stop: Arc<StopSignal>) -> Self {
        Self { stop }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&value) = data.first() {
            self.stop.request(StopReason::DebugExit(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debug_exit() -> (DebugExit, Arc<StopSignal>) {
        let stop = Arc::new(StopSignal::new().unwrap());
        (DebugExit::new(stop.clone()), stop)
    }

    #[test]
    fn debug_exit_write_requests_exit_with_value() {
        let (mut dev, stop) = debug_exit();
        dev.write(0, &[3]);
        assert_eq!(stop.reason(), Some(StopReason::DebugExit(3)));
        assert_eq!(stop.eventfd().read().unwrap(), 1);
    }

    #[test]
    fn debug_exit_uses_first_byte_of_wide_write() {
        let (mut dev, stop) = debug_exit();
        dev.write(0, &[0x2a, 0, 0, 0]);
        assert_eq!(stop.reason(), Some(StopReason::DebugExit(0x2a)));
    }

    #[test]
    fn debug_exit_empty_write_is_ignored() {
        let (mut dev, stop) = debug_exit();
        dev.write(0, &[]);
        assert!(!stop.is_requested());
    }

    #[test]
    fn debug_exit_reads_return_zero() {
        let (mut dev, stop) = debug_exit();
        let mut data = [0xffu8; 4];
        dev.read(0, &mut data);
        assert_eq!(data, [0; 4]);
        assert!(!stop.is_requested());
    }
}
