//! Running unattended: the run lock (a second run is refused with exit 75, a killed run's lock
//! does not block), pings, webhook and metrics textfile checked against a small HTTP listener
//! in this test (including a monitor that is down: the backup still succeeds), the summary,
//! the progress line under a pseudo-terminal and its absence otherwise, completions and man
//! page. Backups here go into the local-directory store: no service is involved.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_exit, stderr, stdout, Run};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One request the listener received.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    body: String,
}

/// A tiny HTTP/1.1 listener on a free loopback port: records every request and answers 200.
/// A request to a path containing `slow` is answered only after `delay`.
struct Listener {
    port: u16,
    hits: Arc<Mutex<VecDeque<Hit>>>,
}

impl Listener {
    async fn start(delay: Duration) -> Listener {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(VecDeque::new()));
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = l.accept().await else { return };
                let h = h.clone();
                tokio::spawn(async move {
                    let mut r = BufReader::new(sock);
                    let mut line = String::new();
                    if r.read_line(&mut line).await.is_err() {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let (method, path) =
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                    let mut len = 0usize;
                    loop {
                        let mut hl = String::new();
                        if r.read_line(&mut hl).await.unwrap_or(0) == 0 || hl == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = hl.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; len];
                    let _ = r.read_exact(&mut body).await;
                    let slow = path.contains("slow");
                    h.lock().unwrap().push_back(Hit {
                        method,
                        path,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    if slow {
                        tokio::time::sleep(delay).await;
                    }
                    let _ = r
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK")
                        .await;
                });
            }
        });
        Listener { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().iter().cloned().collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<Hit> {
        for _ in 0..200 {
            if self.hits.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.hits()
    }
}

/// A data directory, a local destination and a lock file of this test's own.
struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    dest: PathBuf,
    lock: PathBuf,
}

impl Setup {
    fn new(size_mb: u32) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let dest = tmp.path().join("dest");
        std::fs::create_dir_all(&dest).unwrap();
        if size_mb > 0 {
            common::demo_data(&data, size_mb);
        } else {
            std::fs::create_dir_all(data.join("conf")).unwrap();
            std::fs::write(data.join("conf/seafile.conf"), "[general]\n").unwrap();
        }
        let lock = tmp.path().join("run.lock");
        Setup { _tmp: tmp, data, dest, lock }
    }

    fn backup(&self) -> Run {
        self.backup_args(&["backup", "--only", "data"])
    }

    fn backup_args(&self, args: &[&str]) -> Run {
        Run::new(args)
            .env("SEATABLE_BACKUP_DESTINATION", format!("file://{}", self.dest.display()))
            .env("SEATABLE_BACKUP_DATA_DIR", &self.data)
            .env("SEATABLE_BACKUP_LOCK_FILE", &self.lock)
            .env("SEATABLE_BACKUP_HOST_NAME", "unattended")
            .env("SEATABLE_BACKUP_BIG_DATA_BACKUP", "false")
    }

    fn manifests(&self) -> usize {
        walk(&self.dest).iter().filter(|p| p.ends_with("manifest.json")).count()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Waits until the lock file names a holder.
async fn lock_held(lock: &Path) -> String {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(lock) {
            if s.contains("pid ") {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the first run never took the lock `{}`", lock.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_is_refused_while_the_first_goes_on() {
    let s = Setup::new(0);
    // The first run is held at its start ping for 3 s, with the lock taken.
    let hook = Listener::start(Duration::from_secs(3)).await;
    let first = s.backup().env("SEATABLE_BACKUP_PING_START_URL", hook.url("/slow-start")).spawn();
    let holder = lock_held(&s.lock).await;
    assert!(holder.contains(&format!("pid {}", first.id())), "{holder}");

    let second = s.backup().output();
    assert_exit(&second, 75);
    let err = stderr(&second);
    assert!(
        err.contains("another seatable-backup run holds the lock") && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    assert!(err.contains(&s.lock.display().to_string()), "{err}");
    // Prune and restore take the same lock.
    let prune = Run::new(&["prune"])
        .env("SEATABLE_BACKUP_DESTINATION", format!("file://{}", s.dest.display()))
        .env("SEATABLE_BACKUP_LOCK_FILE", &s.lock)
        .output();
    assert_exit(&prune, 75);
    // `plan` says so, without taking the lock.
    let plan = s.backup_args(&["plan"]).env("SEATABLE_BACKUP_DB_ENABLED", "false").output();
    assert_exit(&plan, 0);
    assert!(stdout(&plan).contains("is held right now by pid"), "{}", stdout(&plan));

    let first = first.wait_with_output().unwrap();
    assert_exit(&first, 0);
    assert_eq!(s.manifests(), 1, "the first run was affected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runs_lock_does_not_block_the_next() {
    let s = Setup::new(0);
    let hook = Listener::start(Duration::from_secs(30)).await;
    let mut first = s.backup().env("SEATABLE_BACKUP_PING_START_URL", hook.url("/slow-start")).spawn();
    lock_held(&s.lock).await;
    first.kill().unwrap();
    first.wait().unwrap();
    // The file stays, naming a dead process; the kernel released the lock with it.
    assert!(std::fs::read_to_string(&s.lock).unwrap().contains(&format!("pid {}", first.id())));
    let next = s.backup().output();
    assert_exit(&next, 0);
    assert_eq!(s.manifests(), 1);
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(name) && !l.starts_with('#')).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_webhook_and_textfile_tell_what_happened() {
    let s = Setup::new(0);
    let hook = Listener::start(Duration::ZERO).await;
    let metrics_dir = tempfile::tempdir().unwrap();
    let prom = metrics_dir.path().join("seatable_backup.prom");
    let run = |setup: &Setup| {
        setup
            .backup()
            .env("SEATABLE_BACKUP_PING_URL", hook.url("/ping/abc-uuid"))
            .env("SEATABLE_BACKUP_WEBHOOK_URL", hook.url("/hook"))
            .env("SEATABLE_BACKUP_METRICS_TEXTFILE", &prom)
            .output()
    };

    let ok = run(&s);
    assert_exit(&ok, 0);
    let err = stderr(&ok);
    assert!(err.contains("Backup of host `unattended` succeeded in") && err.contains("compression"), "{err}");
    assert!(!err.contains("abc-uuid"), "the ping URL's token was logged: {err}");
    assert!(!err.contains("not affected"), "a monitor call failed: {err}");
    let hits = hook.wait_for(3).await;
    let paths: Vec<(&str, &str)> = hits.iter().map(|h| (h.method.as_str(), h.path.as_str())).collect();
    assert_eq!(paths, [("GET", "/ping/abc-uuid/start"), ("POST", "/ping/abc-uuid"), ("POST", "/hook")]);
    assert!(hits[1].body.contains("succeeded"), "{}", hits[1].body);
    let v: serde_json::Value = serde_json::from_str(&hits[2].body).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["host"], "unattended");
    assert_eq!(v["exit_code"], 0);
    assert!(v["set"].as_str().unwrap().starts_with("monthly/unattended/"), "{v}");
    assert_eq!(v["objects"][0]["component"], "data");
    assert!(v["stored_bytes"].as_u64().unwrap() > 0);
    let text = std::fs::read_to_string(&prom).unwrap();
    let success_at = metric(&text, "seatable_backup_last_success_timestamp_seconds").unwrap();
    assert_eq!(metric(&text, "seatable_backup_last_run_exit_status"), Some(0.0));
    assert!(text.contains("seatable_backup_last_run_stored_bytes{host=\"unattended\",component=\"data\"}"), "{text}");
    assert_eq!(std::fs::read_dir(metrics_dir.path()).unwrap().count(), 1, "a temporary file was left");

    // A failing run: the data directory is gone.
    std::fs::remove_dir_all(&s.data).unwrap();
    let failed = run(&s);
    assert_exit(&failed, 3);
    assert!(stderr(&failed).contains("FAILED after"), "{}", stderr(&failed));
    assert!(!stderr(&failed).contains("not affected"), "a monitor call failed: {}", stderr(&failed));
    let hits = hook.wait_for(6).await;
    let fail = hits.iter().find(|h| h.path == "/ping/abc-uuid/fail").expect("failure ping");
    assert_eq!(fail.method, "POST");
    assert!(fail.body.contains("FAILED") && fail.body.contains(&s.data.display().to_string()), "{}", fail.body);
    assert!(fail.body.contains("Last log lines:"), "{}", fail.body);
    let v: serde_json::Value = serde_json::from_str(&hits.last().unwrap().body).unwrap();
    assert_eq!(v["status"], "failure");
    assert_eq!(v["exit_code"], 3);
    assert!(v["error"].as_str().unwrap().contains(&s.data.display().to_string()), "{v}");
    let text = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(metric(&text, "seatable_backup_last_run_exit_status"), Some(3.0));
    assert_eq!(metric(&text, "seatable_backup_last_run_success"), Some(0.0));
    assert_eq!(metric(&text, "seatable_backup_last_success_timestamp_seconds"), Some(success_at), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_that_is_down_does_not_fail_the_backup() {
    let s = Setup::new(0);
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = s
        .backup()
        .env("SEATABLE_BACKUP_PING_URL", format!("http://127.0.0.1:{port}/down"))
        .env("SEATABLE_BACKUP_WEBHOOK_URL", format!("http://127.0.0.1:{port}/hook"))
        .env("SEATABLE_BACKUP_PING_TIMEOUT", "2")
        .output();
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("start ping failed; the backup is not affected"), "{err}");
    assert!(err.contains("success ping failed") && err.contains("webhook failed"), "{err}");
    assert_eq!(s.manifests(), 1);
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let s = Setup::new(8);
    // Under a pseudo-terminal (util-linux `script`): the progress line is drawn.
    let cmd = format!("{} backup --only data", env!("CARGO_BIN_EXE_seatable-backup"));
    let mut run = s.backup();
    run.command().env("SHELL", "/bin/sh");
    let mut pty = std::process::Command::new("script");
    pty.args(["-qfec", &cmd, "/dev/null"]).env_clear();
    for (k, v) in run.command().get_envs() {
        if let Some(v) = v {
            pty.env(k, v);
        }
    }
    let out = pty.stdin(std::process::Stdio::null()).output().expect("script(1) from util-linux");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("\r\x1b[2Kdata/seatable.tar.zst: "), "no progress line on a terminal: {screen}");
    assert!(screen.contains(" read, ") && screen.contains(" stored, ") && screen.contains("/s"), "{screen}");

    // Into a pipe: logs only.
    let out = s.backup().output();
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(!err.contains('\x1b') && !err.contains('\r'), "terminal codes without a terminal: {err:?}");
    assert!(!err.contains(" stored, "), "{err}");
}

#[test]
fn plan_shows_lock_and_monitoring_without_calling_anything() {
    let s = Setup::new(0);
    let metrics = tempfile::tempdir().unwrap();
    let plan = |textfile: &Path| {
        s.backup_args(&["plan"])
            .env("SEATABLE_BACKUP_DB_ENABLED", "false")
            .env("SEATABLE_BACKUP_PING_URL", "http://127.0.0.1:9/secret-token")
            .env("SEATABLE_BACKUP_METRICS_TEXTFILE", textfile)
            .output()
    };
    let out = plan(&metrics.path().join("x.prom"));
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("run lock") && text.contains("(created by the first run)"), "{text}");
    assert!(text.contains("start -> 127.0.0.1:9") && text.contains("not called by plan"), "{text}");
    assert!(text.contains("metrics textfile") && text.contains("directory writable"), "{text}");
    assert!(!text.contains("secret-token") && !stderr(&out).contains("secret-token"), "{text}");
    assert!(!s.lock.exists(), "plan created the lock file");
    let out = plan(Path::new("/nonexistent-dir/x.prom"));
    assert_exit(&out, 2);
    assert!(stdout(&out).contains("[FAIL] metrics textfile"), "{}", stdout(&out));
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let out = Run::new(&["completions", "bash"]).output();
    assert_exit(&out, 0);
    let bash = stdout(&out);
    assert!(bash.contains("seatable-backup") && bash.contains("retention") && bash.contains("--dry-run"), "{bash}");
    for shell in ["zsh", "fish"] {
        let out = Run::new(&["completions", shell]).output();
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("prune"), "{shell}");
    }
    let out = Run::new(&["man"]).output();
    assert_exit(&out, 0);
    let man = stdout(&out);
    assert!(man.starts_with(".ie") || man.contains(".TH seatable-backup"), "{man}");
    assert!(man.contains("retention") && man.contains("SEATABLE_BACKUP_LOCK_FILE"), "{man}");
}
