//! The boot-timer MMIO register (placed at 0xC000_0000 as in Firecracker:
//! `boot::platform::BOOT_TIMER`): the guest writes [`BOOT_TIMER_MAGIC`] when it reaches a
//! point of interest, and the VMM prints how long after its own start that was.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::bus::BusDevice;

/// The byte that marks "the guest got here".
pub const BOOT_TIMER_MAGIC: u8 = 123;

/// Prints, once, the time from the VMM's start to the guest's first magic write.
pub struct BootTimer {
    started: Instant,
    out: Box<dyn Write + Send>,
    reported: bool,
    /// Where the time is also kept for whoever reads it later (the API's metrics).
    reached: Option<Arc<OnceLock<Duration>>>,
}

impl fmt::Debug for BootTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootTimer")
            .field("started", &self.started)
            .field("reported", &self.reported)
            .finish_non_exhaustive()
    }
}

impl BootTimer {
    /// A boot timer measuring from `started` (when the VMM started) and printing to `out`.
    pub fn new(started: Instant, out: Box<dyn Write + Send>) -> Self {
        Self {
            started,
            out,
            reported: false,
            reached: None,
        }
    }

    /// Also keeps the time the guest reached the timer in `slot`.
    pub fn keeping_time_in(mut self, slot: Arc<OnceLock<Duration>>) -> Self {
        self.reached = Some(slot);
        self
    }

    /// The line printed for a guest that reached the timer `elapsed` after the start.
    fn line(elapsed: Duration) -> String {
        let us = elapsed.as_micros();
        format!(
            "boot-timer: guest reached the boot timer {}.{:03} ms after the VMM started ({us} µs)\n",
            us / 1000,
            us % 1000
        )
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if self.reported || data.first() != Some(&BOOT_TIMER_MAGIC) {
            return;
        }
        self.reported = true;
        let elapsed = self.started.elapsed();
        if let Some(slot) = &self.reached {
            let _ = slot.set(elapsed);
        }
        let line = Self::line(elapsed);
        // A report that cannot be written is lost; the guest must not be affected.
        let _ = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::SharedBuf;

    fn boot_timer() -> (BootTimer, SharedBuf) {
        let out = SharedBuf::default();
        (BootTimer::new(Instant::now(), Box::new(out.clone())), out)
    }

    #[test]
    fn boot_timer_prints_once_on_magic() {
        let (mut timer, out) = boot_timer();
        timer.write(0, &[BOOT_TIMER_MAGIC]);
        timer.write(0, &[BOOT_TIMER_MAGIC, 0, 0, 0]);
        let text = String::from_utf8(out.contents()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        assert!(
            text.starts_with("boot-timer: guest reached the boot timer "),
            "{text:?}"
        );
        assert!(text.ends_with(" µs)\n"), "{text:?}");
    }

    #[test]
    fn boot_timer_ignores_other_values() {
        let (mut timer, out) = boot_timer();
        timer.write(0, &[1]);
        timer.write(0, &[]);
        assert!(out.contents().is_empty());
        timer.write(0, &[BOOT_TIMER_MAGIC]);
        assert!(!out.contents().is_empty());
    }

    #[test]
    fn boot_timer_line_formats_ms_and_us() {
        assert_eq!(
            BootTimer::line(Duration::from_micros(12_345)),
            "boot-timer: guest reached the boot timer 12.345 ms after the VMM started (12345 µs)\n"
        );
        assert_eq!(
            BootTimer::line(Duration::from_micros(7)),
            "boot-timer: guest reached the boot timer 0.007 ms after the VMM started (7 µs)\n"
        );
    }

    #[test]
    fn boot_timer_keeps_the_time_it_printed() {
        let slot = Arc::new(OnceLock::new());
        let (timer, _out) = boot_timer();
        let mut timer = timer.keeping_time_in(slot.clone());
        assert!(slot.get().is_none());
        timer.write(0, &[BOOT_TIMER_MAGIC]);
        assert!(slot.get().is_some());
    }

    #[test]
    fn boot_timer_reads_return_zero() {
        let (mut timer, _out) = boot_timer();
        let mut data = [0xffu8; 4];
        timer.read(0, &mut data);
        assert_eq!(data, [0; 4]);
    }
}
