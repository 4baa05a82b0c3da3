//! Telling a human what happened to an unattended run: pings (healthchecks.io style: start,
//! success, failure with the cause and the last log lines), a generic webhook (the summary as
//! JSON), and a Prometheus node-exporter textfile (written atomically), plus the one-paragraph
//! summary every backup ends with.
//!
//! A monitor that is down never fails the backup: each call has a timeout, and its failure is
//! a warning naming the monitor's host (never the whole URL: it may hold a token).

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;

use crate::catalog::Manifest;
use crate::config::{Config, MonitoringConfig, Secret};
use crate::output::human_bytes;

/// What a backup run came to.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub event: &'static str,
    /// `success` or `failure`.
    pub status: &'static str,
    pub host: String,
    pub destination: String,
    pub prefix: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub objects: Vec<ObjectReport>,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub warnings: usize,
    /// Symlinks of the data directory pointing outside it: what they point to is not in the set.
    #[serde(skip_serializing_if = "is_zero")]
    pub external_symlinks: u64,
    /// The one-paragraph summary.
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    pub component: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

impl RunReport {
    pub fn new(
        config: &Config,
        destination: String,
        started_at: DateTime<Utc>,
        outcome: Result<&Manifest, (&str, u8)>,
    ) -> RunReport {
        let finished_at = crate::clock::now();
        let duration_seconds = ((finished_at - started_at).num_milliseconds().max(0) as f64) / 1000.0;
        let mut r = RunReport {
            event: "backup",
            status: if outcome.is_ok() { "success" } else { "failure" },
            host: config.host.clone(),
            destination,
            prefix: config.storage.prefix.clone(),
            started_at,
            finished_at,
            duration_seconds,
            exit_code: 0,
            error: None,
            set: None,
            class: None,
            objects: Vec::new(),
            raw_bytes: 0,
            stored_bytes: 0,
            warnings: 0,
            external_symlinks: 0,
            summary: String::new(),
        };
        match outcome {
            Ok(m) => {
                r.set = Some(format!("{}/{}/{}", m.class, m.host, m.stamp));
                r.class = Some(m.class.to_string());
                r.objects = m
                    .objects
                    .iter()
                    .map(|o| ObjectReport {
                        component: o.component.clone(),
                        raw_bytes: o.raw_size,
                        stored_bytes: o.stored_size,
                    })
                    .collect();
                r.raw_bytes = m.objects.iter().map(|o| o.raw_size).sum();
                r.stored_bytes = m.objects.iter().map(|o| o.stored_size).sum();
                r.warnings = m.warnings.len();
                r.external_symlinks = m
                    .objects
                    .iter()
                    .filter(|o| o.component == "data")
                    .filter_map(|o| o.tar.as_ref())
                    .map(|t| t.external_symlinks_total)
                    .sum();
            }
            Err((cause, code)) => {
                r.error = Some(cause.to_string());
                r.exit_code = code;
            }
        }
        r.summary = r.paragraph();
        r
    }

    /// One paragraph: what was backed up, sizes, compression ratio, duration, class, where.
    fn paragraph(&self) -> String {
        let took = format_duration(self.duration_seconds);
        match &self.error {
            None => {
                let parts: Vec<String> = self
                    .objects
                    .iter()
                    .map(|o| format!("{} {} -> {}", o.component, human_bytes(o.raw_bytes), human_bytes(o.stored_bytes)))
                    .collect();
                let ratio =
                    if self.stored_bytes > 0 { self.raw_bytes as f64 / self.stored_bytes as f64 } else { 0.0 };
                format!(
                    "Backup of host `{}` succeeded in {took}: {} set {} in {} (prefix `{}`), {} object{} ({}); {} read, {} stored (compression {ratio:.1}x){}{}.",
                    self.host,
                    self.class.as_deref().unwrap_or("?"),
                    self.set.as_deref().unwrap_or("?"),
                    self.destination,
                    self.prefix,
                    self.objects.len(),
                    if self.objects.len() == 1 { "" } else { "s" },
                    parts.join(", "),
                    human_bytes(self.raw_bytes),
                    human_bytes(self.stored_bytes),
                    match self.warnings {
                        0 => String::new(),
                        n => format!("; {n} warning{} (see the log and the manifest)", if n == 1 { "" } else { "s" }),
                    },
                    match self.external_symlinks {
                        0 => String::new(),
                        n => format!(
                            "; {n} symlink{} in the data directory point{} outside it: what {} to is NOT in this backup (`data.follow_symlinks` archives it)",
                            if n == 1 { "" } else { "s" },
                            if n == 1 { "s" } else { "" },
                            if n == 1 { "it points" } else { "they point" }
                        ),
                    }
                )
            }
            Some(cause) => format!(
                "Backup of host `{}` into {} FAILED after {took} (exit {}): {cause}. No manifest was written: nothing of this run counts as a backup set.",
                self.host, self.destination, self.exit_code
            ),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn format_duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = secs.round() as u64;
        if s < 3600 {
            format!("{} min {} s", s / 60, s % 60)
        } else {
            format!("{} h {} min", s / 3600, (s % 3600) / 60)
        }
    }
}

/// Pings and webhooks of one run.
pub struct Monitor {
    cfg: MonitoringConfig,
}

impl Monitor {
    pub fn new(cfg: &MonitoringConfig) -> Monitor {
        Monitor { cfg: cfg.clone() }
    }

    /// The run started.
    pub async fn start(&self) {
        if let Some(url) = &self.cfg.ping_start {
            call(url, None, self.cfg.timeout, "start ping").await;
        }
    }

    /// The run ended: ping success or failure, post the webhook, write the textfile.
    pub async fn finish(&self, report: &RunReport) {
        if report.error.is_none() {
            if let Some(url) = &self.cfg.ping_success {
                call(url, Some(("text/plain", report.summary.clone().into_bytes())), self.cfg.timeout, "success ping")
                    .await;
            }
        } else if let Some(url) = &self.cfg.ping_failure {
            let mut body = format!("{}\n\nLast log lines:\n", report.summary);
            for line in crate::output::recent_log_lines() {
                body.push_str(&line);
                body.push('\n');
            }
            call(url, Some(("text/plain", body.into_bytes())), self.cfg.timeout, "failure ping").await;
        }
        if let Some(url) = &self.cfg.webhook {
            match serde_json::to_vec(report) {
                Ok(json) => call(url, Some(("application/json", json)), self.cfg.timeout, "webhook").await,
                Err(e) => tracing::warn!(error = %e, "cannot encode the webhook's JSON"),
            }
        }
        if let Some(path) = &self.cfg.textfile {
            if let Err(e) = write_textfile(path, report) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the metrics textfile");
            }
        }
    }
}

/// `https://hc-ping.com` of `https://hc-ping.com/<uuid>`: what a log may show.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    // Drop user:password@ if any.
    host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host)
}

/// GET (no body) or POST; a failure is a warning, never an error.
async fn call(url: &Secret, body: Option<(&str, Vec<u8>)>, timeout: Duration, what: &str) {
    let host = host_of(url.expose()).to_string();
    match tokio::time::timeout(timeout, send(url.expose(), body)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => tracing::debug!(monitor = %host, status, "{what} sent"),
        Ok(Ok(status)) => {
            tracing::warn!(monitor = %host, status, "{what} answered HTTP {status}; the backup is not affected")
        }
        Ok(Err(e)) => tracing::warn!(monitor = %host, error = %e, "{what} failed; the backup is not affected"),
        Err(_) => {
            tracing::warn!(monitor = %host, "{what} timed out after {} s; the backup is not affected", timeout.as_secs())
        }
    }
}

async fn send(url: &str, body: Option<(&str, Vec<u8>)>) -> Result<u16, String> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("no TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let ua = concat!("seatable-backup/", env!("CARGO_PKG_VERSION"));
    let req = match body {
        None => hyper::Request::get(uri).header("user-agent", ua).body(Full::new(Bytes::new())),
        Some((ctype, b)) => hyper::Request::post(uri)
            .header("user-agent", ua)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(b))),
    }
    .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| {
        // hyper's errors carry their cause in the source chain.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        msg
    })?;
    let status = resp.status().as_u16();
    // Drain the (small) answer so the connection closes cleanly.
    let _ = resp.into_body().collect().await;
    Ok(status)
}

/// Metric names; the file holds one sample of each per host.
const M_LAST_RUN: &str = "seatable_backup_last_run_timestamp_seconds";
const M_LAST_SUCCESS: &str = "seatable_backup_last_success_timestamp_seconds";

/// Writes the textfile: to a temporary file beside it, flushed, then renamed over it, so the
/// node exporter never reads half a file. The last success time survives a failed run.
pub fn write_textfile(path: &Path, r: &RunReport) -> std::io::Result<()> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let host = r.host.replace(['\\', '"', '\n'], "_");
    let previous_success = std::fs::read_to_string(path).ok().and_then(|old| {
        old.lines()
            .find(|l| l.starts_with(M_LAST_SUCCESS) && l.contains(&format!("host=\"{host}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    });
    let finished = r.finished_at.timestamp() as f64;
    let last_success = if r.error.is_none() { Some(finished) } else { previous_success };
    let mut s = String::new();
    let mut metric = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(s, "{name}{{host=\"{host}\"{labels}}} {v}");
        }
    };
    metric(M_LAST_RUN, "When the last backup run ended (Unix time).", &[(String::new(), finished)]);
    if let Some(t) = last_success {
        metric(M_LAST_SUCCESS, "When the last successful backup ended (Unix time).", &[(String::new(), t)]);
    }
    metric(
        "seatable_backup_last_run_duration_seconds",
        "Duration of the last backup run.",
        &[(String::new(), r.duration_seconds)],
    );
    metric(
        "seatable_backup_last_run_exit_status",
        "Exit status of the last backup run (0: success).",
        &[(String::new(), f64::from(r.exit_code))],
    );
    metric(
        "seatable_backup_last_run_success",
        "1 if the last backup run succeeded, else 0.",
        &[(String::new(), if r.error.is_none() { 1.0 } else { 0.0 })],
    );
    let esc = |c: &str| c.replace(['\\', '"', '\n'], "_");
    metric(
        "seatable_backup_last_run_stored_bytes",
        "Bytes stored per component by the last successful run.",
        &r.objects
            .iter()
            .map(|o| (format!(",component=\"{}\"", esc(&o.component)), o.stored_bytes as f64))
            .collect::<Vec<_>>(),
    );
    metric(
        "seatable_backup_last_run_raw_bytes",
        "Bytes read (before compression) per component by the last successful run.",
        &r.objects
            .iter()
            .map(|o| (format!(",component=\"{}\"", esc(&o.component)), o.raw_bytes as f64))
            .collect::<Vec<_>>(),
    );
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // The node exporter reads only `*.prom`; the temporary name is not one.
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(s.as_bytes())?;
        f.sync_all()?;
        // Readable by the node exporter, whoever it runs as.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_the_monitor_host_only() {
        assert_eq!(host_of("https://hc-ping.com/5f2b-uuid"), "hc-ping.com");
        assert_eq!(host_of("http://user:pw@127.0.0.1:8080/x?y"), "127.0.0.1:8080");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(12.34), "12.3 s");
        assert_eq!(format_duration(125.0), "2 min 5 s");
        assert_eq!(format_duration(7300.0), "2 h 1 min");
    }
}
