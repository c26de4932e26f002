//! `PUT /metrics`: JSON lines of the VMM's own counters, as Firecracker writes its
//! metrics: one object per flush, counters as the change since the previous flush, a
//! section per component. Flushed on `FlushMetrics`, every [`INTERVAL`] while the VM runs,
//! and once more when it ends.
//!
//! Sections: `api_server` (requests, failed_requests), `vcpu` (`exit_<reason>`, each KVM
//! exit reason as `--trace-exits` names it), `block`, `net`, `vsock`, `entropy` and
//! `balloon` (requests: completed, failed ones included; requests_failed, chains_rejected,
//! rate_limiter_throttled: summed over the devices of that kind; the balloon adds
//! inflated_pages, deflated_pages, stats_updates),
//! and `boot_timer` (guest_reached_us, the time the guest wrote the boot-timer magic after
//! the VMM started: a value, not a change).

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::bodies;
use super::logger::INSTANCE_ID;
use super::sink;
use crate::vm::running::{RunningVm, VmHandles};

/// How often metrics are written while the VM runs (Firecracker's period).
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Cumulative counters by section and name.
type Counters = BTreeMap<&'static str, BTreeMap<String, u64>>;

struct Sink {
    file: File,
    emit_id: bool,
    properties: BTreeMap<String, String>,
    /// The counters at the previous flush.
    last: Counters,
    next_flush: Instant,
}

pub struct Metrics {
    sink: Mutex<Option<Sink>>,
    running: Arc<RunningVm>,
    requests: AtomicU64,
    failed_requests: AtomicU64,
}

impl Metrics {
    pub fn new(running: Arc<RunningVm>) -> Metrics {
        Metrics {
            sink: Mutex::new(None),
            running,
            requests: AtomicU64::new(0),
            failed_requests: AtomicU64::new(0),
        }
    }

    /// Applies a `PUT /metrics` body; once only, as Firecracker.
    pub fn configure(&self, body: bodies::Metrics) -> Result<(), String> {
        let mut sink = self.lock();
        if sink.is_some() {
            return Err("Metrics error: Reinitialization of metrics not allowed.".into());
        }
        *sink = Some(Sink {
            file: sink::open("Metrics error", &body.metrics_path)?,
            emit_id: body.emit_id.unwrap_or(false),
            properties: body.properties.unwrap_or_default(),
            last: Counters::new(),
            next_flush: Instant::now() + INTERVAL,
        });
        Ok(())
    }

    /// Counts one API request, and whether it failed.
    pub fn count_request(&self, failed: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed_requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// When the periodic flush is due: only while metrics are configured and a VM ran.
    pub fn next_flush(&self) -> Option<Instant> {
        let sink = self.lock();
        let sink = sink.as_ref()?;
        self.running.has_started().then_some(sink.next_flush)
    }

    /// Writes one line now; nothing when metrics are not configured.
    pub fn flush(&self) -> Result<(), String> {
        let mut guard = self.lock();
        let Some(sink) = guard.as_mut() else {
            return Ok(());
        };
        let now = self.counters(self.running.last_handles().as_deref());
        let mut line = Map::new();
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        line.insert("utc_timestamp_ms".into(), json!(ms));
        if sink.emit_id {
            line.insert("id".into(), json!(INSTANCE_ID));
        }
        if !sink.properties.is_empty() {
            line.insert("properties".into(), json!(sink.properties));
        }
        for (section, values) in &now {
            let last = sink.last.get(section);
            let deltas: Map<String, Value> = values
                .iter()
                .map(|(name, &v)| {
                    let before = last.and_then(|l| l.get(name)).copied().unwrap_or(0);
                    (name.clone(), json!(v.saturating_sub(before)))
                })
                .collect();
            line.insert((*section).into(), Value::Object(deltas));
        }
        if let Some(us) = self
            .running
            .last_handles()
            .and_then(|h| h.boot_time.get().map(|d| d.as_micros()))
        {
            line.insert("boot_timer".into(), json!({ "guest_reached_us": us }));
        }
        sink.last = now;
        sink.next_flush = Instant::now() + INTERVAL;
        sink::write_line(&mut sink.file, &Value::Object(line).to_string())
            .map_err(|e| format!("Metrics error: cannot write the metrics: {e}"))
    }

    fn counters(&self, vm: Option<&VmHandles>) -> Counters {
        let mut c = Counters::new();
        let api = c.entry("api_server").or_default();
        api.insert("requests".into(), self.requests.load(Ordering::Relaxed));
        api.insert(
            "failed_requests".into(),
            self.failed_requests.load(Ordering::Relaxed),
        );
        let Some(vm) = vm else {
            return c;
        };
        let vcpu = c.entry("vcpu").or_default();
        for (reason, n) in vm.exit_counts.totals() {
            vcpu.insert(format!("exit_{}", reason.replace('-', "_")), n);
        }
        for device in vm.device_metrics.snapshot() {
            let section = c.entry(section_of(device.kind)).or_default();
            for (name, n) in [
                ("requests", device.requests),
                ("requests_failed", device.errors.requests_failed),
                ("chains_rejected", device.errors.chains_rejected),
                ("rate_limiter_throttled", device.throttled),
            ] {
                *section.entry(name.into()).or_default() += n;
            }
        }
        if let Some(balloon) = &vm.balloon {
            let s = balloon.stats();
            let section = c.entry("balloon").or_default();
            section.insert("inflated_pages".into(), s.inflated_pages);
            section.insert("deflated_pages".into(), s.deflated_pages);
            section.insert("stats_updates".into(), s.stats_updates);
        }
        c
    }

    fn lock(&self) -> MutexGuard<'_, Option<Sink>> {
        // The sink is replaced whole or its counters after a write: always usable.
        self.sink.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Firecracker's section name for a device kind (Linux's driver name).
fn section_of(kind: &str) -> &'static str {
    match kind {
        "blk" => "block",
        "net" => "net",
        "vsock" => "vsock",
        "rng" => "entropy",
        "balloon" => "balloon",
        _ => "other_devices",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(dir: &std::path::Path) -> (Metrics, std::path::PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("metrics.json");
        let metrics = Metrics::new(RunningVm::new());
        let body = serde_json::from_value(json!({
            "metrics_path": path, "emit_id": true, "properties": {"team": "vmm"}
        }))
        .unwrap();
        metrics.configure(body).unwrap();
        (metrics, path)
    }

    #[test]
    fn each_flush_writes_a_json_line_of_changes_since_the_last() {
        let dir = std::env::temp_dir().join(format!("vmm-api-metrics-{}", std::process::id()));
        let (metrics, path) = configured(&dir);
        metrics.count_request(false);
        metrics.count_request(true);
        metrics.flush().unwrap();
        metrics.count_request(false);
        metrics.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["api_server"]["requests"], 2);
        assert_eq!(lines[0]["api_server"]["failed_requests"], 1);
        assert_eq!(lines[1]["api_server"]["requests"], 1);
        assert_eq!(lines[1]["api_server"]["failed_requests"], 0);
        assert_eq!(lines[0]["id"], INSTANCE_ID);
        assert_eq!(lines[0]["properties"]["team"], "vmm");
        assert!(lines[0]["utc_timestamp_ms"].as_u64().unwrap() > 0);
    }

    #[test]
    fn metrics_are_configured_once() {
        let dir = std::env::temp_dir().join(format!("vmm-api-metrics2-{}", std::process::id()));
        let (metrics, path) = configured(&dir);
        let again = serde_json::from_value(json!({ "metrics_path": path })).unwrap();
        let err = metrics.configure(again).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            err,
            "Metrics error: Reinitialization of metrics not allowed."
        );
    }

    #[test]
    fn no_periodic_flush_before_a_vm_runs() {
        let dir = std::env::temp_dir().join(format!("vmm-api-metrics3-{}", std::process::id()));
        let (metrics, _) = configured(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(metrics.next_flush(), None);
    }
}
