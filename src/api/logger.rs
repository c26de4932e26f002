//! `PUT /logger`: Firecracker-style log lines for the API's own events (each request, and
//! what became of it), filtered by level, with the level and the origin in the line when
//! asked. With a `log_path`, the VMM's standard error is moved onto the same file or
//! pipe, so everything the VMM reports (the VM's end, device errors, a seccomp report)
//! lands there too, unfiltered, as Firecracker sends all of its output to its logger.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::bodies::{self, LogLevel};
use super::sink;

/// The instance id in every line (Firecracker's, without `--id`).
pub const INSTANCE_ID: &str = "anonymous-instance";

struct Config {
    file: Option<File>,
    level: LogLevel,
    show_level: bool,
    show_origin: bool,
}

pub struct Logger(Mutex<Config>);

impl Default for Logger {
    fn default() -> Self {
        Logger(Mutex::new(Config {
            file: None,
            level: LogLevel::Info,
            show_level: false,
            show_origin: false,
        }))
    }
}

impl Logger {
    /// Applies a `PUT /logger` body.
    pub fn configure(&self, body: bodies::Logger) -> Result<(), String> {
        let file = match &body.log_path {
            Some(path) => {
                let file = sink::open("Logger error", path)?;
                move_stderr_to(path)?;
                Some(file)
            }
            None => None,
        };
        {
            let mut config = self.lock();
            if file.is_some() {
                config.file = file;
            }
            config.level = body.level.unwrap_or(config.level);
            config.show_level = body.show_level.unwrap_or(config.show_level);
            config.show_origin = body.show_log_origin.unwrap_or(config.show_origin);
        }
        if let Some(module) = body.module {
            log_at!(
                self,
                LogLevel::Warning,
                "logger.module {module:?} is ignored: vmm's log lines are not split by module"
            );
        }
        Ok(())
    }

    /// Writes `message` at `level` when the configuration lets it through; to the log
    /// path, or to standard error before one is set. `origin` is `file:line`.
    pub fn log(&self, level: LogLevel, origin: &str, message: &str) {
        let mut config = self.lock();
        if level == LogLevel::Off || level > config.level {
            return;
        }
        let line = format_line(
            &crate::compare::clock::rfc3339_now(),
            std::thread::current().name().unwrap_or("vmm"),
            config.show_level.then_some(level),
            config.show_origin.then_some(origin),
            message,
        );
        match &mut config.file {
            Some(file) => {
                // A full pipe loses the line; the API goes on.
                let _ = sink::write_line(file, &line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Config> {
        // Each field is replaced whole: a panic elsewhere leaves a usable configuration.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Points the VMM's standard error at `path` (just opened by [`sink::open`], so it exists).
/// Through a blocking descriptor of its own: `eprintln!` panics when a write fails, and a
/// full pipe fails a non-blocking write; this one waits for the reader instead.
fn move_stderr_to(path: &std::path::Path) -> Result<(), String> {
    let fail = |e: std::io::Error| {
        format!(
            "Logger error: cannot send standard error to {}: {e}",
            path.display()
        )
    };
    let stderr = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    // SAFETY: both fds are open; dup2 only replaces fd 2, which every writer of stderr
    // reaches through its number. `stderr` is closed after, fd 2 keeps the file open.
    if unsafe { libc::dup2(stderr.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `TIME [INSTANCE:THREAD(:LEVEL)(:ORIGIN)] MESSAGE`, as Firecracker writes its lines.
fn format_line(
    time: &str,
    thread: &str,
    level: Option<LogLevel>,
    origin: Option<&str>,
    message: &str,
) -> String {
    let mut tag = format!("{INSTANCE_ID}:{thread}");
    if let Some(level) = level {
        tag.push(':');
        tag.push_str(level.name());
    }
    if let Some(origin) = origin {
        tag.push(':');
        tag.push_str(origin);
    }
    format!("{time} [{tag}] {message}")
}

/// Logs through `logger` with this line of the source as the origin.
macro_rules! log_at {
    ($logger:expr, $level:expr, $($arg:tt)*) => {
        $logger.log($level, concat!(file!(), ":", line!()), &format!($($arg)*))
    };
}
pub(crate) use log_at;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_level_and_origin_only_when_asked() {
        assert_eq!(
            format_line("T", "vmm-api", None, None, "hello"),
            "T [anonymous-instance:vmm-api] hello"
        );
        assert_eq!(
            format_line("T", "vmm-api", Some(LogLevel::Warning), Some("a.rs:3"), "x"),
            "T [anonymous-instance:vmm-api:WARN:a.rs:3] x"
        );
    }

    #[test]
    fn levels_above_the_configured_one_are_dropped() {
        let dir = std::env::temp_dir().join(format!("vmm-api-logger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let logger = Logger::default();
        // Not through `configure`: that would move this test process's stderr.
        logger.lock().file = Some(sink::open("log", &path).unwrap());
        logger.lock().level = LogLevel::Warning;
        log_at!(logger, LogLevel::Info, "quiet {}", 1);
        log_at!(logger, LogLevel::Error, "loud {}", 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!text.contains("quiet"), "{text}");
        assert!(text.contains("] loud 2\n"), "{text}");
    }
}
