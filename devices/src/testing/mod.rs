//! A guest driver for the device models, in-process: the one test driver every device
//! test and the in-process benches (`vmm bench blk|net`) use.
//!
//! - [`DriverQueue`]: the rings of one split queue in guest memory, written and read as a
//!   guest driver does.
//! - [`MmioDriver`]: a device behind its real [`MmioTransport`](crate::virtio::MmioTransport),
//!   driven through the registers as Linux's virtio-mmio driver does.
//! - [`DeviceHarness`]: a device activated directly, without a transport, for tests of
//!   the device model alone.
//! - [`MemorySnapshot`] and [`worker_panics`]: what a device changed in guest memory, and
//!   whether a device thread died, for tests that feed devices hostile input.
//!
//! Built for the crate's own tests and behind the `testing` feature for other crates:
//! none of it belongs in a VM, so the production build leaves it out.

mod harness;
mod mmio_driver;
mod ring;
mod snapshot;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::EventFd;

use crate::virtio::{ActivateError, Interrupt, StateError};
pub use harness::DeviceHarness;
pub use mmio_driver::MmioDriver;
pub use ring::{indirect_table, reached, DriverQueue};
pub use snapshot::MemorySnapshot;

/// How long tests wait for a device before they call it stuck.
pub const WAIT: Duration = Duration::from_secs(5);

/// What went wrong driving a device.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("queue size {size} is not a power of two")]
    RingSize { size: u16 },
    #[error("the rings of a {size}-entry queue at {base:#x} do not fit in guest memory")]
    RingOutsideMemory { base: u64, size: u16 },
    #[error("descriptor {index} is past the end of a {size}-entry table")]
    DescriptorIndex { index: usize, size: u16 },
    #[error("a ring access failed")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error("guest memory could not be mapped")]
    Map(#[from] vm_memory::mmap::FromRangesError),
    #[error("an eventfd of the driver failed")]
    EventFd(#[from] io::Error),
    #[error("the device refused to start")]
    Activate(#[from] ActivateError),
    #[error("the device's state could not be restored")]
    State(#[from] StateError),
    #[error("the device did not reach DRIVER_OK (status {status:#x})")]
    NotLive { status: u32 },
    #[error("the device asked for a reset")]
    NeedsReset,
    #[error("the device did not answer within {0:?}")]
    Timeout(Duration),
}

/// How a wait for used chains ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The used index reached the target.
    Used,
    /// The device set DEVICE_NEEDS_RESET first: it will use nothing more.
    NeedsReset,
}

/// Sleeps on the device's interrupt (`irq`, the eventfd behind `interrupt`) until
/// `queue` has used chains up to `target` or the device asks for a reset; gives up
/// after `timeout` (`None`: never, as a guest would).
///
/// Nothing is missed between the checks and the sleep: the device raises the interrupt
/// after each batch it uses and when it asks for a reset, and the eventfd counts.
pub fn wait_used(
    queue: &DriverQueue,
    target: u16,
    irq: &EventFd,
    interrupt: &Interrupt,
    timeout: Option<Duration>,
) -> Result<Waited, DriverError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if queue.used_reached(target)? {
            return Ok(Waited::Used);
        }
        if interrupt.needs_reset() {
            return Ok(Waited::NeedsReset);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Err(DriverError::Timeout(timeout.unwrap_or_default()));
        }
        wait_readable(irq, left)?;
        // Non-blocking: EAGAIN after a timeout is fine, the checks above decide.
        let _ = irq.read();
    }
}

/// Polls until `cond` holds; false after `timeout`. For conditions no interrupt
/// announces (a statistic the device updated, a host socket).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// How many device worker threads (`crate::virtio::worker::Worker`) have panicked in
/// this process so far. A worker's panic ends only its thread: the device stops using
/// its queues and `Worker::stop` joins the thread without looking, so a test that feeds
/// a device hostile input compares this count before and after.
///
/// The first call installs a panic hook that counts the panics of threads named like the
/// workers (`vmm-*`, and vsock's `vsock`) and hands every panic on to the hook that was
/// there before, so the message is printed as usual.
pub fn worker_panics() -> usize {
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or_default();
            if name.starts_with("vmm-") || name == "vsock" {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// Blocks until `fd` is readable or `timeout` passed.
fn wait_readable(fd: &EventFd, timeout: Option<Duration>) -> io::Result<()> {
    let ms = timeout.map_or(-1, |t| {
        t.as_millis().saturating_add(1).min(i32::MAX as u128) as i32
    });
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd, and poll writes only its `revents`.
    let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(())
}
