//! The guest console of a VM that runs behind another command (`vmm run`): kept in memory,
//! only its last bytes, so a failure can be explained with what the guest said last
//! without letting a chatty guest grow the VMM without bound.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// How much of the console is kept: enough for a kernel panic's message and backtrace.
pub const CONSOLE_LOG_BYTES: usize = 64 * 1024;

/// The last [`CONSOLE_LOG_BYTES`] bytes the guest wrote to its console.
#[derive(Debug, Default)]
pub struct ConsoleLog {
    bytes: VecDeque<u8>,
}

impl ConsoleLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn append(&mut self, buf: &[u8]) {
        self.bytes.extend(buf);
        let excess = self.bytes.len().saturating_sub(CONSOLE_LOG_BYTES);
        self.bytes.drain(..excess);
    }

    /// The last `n` lines (carriage returns removed), oldest first.
    pub fn tail_lines(&self, n: usize) -> Vec<String> {
        let text: Vec<u8> = self.bytes.iter().copied().filter(|&b| b != b'\r').collect();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let start = lines.len().saturating_sub(n);
        lines[start..].iter().map(|l| (*l).to_owned()).collect()
    }
}

/// The serial port's output end when the console goes to a [`ConsoleLog`].
pub struct ConsoleLogWriter(pub Arc<Mutex<ConsoleLog>>);

impl Write for ConsoleLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).append(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_log_keeps_only_the_last_bytes() {
        let mut log = ConsoleLog::new();
        let line = vec![b'x'; 1000];
        for _ in 0..(CONSOLE_LOG_BYTES / 1000 + 10) {
            log.append(&line);
        }
        assert_eq!(log.bytes.len(), CONSOLE_LOG_BYTES);
    }

    #[test]
    fn tail_lines_are_the_last_non_empty_lines_without_carriage_returns() {
        let mut log = ConsoleLog::new();
        log.append(b"one\r\ntwo\r\n\r\nthree\r\nfour");
        assert_eq!(log.tail_lines(2), vec!["three", "four"]);
        assert_eq!(log.tail_lines(10).len(), 4);
    }
}
