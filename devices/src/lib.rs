//! Device models for the vmm, behind a port-I/O / MMIO [`Bus`].
//!
//! Nothing here touches a KVM fd: the VMM owns the fds, registers the interrupt eventfds the
//! devices expose (e.g. [`Serial::irq_eventfd`] as the irqfd for GSI 4) and waits on
//! [`StopSignal::eventfd`] to learn that a device asked the VM to end. Nor does a device
//! know where it lives: the VMM places each at its row of `boot::platform::PLATFORM`, and
//! a device sees only offsets into its range.

// Guest-written values (descriptor lengths, register writes, packet headers) reach narrower
// types here: each such cast is checked, or carries an `#[allow]` saying why the value fits.
// Here rather than in Cargo.toml because a crate with `[lints] workspace = true` cannot add
// lints of its own there. Not in unit tests, whose casts build hostile chains on purpose;
// `clippy --all-targets` still lints every production line in the non-test build.
#![cfg_attr(not(test), warn(clippy::cast_possible_truncation))]

pub mod acpi_pm;
pub mod boot_timer;
pub mod bus;
pub mod debug_exit;
pub mod i8042;
pub mod serial;
pub mod stop;
/// A guest driver for the devices, for tests and the in-process benches; not part of a VM.
// It plays the guest, so its casts narrow the test's own values into ring fields, not guest
// values reaching a device; a value that did not fit would fail the test that chose it.
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::cast_possible_truncation)]
pub mod testing;
pub mod trigger;
pub mod user_file;
pub mod virtio;

pub use boot_timer::{BootTimer, BOOT_TIMER_MAGIC};
pub use bus::{Bus, BusDevice, BusError, BusRange};
pub use debug_exit::DebugExit;
pub use i8042::I8042;
pub use serial::Serial;
pub use stop::{StopReason, StopSignal};
pub use trigger::EventFdTrigger;

/// Errors from setting up devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A device could not be placed on a bus.
    #[error("cannot place a device on the bus")]
    Bus(#[from] BusError),
    /// A device's eventfd could not be created.
    #[error("cannot create an eventfd for the {device}")]
    EventFd {
        /// The device the eventfd was for.
        device: &'static str,
        /// The error from `eventfd(2)`.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    use crate::virtio::TransportState;

    /// `state` written as JSON and read back, as a VMM stores it in a state file: what a
    /// restore gets must have survived a real serializer.
    pub fn through_json(state: &TransportState) -> TransportState {
        let json = serde_json::to_string(state).unwrap();
        serde_json::from_str(&json).unwrap()
    }

    /// A `Write` that appends to a shared buffer, so tests can read what a device printed.
    #[derive(Clone, Default)]
    pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

    impl SharedBuf {
        pub fn contents(&self) -> Vec<u8> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
