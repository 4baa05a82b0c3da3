//! What a human sees while a run goes on: a progress line on a terminal (component, bytes
//! read and stored, rate), redrawn twice a second on stderr, and the log writer, which clears
//! that line before each log line and keeps the last lines for a failure report.
//!
//! Without a terminal on stderr (cron, systemd, a pipe) or with `--log-format json` there is
//! no progress line at all: logs only.

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// Log lines kept for a failure report.
const RECENT_LINES: usize = 40;

static RECENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
/// The progress line is on screen (so a log line must clear it first).
static SHOWN: AtomicBool = AtomicBool::new(false);

/// The last log lines (oldest first).
pub fn recent_log_lines() -> Vec<String> {
    RECENT.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default()
}

fn remember(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(mut r) = RECENT.lock() {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            // Drop terminal colour codes: the lines go into a plain-text report.
            r.push_back(strip_ansi(line));
            while r.len() > RECENT_LINES {
                r.pop_front();
            }
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The log writer: stderr, after clearing the progress line; every line also remembered.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        remember(buf);
        let mut err = std::io::stderr().lock();
        if SHOWN.swap(false, Ordering::AcqRel) {
            err.write_all(b"\r\x1b[2K")?;
        }
        err.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// The progress line of one run: the component being transferred and its byte counters,
/// redrawn twice a second while the handle lives. A run that has none (no terminal, JSON logs)
/// shows nothing; `RunContext` carries it to the code that transfers.
#[derive(Clone)]
pub struct Progress {
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    component: Mutex<Option<(String, Instant)>>,
    read: AtomicU64,
    stored: AtomicU64,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl Progress {
    /// Starts the line (on a terminal, with text logs); it stops being drawn once every handle
    /// is dropped.
    pub fn start() -> Progress {
        let counters = Arc::new(Counters::default());
        let weak = Arc::downgrade(&counters);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(c) = weak.upgrade() else { break };
                draw(&c);
            }
        });
        Progress { counters }
    }

    /// A new component starts (`db/dtable_db`, `data`, ...).
    pub fn begin(&self, component: &str) {
        let p = &self.counters;
        p.read.store(0, Ordering::Relaxed);
        p.stored.store(0, Ordering::Relaxed);
        if let Ok(mut c) = p.component.lock() {
            *c = Some((component.to_string(), Instant::now()));
        }
        draw(p);
    }

    /// The component is done: the line goes away (the log says what was stored).
    pub fn end(&self) {
        if let Ok(mut c) = self.counters.component.lock() {
            *c = None;
        }
        if SHOWN.swap(false, Ordering::AcqRel) {
            let _ = std::io::stderr().lock().write_all(b"\r\x1b[2K");
        }
    }

    /// Counts the bytes a buffered reader hands out (the component's raw bytes).
    pub fn count_read(&self, inner: Pin<Box<dyn AsyncBufRead + Send>>) -> Pin<Box<dyn AsyncBufRead + Send>> {
        Box::pin(CountRead { inner, counters: self.counters.clone() })
    }

    /// Counts the bytes a reader yields (the component's stored, compressed bytes).
    pub fn count_stored(&self, inner: Pin<Box<dyn AsyncRead + Send>>) -> Pin<Box<dyn AsyncRead + Send>> {
        Box::pin(CountStored { inner, counters: self.counters.clone() })
    }
}

fn draw(p: &Counters) {
    let Some((name, since)) = p.component.lock().ok().and_then(|c| c.clone()) else { return };
    let (read, stored) = (p.read.load(Ordering::Relaxed), p.stored.load(Ordering::Relaxed));
    let secs = since.elapsed().as_secs_f64().max(0.001);
    let line = format!(
        "\r\x1b[2K{name}: {} read, {} stored, {}/s, {:.0} s",
        human_bytes(read),
        human_bytes(stored),
        human_bytes((read as f64 / secs) as u64),
        secs
    );
    let mut err = std::io::stderr().lock();
    if err.write_all(line.as_bytes()).and_then(|_| err.flush()).is_ok() {
        SHOWN.store(true, Ordering::Release);
    }
}

struct CountRead {
    inner: Pin<Box<dyn AsyncBufRead + Send>>,
    counters: Arc<Counters>,
}

impl AsyncRead for CountRead {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        self.counters.read.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncBufRead for CountRead {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        self.get_mut().inner.as_mut().poll_fill_buf(cx)
    }
    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        self.counters.read.fetch_add(amt as u64, Ordering::Relaxed);
        self.inner.as_mut().consume(amt);
    }
}

struct CountStored {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    counters: Arc<Counters>,
}

impl AsyncRead for CountStored {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        self.counters.stored.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        r
    }
}

/// `1536` -> `1.5 KiB`: binary units, one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_codes_are_stripped_from_remembered_lines() {
        assert_eq!(strip_ansi("\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m x"), "2026  INFO x");
        remember(b"one\ntwo\n\n");
        let r = recent_log_lines();
        assert!(r.ends_with(&["one".to_string(), "two".to_string()]), "{r:?}");
    }
}
