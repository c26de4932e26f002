//! Headless Chromium checks for `vmm compare`'s HTML report, for integration tests: the
//! browser's DOM has every chart and the probe matrix, and a screenshot of the page is not
//! blank. Include with `#[path = "common/chromium.rs"] mod chromium;`.
//!
//! Chromium comes from Debian's `chromium` package; a test should skip (not fail) when
//! [`find_chromium`] finds none.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one Chromium run may take before it is killed and reported.
pub const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
/// The screenshot's size: wide enough for two charts a row, tall enough for a few rows.
pub const WINDOW_SIZE: (u32, u32) = (1280, 2400);
/// A screenshot with fewer pixels off the background colour than this is blank.
pub const MIN_NON_BACKGROUND_PIXELS: usize = 500;
/// A screenshot with this many colours or fewer is blank or a flat error page: text is
/// anti-aliased and the charts are coloured, so a real page has hundreds.
pub const MIN_DISTINCT_COLOURS: usize = 32;

/// What [`check_report`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderCheck {
    /// `<figure class="chart">` elements in the browser's DOM (all of them, not only the
    /// ids asked for).
    pub dom_charts: usize,
    /// Distinct RGBA colours in the screenshot.
    pub distinct_colours: usize,
    /// Screenshot pixels that differ from its most common colour.
    pub non_background_pixels: usize,
}

/// The Chromium binary: `chromium`, `chromium-browser`, `google-chrome` or
/// `google-chrome-stable` on PATH, else `/usr/bin/chromium`.
pub fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .chain([PathBuf::from("/usr/bin/chromium")])
    .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Loads `html` in headless Chromium and checks (1) that its DOM has a
/// `<figure class="chart" data-benchmark=ID>` containing an `<svg>` for every id in
/// `chart_ids`, and an element with `id="probe-matrix"`; (2) that a screenshot of the page
/// is not blank. The error names everything that was missing.
pub fn check_report(html: &Path, chart_ids: &[&str]) -> Result<RenderCheck, String> {
    let chromium = find_chromium()
        .ok_or("no Chromium found (chromium, chromium-browser, google-chrome on PATH)")?;
    let html = html
        .canonicalize()
        .map_err(|e| format!("report {}: {e}", html.display()))?;
    let url = file_url(&html);
    let tmp = TempDir::new()?;

    let dom_file = tmp.path().join("dom.html");
    run_chromium(&chromium, &tmp, &["--dump-dom", &url], Some(&dom_file))?;
    let dom = fs::read_to_string(&dom_file)
        .map_err(|e| format!("reading Chromium's --dump-dom output: {e}"))?;
    let dom_charts = check_dom(&dom, chart_ids)?;

    let png = tmp.path().join("screenshot.png");
    let (w, h) = WINDOW_SIZE;
    run_chromium(
        &chromium,
        &tmp,
        &[
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={w},{h}"),
            "--hide-scrollbars",
            &url,
        ],
        None,
    )?;
    let (distinct_colours, non_background_pixels) = screenshot_colours(&png)?;
    if non_background_pixels < MIN_NON_BACKGROUND_PIXELS {
        return Err(format!(
            "the screenshot is blank: only {non_background_pixels} pixels differ from the \
             background colour (at least {MIN_NON_BACKGROUND_PIXELS} expected)"
        ));
    }
    if distinct_colours <= MIN_DISTINCT_COLOURS {
        return Err(format!(
            "the screenshot looks blank: it has only {distinct_colours} distinct colours \
             (more than {MIN_DISTINCT_COLOURS} expected)"
        ));
    }
    Ok(RenderCheck {
        dom_charts,
        distinct_colours,
        non_background_pixels,
    })
}

/// Checks a serialized DOM; returns how many chart figures it has.
pub fn check_dom(dom: &str, chart_ids: &[&str]) -> Result<usize, String> {
    let figures = chart_figures(dom);
    let mut missing = Vec::new();
    for id in chart_ids {
        match figures.iter().find(|f| f.id.as_deref() == Some(*id)) {
            None => missing.push(format!(
                "chart {id:?}: no <figure class=\"chart\" data-benchmark=\"{id}\"> (charts \
                 found: {})",
                list(figures.iter().filter_map(|f| f.id.as_deref()))
            )),
            Some(f) if !f.has_svg => missing.push(format!(
                "chart {id:?}: its <figure class=\"chart\" data-benchmark=\"{id}\"> has no <svg>"
            )),
            Some(_) => {}
        }
    }
    if !dom.contains("id=\"probe-matrix\"") {
        missing.push("no element with id=\"probe-matrix\"".to_string());
    }
    match missing.is_empty() {
        true => Ok(figures.len()),
        false => Err(format!(
            "the rendered DOM is incomplete: {}",
            missing.join("; ")
        )),
    }
}

struct Figure {
    /// Its `data-benchmark`, unescaped.
    id: Option<String>,
    has_svg: bool,
}

/// Every `<figure>` whose class list has `chart`. Chromium serializes attributes as
/// `name="value"` with `&` and `"` escaped; figures do not nest.
fn chart_figures(dom: &str) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find("<figure") {
        rest = &rest[start..];
        let tag_end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..tag_end];
        let body_end = rest.find("</figure>").unwrap_or(rest.len());
        let body = &rest[tag_end..body_end];
        let is_chart =
            attribute(tag, "class").is_some_and(|c| c.split_whitespace().any(|c| c == "chart"));
        if is_chart {
            out.push(Figure {
                id: attribute(tag, "data-benchmark"),
                has_svg: body.contains("<svg"),
            });
        }
        rest = &rest[body_end.max(1)..];
    }
    out
}

/// The value of attribute `name` in a start tag, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(
        tag[start..start + len]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&nbsp;", "\u{a0}")
            .replace("&amp;", "&"),
    )
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.map(|s| format!("{s:?}")).collect();
    match items.is_empty() {
        true => "none".to_string(),
        false => items.join(", "),
    }
}

/// Runs headless Chromium with `args`, its stdout to `stdout` (or discarded), and waits at
/// most [`CHROMIUM_TIMEOUT`]. Chromium runs in its own process group, so an overrun kills
/// the browser and every helper process it started.
fn run_chromium(
    chromium: &Path,
    tmp: &TempDir,
    args: &[&str],
    stdout: Option<&Path>,
) -> Result<(), String> {
    let stderr_path = tmp.path().join("stderr.txt");
    let stderr =
        File::create(&stderr_path).map_err(|e| format!("creating {stderr_path:?}: {e}"))?;
    let stdout = match stdout {
        Some(path) => {
            Stdio::from(File::create(path).map_err(|e| format!("creating {path:?}: {e}"))?)
        }
        None => Stdio::null(),
    };
    let profile = tmp.path().join("profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            // Root cannot use Chromium's sandbox; the page is our own file.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", chromium.display()))?;

    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CHROMIUM_TIMEOUT => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "Chromium ({}) did not finish within {CHROMIUM_TIMEOUT:?} and was killed{}",
                    args.join(" "),
                    stderr_tail(&stderr_path)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for Chromium: {e}"));
            }
        }
    };
    check_status(status, args, &stderr_path)
}

fn check_status(status: ExitStatus, args: &[&str], stderr_path: &Path) -> Result<(), String> {
    match status.success() {
        true => Ok(()),
        false => Err(format!(
            "Chromium ({}) failed: {status}{}",
            args.join(" "),
            stderr_tail(stderr_path)
        )),
    }
}

/// Sends SIGKILL to the process group `pgid`: Chromium's own (`process_group(0)`), whose
/// leader is not yet reaped, so the id cannot have been reused.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last lines Chromium wrote to stderr, for an error message.
fn stderr_tail(path: &Path) -> String {
    let mut text = String::new();
    if File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
        || text.trim().is_empty()
    {
        return String::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    format!("\n--- Chromium's stderr (last lines) ---\n{tail}")
}

/// Decodes the screenshot; returns (distinct colours, pixels off the most common colour).
fn screenshot_colours(png_path: &Path) -> Result<(usize, usize), String> {
    let file = File::open(png_path).map_err(|e| {
        format!(
            "Chromium wrote no screenshot at {}: {e}",
            png_path.display()
        )
    })?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("the screenshot is not a PNG: {e}"))?;
    let size = reader
        .output_buffer_size()
        .ok_or("the screenshot is too large to decode")?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("decoding the screenshot: {e}"))?;
    let data = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut counts: HashMap<[u8; 4], usize> = HashMap::new();
    for row in data.chunks_exact(info.line_size) {
        for px in row[..info.width as usize * channels].chunks_exact(channels) {
            let rgba = match *px {
                [g] => [g, g, g, 255],
                [g, a] => [g, g, g, a],
                [r, g, b] => [r, g, b, 255],
                [r, g, b, a] => [r, g, b, a],
                _ => unreachable!("PNG pixels have 1 to 4 samples"),
            };
            *counts.entry(rgba).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    let background = counts.values().copied().max().unwrap_or(0);
    Ok((counts.len(), total - background))
}

/// A `file://` URL for an absolute path, percent-encoding all but unreserved bytes and `/`.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                url.push(char::from(b))
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    url
}

/// A fresh directory under the system's temp dir, removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "vmm-chromium-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
