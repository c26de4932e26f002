//! The host section: the machine's facts, and `vmm doctor`'s JSON report rendered
//! generically (its keys may grow without this file changing).

use std::fmt::{self, Write};

use serde_json::Value;

use super::super::report::HostFacts;
use super::Esc;

/// The host's facts, then `vmm doctor`'s report key by key.
pub(super) fn section(out: &mut String, h: &HostFacts) -> fmt::Result {
    writeln!(
        out,
        "<section id=\"host\">\n<h2>Host</h2>\n<dl class=\"facts\">"
    )?;
    for (key, value) in [
        ("kernel", h.kernel_release.clone()),
        ("CPU", h.cpu_model.clone()),
        ("CPUs", h.cpus.to_string()),
        ("memory", fmt_mib(h.mem_total_mib)),
    ] {
        writeln!(out, "<div><dt>{key}</dt><dd>{}</dd></div>", Esc(&value))?;
    }
    writeln!(out, "</dl>")?;
    writeln!(
        out,
        "<h3><code>vmm doctor</code></h3>\n<dl class=\"facts doctor\">"
    )?;
    match &h.doctor {
        Value::Object(map) => {
            for (key, value) in map {
                write!(out, "<div><dt>{}</dt><dd>", Esc(key))?;
                json_compact(out, value)?;
                writeln!(out, "</dd></div>")?;
            }
        }
        other => {
            write!(out, "<div><dt>report</dt><dd>")?;
            json_compact(out, other)?;
            writeln!(out, "</dd></div>")?;
        }
    }
    writeln!(out, "</dl>\n</section>")
}

/// A JSON value on one line: objects of booleans as ✓/✗ chips, other objects as
/// `key: value` pairs, arrays comma-separated, null as a dash.
fn json_compact(out: &mut String, v: &Value) -> fmt::Result {
    match v {
        Value::Null => write!(out, "<span class=\"muted\">&ndash;</span>"),
        Value::Bool(true) => write!(out, "<span class=\"yes\">yes</span>"),
        Value::Bool(false) => write!(out, "<span class=\"no\">no</span>"),
        Value::Number(n) => write!(out, "{n}"),
        Value::String(s) => write!(out, "{}", Esc(s)),
        Value::Array(items) if items.is_empty() => {
            write!(out, "<span class=\"muted\">none</span>")
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_compact(out, item)?;
            }
            Ok(())
        }
        Value::Object(map) if !map.is_empty() && map.values().all(Value::is_boolean) => {
            for (key, value) in map {
                let (class, mark) = match value.as_bool() {
                    Some(true) => ("chip yes", "&#10003;"),
                    _ => ("chip no", "&#10007;"),
                };
                write!(out, "<span class=\"{class}\">{mark} {}</span> ", Esc(key))?;
            }
            Ok(())
        }
        Value::Object(map) => {
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str("; ");
                }
                write!(out, "<span class=\"jkey\">{}</span>: ", Esc(key))?;
                json_compact(out, value)?;
            }
            Ok(())
        }
    }
}

fn fmt_mib(mib: u64) -> String {
    match mib {
        0..=1023 => format!("{mib} MiB"),
        _ => format!("{:.1} GiB ({mib} MiB)", mib as f64 / 1024.0),
    }
}
