//! Loading dumps into the database server (the consumer side of `dump.rs`), with the
//! `mariadb`/`mysql` client inside the DB container, fed through the exec's attached stdin, or
//! a client on this host for an external server.
//!
//! A restore never loads into the live database. It loads into a staging database, checks that
//! the whole dump went in, and then swaps every table in with ONE `RENAME TABLE` statement
//! (atomic in MariaDB and MySQL): the live tables move to an `old` database, which is dropped
//! afterwards. A failure before the swap leaves the live database exactly as it was.
//!
//! Closing stdin must reach the client inside the container; Podman has had bugs where it did
//! not. The feed therefore ends with the client's own `quit` command after a marker query: the
//! client exits by itself, whether or not the end of its input ever arrives, and the marker in
//! its output proves it read everything.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::docker::{ExecOutput, ExecStatus};
use super::dump::{DbSource, Runner};
use super::{Finish, TailBuffer};
use crate::error::{source, usage, Class, Failure};

/// The first line of dumps written by MariaDB clients since May 2024; older clients reject it.
pub const SANDBOX_LINE: &[u8] = b"/*!999999\\- enable the sandbox mode */";

const MARKER: &str = "seatable-backup:loaded";

/// The databases one restore of `live` works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbNames {
    pub live: String,
    /// Where the dump is loaded first.
    pub staging: String,
    /// Where the live tables go during the swap (dropped afterwards).
    pub old: String,
}

impl DbNames {
    pub fn for_db(live: &str) -> anyhow::Result<DbNames> {
        let n =
            DbNames { live: live.to_string(), staging: format!("{live}__sb_staging"), old: format!("{live}__sb_old") };
        if n.staging.len() > 64 {
            return Err(usage(format!(
                "database name `{live}` is too long to restore safely (a staging name must fit in 64 characters)"
            )));
        }
        Ok(n)
    }
}

/// What a completed load saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// SQL bytes fed to the client.
    pub bytes: u64,
}

/// How a feed ended badly: our input failed (download, hash, decompression), or the client.
#[derive(Debug)]
pub enum FeedError {
    Input(std::io::Error),
    Client(anyhow::Error),
}

/// A client process being fed.
struct Client {
    input: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    exited: tokio::sync::watch::Receiver<bool>,
    finish: Finish<ExecOutput>,
}

/// `name` quoted as an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `s` quoted as an SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Kinds of schema objects that cannot move with `RENAME TABLE` across databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmovable {
    pub kind: &'static str,
    pub name: String,
}

impl std::fmt::Display for Unmovable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}`", self.kind, self.name)
    }
}

impl DbSource {
    async fn start_client(&self, args: Vec<String>) -> anyhow::Result<Client> {
        let mut full = vec![self.client_binary.clone()];
        full.extend(self.client_args());
        full.extend(args);
        match &self.runner {
            Runner::Container { docker, container, .. } => {
                let e = docker.exec_stdin(container, self.wrap(full), self.env()).await?;
                Ok(Client { input: e.input, stdout: e.stdout, exited: e.exited, finish: e.finish })
            }
            Runner::Host { .. } => {
                let mut cmd = tokio::process::Command::new(&full[0]);
                cmd.args(&full[1..])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                if let Some(pw) = &self.password {
                    cmd.env("MYSQL_PWD", pw.expose());
                }
                let mut child = cmd.spawn().map_err(|e| source(format!("cannot run `{}`: {e}", full[0])))?;
                let input = child.stdin.take().ok_or_else(|| source("client child has no stdin"))?;
                let out_pipe = child.stdout.take().ok_or_else(|| source("client child has no stdout"))?;
                let err_pipe = child.stderr.take().ok_or_else(|| source("client child has no stderr"))?;
                let stdout = Arc::new(Mutex::new(Vec::new()));
                let stderr = Arc::new(Mutex::new(TailBuffer::new(64 * 1024)));
                let (out_sink, err_sink) = (stdout.clone(), stderr.clone());
                let (exited_tx, exited) = tokio::sync::watch::channel(false);
                let pump = tokio::spawn(async move {
                    let drain_err = super::drain(err_pipe, |b| {
                        if let Ok(mut s) = err_sink.lock() {
                            s.push(b);
                        }
                    });
                    let drain_out = super::drain(out_pipe, |b| {
                        if let Ok(mut o) = out_sink.lock() {
                            if o.len() < (1 << 20) {
                                o.extend_from_slice(b);
                            }
                        }
                    });
                    tokio::join!(drain_err, drain_out);
                    let _ = exited_tx.send(true);
                });
                let name = full[0].clone();
                let out = stdout.clone();
                let finish = async move {
                    let _ = pump.await;
                    let status = child.wait().await.map_err(|e| source(format!("waiting for `{name}`: {e}")))?;
                    let stderr = stderr.lock().map(|s| s.one_line()).unwrap_or_default();
                    let stdout = out.lock().map(|o| o.clone()).unwrap_or_default();
                    Ok(ExecOutput {
                        status: ExecStatus { exit_code: status.code().map(i64::from).unwrap_or(-1), stderr },
                        stdout,
                    })
                };
                Ok(Client { input: Box::pin(input), stdout, exited, finish: Box::pin(finish) })
            }
        }
    }

    /// Runs SQL and returns the rows of its output (tab-separated fields).
    pub async fn sql(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let out = self.run_capture(&["-N".into(), "-B".into(), "-e".into(), sql.into()]).await?;
        if out.status.exit_code != 0 {
            let first = sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
            return Err(source(format!(
                "SQL `{first} ...` failed in {} (exit code {}): {}",
                self.describe(),
                out.status.exit_code,
                out.status.stderr
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect())
    }

    /// Whether the client understands the sandbox-mode line that newer dumps start with.
    pub async fn client_knows_sandbox(&self) -> anyhow::Result<bool> {
        let line = String::from_utf8_lossy(SANDBOX_LINE).to_string();
        let out = self.run_capture(&["-N".into(), "-B".into(), "-e".into(), format!("{line} SELECT 1")]).await?;
        Ok(out.status.exit_code == 0)
    }

    pub async fn drop_database(&self, db: &str) -> anyhow::Result<()> {
        self.sql(&format!("DROP DATABASE IF EXISTS {}", ident(db))).await.map(|_| ())
    }

    /// The character sets and tables of `dbs` (those that exist), in one query: every query is a
    /// command run in the container, which costs about 0.1 s.
    pub async fn schemas(&self, dbs: &[&str]) -> anyhow::Result<Schemas> {
        let list = dbs.iter().map(|d| literal(d)).collect::<Vec<_>>().join(", ");
        let rows = self
            .sql(&format!(
                "SELECT 'schema', SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
                 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({list}) \
                 UNION ALL SELECT 'table', TABLE_SCHEMA, TABLE_NAME, '' \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({list}) AND TABLE_TYPE <> 'VIEW'"
            ))
            .await?;
        let mut known = Schemas::default();
        for r in rows {
            match (r.first().map(String::as_str), r.get(1), r.get(2)) {
                (Some("schema"), Some(db), Some(charset)) => {
                    known.charsets.insert(db.clone(), (charset.clone(), r.get(3).cloned().unwrap_or_default()));
                }
                (Some("table"), Some(db), Some(table)) => {
                    known.tables.entry(db.clone()).or_default().push(table.clone())
                }
                _ => {}
            }
        }
        known.tables.values_mut().for_each(|t| t.sort());
        Ok(known)
    }

    /// Base tables (and sequences) of `db`, sorted.
    pub async fn tables_of(&self, db: &str) -> anyhow::Result<Vec<String>> {
        let rows = self
            .sql(&format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE <> 'VIEW' ORDER BY 1",
                literal(db)
            ))
            .await?;
        Ok(rows.into_iter().filter_map(|r| r.into_iter().next()).collect())
    }

    /// Views, triggers, routines and events of `dbs`: objects a table swap cannot move (each
    /// kind and name once).
    pub async fn unmovable_objects(&self, dbs: &[&str]) -> anyhow::Result<Vec<Unmovable>> {
        let l = dbs.iter().map(|d| literal(d)).collect::<Vec<_>>().join(", ");
        let rows = self
            .sql(&format!(
                "SELECT 'view', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN ({l}) \
                 UNION ALL SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN ({l}) \
                 UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN ({l}) \
                 UNION ALL SELECT 'event', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN ({l})"
            ))
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let kind = match r.first()?.as_str() {
                    "view" => "view",
                    "trigger" => "trigger",
                    "procedure" => "procedure",
                    "function" => "function",
                    "package" => "package",
                    "package body" => "package body",
                    _ => "event",
                };
                Some(Unmovable { kind, name: r.get(1)?.clone() })
            })
            .fold(Vec::new(), |mut all, u| {
                if !all.contains(&u) {
                    all.push(u);
                }
                all
            }))
    }

    /// Exact row counts of every table of `db`.
    pub async fn row_counts(&self, db: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let tables = self.tables_of(db).await?;
        let mut out = Vec::new();
        // One statement per batch of tables keeps each command line short.
        for batch in tables.chunks(50) {
            let q = batch
                .iter()
                .map(|t| format!("SELECT {}, COUNT(*) FROM {}.{}", literal(t), ident(db), ident(t)))
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            for r in self.sql(&q).await? {
                if let (Some(t), Some(n)) = (r.first(), r.get(1)) {
                    out.push((t.clone(), n.parse().unwrap_or(0)));
                }
            }
        }
        Ok(out)
    }

    /// Feeds `sql` into the client connected to database `db`. Ok only when the client read
    /// everything, ran it without error and exited 0.
    pub async fn load_into<R: AsyncRead + Unpin + Send>(
        &self,
        db: &str,
        mut sql: R,
        strip_sandbox: bool,
    ) -> Result<LoadReport, FeedError> {
        let client = self
            .start_client(vec![
                "--batch".into(),
                "--skip-column-names".into(),
                "--default-character-set=utf8mb4".into(),
                db.to_string(),
            ])
            .await
            .map_err(FeedError::Client)?;
        let Client { mut input, stdout, mut exited, finish } = client;
        let feed = async {
            input.write_all(b"SELECT CONNECTION_ID();\n").await.map_err(|e| (false, e))?;
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            // The first line decides about the sandbox line: gather enough bytes to see it.
            let mut head = 0;
            while head < SANDBOX_LINE.len() + 2 {
                let n = sql.read(&mut buf[head..]).await.map_err(|e| (true, e))?;
                if n == 0 {
                    break;
                }
                head += n;
            }
            let mut start = 0;
            if strip_sandbox && buf[..head].starts_with(SANDBOX_LINE) {
                start = buf[..head].iter().position(|b| *b == b'\n').map_or(head, |i| i + 1);
            }
            input.write_all(&buf[start..head]).await.map_err(|e| (false, e))?;
            total += (head - start) as u64;
            loop {
                let n = sql.read(&mut buf).await.map_err(|e| (true, e))?;
                if n == 0 {
                    break;
                }
                input.write_all(&buf[..n]).await.map_err(|e| (false, e))?;
                total += n as u64;
            }
            input.write_all(format!("\nSELECT '{MARKER}';\nquit\n").as_bytes()).await.map_err(|e| (false, e))?;
            input.flush().await.map_err(|e| (false, e))?;
            // The `quit` above ends the client even if this end-of-input never reaches it.
            let _ = input.shutdown().await;
            Ok::<u64, (bool, std::io::Error)>(total)
        };
        let fed = tokio::select! {
            r = feed => r,
            _ = exited.wait_for(|v| *v) => Err((false, std::io::Error::other("the client exited before it read the whole dump"))),
        };
        match fed {
            Ok(total) => {
                let out = finish.await.map_err(FeedError::Client)?;
                let text = String::from_utf8_lossy(&out.stdout);
                let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                if out.status.exit_code != 0 || last.trim() != MARKER {
                    return Err(FeedError::Client(self.load_failed(db, &out.status)));
                }
                Ok(LoadReport { bytes: total })
            }
            Err((false, _)) => {
                // The client went away (an SQL error, or the container stopped): its status says why.
                drop(input);
                let out = tokio::time::timeout(Duration::from_secs(30), finish).await;
                Err(FeedError::Client(match out {
                    Ok(Ok(out)) => self.load_failed(db, &out.status),
                    Ok(Err(e)) => e.context(format!("loading the dump into `{db}` in {}", self.describe())),
                    Err(_) => source(format!("the client loading `{db}` in {} stopped answering", self.describe())),
                }))
            }
            Err((true, e)) => {
                // Our input failed: stop the client without letting it run a partial statement.
                let id = String::from_utf8_lossy(&stdout.lock().map(|o| o.clone()).unwrap_or_default())
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u64>().ok());
                if let Some(id) = id {
                    if let Err(k) = self.sql(&format!("KILL {id}")).await {
                        tracing::warn!(error = %k, "could not stop the loading session");
                    }
                }
                drop(input);
                let _ = tokio::time::timeout(Duration::from_secs(15), finish).await;
                Err(FeedError::Input(e))
            }
        }
    }

    fn load_failed(&self, db: &str, status: &ExecStatus) -> anyhow::Error {
        Failure::new(
            Class::Source,
            format!(
                "loading the dump into `{db}` in {} failed (exit code {}): {}",
                self.describe(),
                status.exit_code,
                if status.stderr.is_empty() { "no error output" } else { &status.stderr }
            ),
        )
        .into()
    }

    /// Moves every table of `names.staging` into `names.live` in one atomic `RENAME TABLE`;
    /// the live tables (all of them, also those the dump does not have) move to `names.old`,
    /// which is dropped afterwards, with the then empty staging database.
    pub async fn swap_in(&self, names: &DbNames) -> anyhow::Result<SwapReport> {
        let known = self.schemas(&[&names.live, &names.staging]).await?;
        let incoming = known.tables(&names.staging).to_vec();
        let outgoing = known.tables(&names.live).to_vec();
        // The live database keeps its character set; a new one gets the staging database's.
        let spec = known.spec(if known.exists(&names.live) { &names.live } else { &names.staging });
        let mut script = Vec::new();
        if !known.exists(&names.live) {
            script.push(format!("CREATE DATABASE {} {spec}", ident(&names.live)));
        }
        script.push(format!("DROP DATABASE IF EXISTS {}", ident(&names.old)));
        script.push(format!("CREATE DATABASE {} {spec}", ident(&names.old)));
        let mut renames = Vec::new();
        for t in &outgoing {
            renames.push(format!("{}.{} TO {}.{}", ident(&names.live), ident(t), ident(&names.old), ident(t)));
        }
        for t in &incoming {
            renames.push(format!("{}.{} TO {}.{}", ident(&names.staging), ident(t), ident(&names.live), ident(t)));
        }
        if !renames.is_empty() {
            script.push(format!("RENAME TABLE {}", renames.join(", ")));
        }
        // One command: the client stops at the first statement that fails, so the live tables
        // move only in the final, atomic RENAME.
        self.sql(&script.join(";\n")).await.map_err(|e| {
            e.context(format!("swapping the restored tables into `{}` (nothing was changed)", names.live))
        })?;
        // The swap is done; failing to clean up is worth a warning, not a failed restore.
        let cleanup =
            format!("DROP DATABASE IF EXISTS {}; DROP DATABASE IF EXISTS {}", ident(&names.old), ident(&names.staging));
        if let Err(e) = self.sql(&cleanup).await {
            tracing::warn!(databases = %format!("{}, {}", names.old, names.staging), error = %format!("{e:#}"), "could not drop the databases left by the restore");
        }
        Ok(SwapReport { tables_in: incoming.len(), tables_out: outgoing.len() })
    }
}

/// What the server holds of some databases (see [`DbSource::schemas`]).
#[derive(Debug, Default)]
pub struct Schemas {
    /// Database -> (character set, collation).
    charsets: std::collections::HashMap<String, (String, String)>,
    /// Database -> its base tables (and sequences), sorted.
    tables: std::collections::HashMap<String, Vec<String>>,
}

impl Schemas {
    pub fn exists(&self, db: &str) -> bool {
        self.charsets.contains_key(db)
    }

    pub fn tables(&self, db: &str) -> &[String] {
        self.tables.get(db).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The `CHARACTER SET ... COLLATE ...` clause that makes a database like `db` (utf8mb4 when
    /// `db` does not exist).
    pub fn spec(&self, db: &str) -> String {
        match self.charsets.get(db) {
            Some((cs, coll)) if !coll.is_empty() => format!("CHARACTER SET {} COLLATE {}", literal(cs), literal(coll)),
            Some((cs, _)) => format!("CHARACTER SET {}", literal(cs)),
            None => "CHARACTER SET 'utf8mb4'".to_string(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SwapReport {
    pub tables_in: usize,
    pub tables_out: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(literal("it's \\"), "'it''s \\\\'");
    }

    #[test]
    fn staging_names_fit() {
        let n = DbNames::for_db("dtable_db").unwrap();
        assert_eq!(n.staging, "dtable_db__sb_staging");
        assert_eq!(n.old, "dtable_db__sb_old");
        assert!(DbNames::for_db(&"x".repeat(60)).is_err());
    }
}
