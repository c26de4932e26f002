//! `vmm run --timings`: when each phase of a run ended, in milliseconds since `vmm`
//! started, printed on stderr at the end — where the time of a VM-level run goes (boot,
//! agent, workload, teardown), for people comparing levels.

use std::cell::RefCell;
use std::time::Instant;

pub struct Timings {
    started: Instant,
    enabled: bool,
    marks: RefCell<Vec<(&'static str, Instant)>>,
}

impl Timings {
    pub fn new(started: Instant, enabled: bool) -> Self {
        Self {
            started,
            enabled,
            marks: RefCell::new(Vec::new()),
        }
    }

    /// Notes that the phase `name` ended now.
    pub fn mark(&self, name: &'static str) {
        if self.enabled {
            self.marks.borrow_mut().push((name, Instant::now()));
        }
    }

    /// The line `--timings` prints, if enabled and anything was marked.
    pub fn report(&self) -> Option<String> {
        let marks = self.marks.borrow();
        if !self.enabled || marks.is_empty() {
            return None;
        }
        let parts: Vec<String> = marks
            .iter()
            .map(|(name, at)| format!("{name} {:.1}", (*at - self.started).as_secs_f64() * 1e3))
            .collect();
        Some(format!(
            "vmm: timings (ms since start): {}",
            parts.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_marks_in_order_and_only_when_enabled() {
        let timings = Timings::new(Instant::now(), true);
        timings.mark("first");
        timings.mark("second");
        let line = timings.report().unwrap();
        assert!(
            line.starts_with("vmm: timings (ms since start): first "),
            "{line}"
        );
        assert!(line.find("first").unwrap() < line.find("second").unwrap());

        let off = Timings::new(Instant::now(), false);
        off.mark("first");
        assert_eq!(off.report(), None);
    }
}
