//! Where `vmm-runc` reports: stderr always, and the `--log` file when given, as JSON lines
//! (`{"level":"error","msg":...,"time":...}`, logrus's shape, which containerd's shim
//! and Podman read back to show the error) or as text.

use std::io::Write;
use std::path::PathBuf;

use super::cli::LogFormat;

pub struct Log {
    file: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

impl Log {
    pub fn new(file: Option<PathBuf>, format: LogFormat, debug: bool) -> Self {
        Self {
            file,
            format,
            debug,
        }
    }

    pub fn error(&self, msg: &str) {
        eprintln!("vmm-runc: {msg}");
        self.write("error", msg);
    }

    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.file else { return };
        let time = super::now_rfc3339();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
            }
            LogFormat::Text => format!("{time} {level}: {msg}"),
        };
        // The log is best effort: failing to write it must not hide the error itself.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
