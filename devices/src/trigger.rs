//! An interrupt line as an eventfd: the [`vm_superio::Trigger`] the VMM hands to KVM as an
//! irqfd.

use std::io;

use vm_superio::Trigger;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A [`Trigger`] that signals an [`EventFd`] (written with 1 on each trigger).
#[derive(Debug)]
pub struct EventFdTrigger(EventFd);

impl EventFdTrigger {
    /// Creates a trigger over a new non-blocking eventfd.
    pub fn new() -> io::Result<Self> {
        EventFd::new(EFD_NONBLOCK).map(Self)
    }

    /// Wraps an existing eventfd.
    pub fn from_eventfd(fd: EventFd) -> Self {
        Self(fd)
    }

    /// The eventfd this trigger signals (to register as a KVM irqfd).
    pub fn eventfd(&self) -> &EventFd {
        &self.0
    }

    /// A second trigger over the same eventfd.
    pub fn try_clone(&self) -> io::Result<Self> {
        self.0.try_clone().map(Self)
    }
}

impl Trigger for EventFdTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_writes_one_to_eventfd() {
        let trigger = EventFdTrigger::new().unwrap();
        trigger.trigger().unwrap();
        trigger.trigger().unwrap();
        assert_eq!(trigger.eventfd().read().unwrap(), 2);
    }

    #[test]
    fn cloned_trigger_signals_same_eventfd() {
        let trigger = EventFdTrigger::new().unwrap();
        trigger.try_clone().unwrap().trigger().unwrap();
        assert_eq!(trigger.eventfd().read().unwrap(), 1);
    }
}
