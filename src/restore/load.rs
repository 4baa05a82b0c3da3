//! Loading dumps into the database server (the consumer side of `source/dump.rs`), with the
//! `mariadb`/`mysql` client inside the DB container, fed through the exec's attached stdin, or
//! a client on this host for an external server; and the SQL the restore's swap runs.
//!
//! A restore never loads into the live database. It loads into a staging database, checks that
//! the whole dump went in, and the swap (`swap.rs`) then moves every table in with ONE
//! `RENAME TABLE` statement (atomic in MariaDB and MySQL). Views, triggers, routines and events
//! cannot move between databases: they are read back from the staging database as the
//! statements that recreate them ([`SchemaObject`]) and recreated in the live database.
//!
//! The client runs with `--sandbox` where it knows it, so that client commands in a dump
//! (`\!`, `system`, `source`, ...) are refused; an older client gets the stream through
//! [`super::guard::ClientCommandGuard`] instead, which refuses them before they reach it.
//!
//! Closing stdin must reach the client inside the container; Podman has had bugs where it did
//! not. The feed therefore ends with the client's own `quit` command after a marker query: the
//! client exits by itself, whether or not the end of its input ever arrives, and the marker in
//! its output proves it read everything. Every way a feed can fail ends the client's session
//! (`KILL`) before anything else happens, so that no statement of a half-read dump runs and no
//! lock of it blocks the cleanup.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::guard::ClientCommandGuard;
use crate::error::{source, usage, Failure};
use crate::source::dump::DbSource;
use crate::source::process::{capture, Collected, Exit, Output, Process, ProcessError, Status, Stdin};

/// The first line of dumps written by MariaDB clients since May 2024; older clients reject it.
pub const SANDBOX_LINE: &[u8] = b"/*!999999\\- enable the sandbox mode */";

const MARKER: &str = "seatable-backup:loaded";

/// SQL longer than this goes through the client's stdin: one argument may hold at most 128 KiB
/// (Linux's MAX_ARG_STRLEN).
const MAX_SQL_ARGUMENT: usize = 64 * 1024;

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
    /// The dump holds a client command (`system`, `source`, ...), refused before it ran.
    Refused(String),
}

/// What is kept of a loading client's answers (they are few and short).
const ANSWERS: usize = 1 << 20;

/// A client process being fed, its answers collected as they come (the first is its session's
/// id, which a cleanup needs while the feed still runs).
struct Client {
    input: Stdin,
    answers: Collected,
    exit: Exit,
}

/// `name` quoted as an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `s` quoted as an SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

impl DbSource {
    async fn start_client(&self, args: Vec<String>) -> Result<(Stdin, Process), ProcessError> {
        let mut process = self.spawn(self.client(args).with_stdin()).await?;
        let input = process.stdin.take().ok_or_else(|| ProcessError::Engine("the client has no stdin".into()))?;
        Ok((input, process))
    }

    /// Runs SQL and returns the rows of its output (tab-separated fields, as the client's batch
    /// mode escapes them: see [`unescape`]).
    pub async fn sql(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        self.sql_args(sql, &[]).await
    }

    async fn sql_args(&self, sql: &str, extra: &[String]) -> anyhow::Result<Vec<Vec<String>>> {
        let mut args: Vec<String> = vec!["-N".into(), "-B".into()];
        args.extend(extra.iter().cloned());
        let out = if sql.len() > MAX_SQL_ARGUMENT {
            self.sql_through_stdin(sql, args, extra).await?
        } else {
            args.push("-e".into());
            args.push(sql.into());
            self.run_capture(&args).await?
        };
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

    /// Runs SQL too long for one argument (the swap's `RENAME TABLE` of a database with
    /// thousands of tables) through the client's stdin. It ends with the client's own `quit`,
    /// as a load does, so it ends whether or not the end of stdin reaches the client.
    async fn sql_through_stdin(&self, sql: &str, args: Vec<String>, extra: &[String]) -> anyhow::Result<Output> {
        let delimiter = extra.iter().find_map(|a| a.strip_prefix("--delimiter=")).unwrap_or(";");
        let (mut input, Process { stdout, exit, .. }) = self.start_client(args).await.map_err(Failure::from)?;
        let text = format!("{sql}\n{delimiter}\nquit\n");
        let write = async move {
            let written = async {
                input.write_all(text.as_bytes()).await?;
                input.flush().await?;
                input.shutdown().await
            }
            .await;
            drop(input);
            written
        };
        // Written while the answers are read: a long answer can never block the client.
        let (written, out) = tokio::join!(write, capture(stdout, exit));
        let out = out.map_err(Failure::from)?;
        if let Err(e) = written {
            if out.status.exit_code == 0 {
                return Err(source(format!("feeding SQL to the client in {}: {e}", self.describe())));
            }
        }
        Ok(out)
    }

    /// Runs SQL that must not wait long for a lock (the swap, the cleanup): the session's
    /// `lock_wait_timeout` is `secs`, and the whole command is given up after twice that.
    pub async fn sql_bounded(&self, sql: &str, secs: u64) -> anyhow::Result<Vec<Vec<String>>> {
        let script = format!("SET SESSION lock_wait_timeout = {secs};\n{sql}");
        match tokio::time::timeout(Duration::from_secs(secs * 2 + 10), self.sql(&script)).await {
            Ok(r) => r,
            Err(_) => Err(source(format!(
                "SQL `{} ...` in {} did not finish within {} s",
                sql.split_whitespace().take(4).collect::<Vec<_>>().join(" "),
                self.describe(),
                secs * 2 + 10
            ))),
        }
    }

    /// Runs a script whose statements end with `delimiter` (the bodies of triggers and routines
    /// hold `;`), with the lock wait bounded as in [`Self::sql_bounded`].
    pub async fn script_bounded(&self, script: &Script, secs: u64) -> anyhow::Result<()> {
        let text = format!("SET SESSION lock_wait_timeout = {secs}{d}\n{}", script.text, d = script.delimiter);
        let extra = [format!("--delimiter={}", script.delimiter)];
        match tokio::time::timeout(Duration::from_secs(secs * 2 + 10), self.sql_args(&text, &extra)).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => {
                Err(source(format!("SQL script in {} did not finish within {} s", self.describe(), secs * 2 + 10)))
            }
        }
    }

    /// What the client can do to refuse client commands in a dump: whether it takes
    /// `--sandbox`, and whether it understands the sandbox-mode line that newer dumps start
    /// with (the same MariaDB release brought both).
    pub async fn client_features(&self) -> anyhow::Result<ClientFeatures> {
        let line = String::from_utf8_lossy(SANDBOX_LINE).to_string();
        let out = self
            .run_capture(&["--sandbox".into(), "-N".into(), "-B".into(), "-e".into(), format!("{line} SELECT 1")])
            .await?;
        // The failpoint lets the tests take the path of a client without `--sandbox`.
        if out.status.exit_code == 0 && crate::failpoint::hit("client.sandbox").is_ok() {
            return Ok(ClientFeatures { sandbox_option: true, sandbox_line: true });
        }
        let out = self.run_capture(&["-N".into(), "-B".into(), "-e".into(), format!("{line} SELECT 1")]).await?;
        Ok(ClientFeatures { sandbox_option: false, sandbox_line: out.status.exit_code == 0 })
    }

    pub async fn drop_database(&self, db: &str) -> anyhow::Result<()> {
        self.sql_bounded(&format!("DROP DATABASE IF EXISTS {}", ident(db)), 20).await.map(|_| ())
    }

    /// The character sets, tables, triggers and other objects of `dbs` (those that exist), in
    /// one query: every query is a command run in the container, which costs about 0.1 s.
    pub async fn schemas(&self, dbs: &[&str]) -> anyhow::Result<Schemas> {
        let list = dbs.iter().map(|d| literal(d)).collect::<Vec<_>>().join(", ");
        let rows = self
            .sql(&format!(
                "SELECT 'schema', SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
                 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({list}) \
                 UNION ALL SELECT 'table', TABLE_SCHEMA, TABLE_NAME, '' \
                 FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({list}) AND TABLE_TYPE <> 'VIEW' \
                 UNION ALL SELECT 'trigger', TRIGGER_SCHEMA, TRIGGER_NAME, '' \
                 FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN ({list}) \
                 UNION ALL SELECT 'object', TABLE_SCHEMA, TABLE_NAME, '' \
                 FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN ({list}) \
                 UNION ALL SELECT 'object', ROUTINE_SCHEMA, ROUTINE_NAME, '' \
                 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN ({list}) \
                 UNION ALL SELECT 'object', EVENT_SCHEMA, EVENT_NAME, '' \
                 FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN ({list})"
            ))
            .await?;
        let mut known = Schemas::default();
        for r in rows {
            match (r.first().map(String::as_str), r.get(1), r.get(2)) {
                (Some("schema"), Some(db), Some(charset)) => {
                    known.charsets.insert(db.clone(), (charset.clone(), r.get(3).cloned().unwrap_or_default()));
                }
                (Some("table"), Some(db), Some(table)) => {
                    known.tables.entry(db.clone()).or_default().push(unescape(table))
                }
                (Some("trigger"), Some(db), Some(name)) => {
                    known.triggers.entry(db.clone()).or_default().push(unescape(name))
                }
                (Some("object"), Some(db), Some(_)) => *known.others.entry(db.clone()).or_default() += 1,
                _ => {}
            }
        }
        known.tables.values_mut().for_each(|t| t.sort());
        known.triggers.values_mut().for_each(|t| t.sort());
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

    /// The views, triggers, routines and events of `db`, each as the statement that recreates
    /// it (read with `SHOW CREATE ...` while `db` is the current database, so that the
    /// definitions name its tables without the database: they can be recreated in another).
    /// Ordered as they can be recreated: routines, views (those a view uses first), triggers
    /// (in their firing order), events.
    pub async fn schema_objects(&self, db: &str) -> anyhow::Result<Vec<SchemaObject>> {
        let l = literal(db);
        let rows = self
            .sql(&format!(
                "SELECT 0, ROUTINE_TYPE, ROUTINE_NAME, 0 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {l} \
                 UNION ALL SELECT 1, 'VIEW', TABLE_NAME, 0 FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {l} \
                 UNION ALL SELECT 2, 'TRIGGER', TRIGGER_NAME, ACTION_ORDER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {l} \
                 UNION ALL SELECT 3, 'EVENT', EVENT_NAME, 0 FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {l} \
                 ORDER BY 1, 4, 3"
            ))
            .await?;
        let mut listed = Vec::new();
        for r in rows {
            let (Some(kind), Some(name)) = (r.get(1).and_then(|k| ObjectKind::parse(k)), r.get(2)) else { continue };
            listed.push((kind, unescape(name)));
        }
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = format!("USE {};\n", ident(db));
        for (kind, name) in &listed {
            q.push_str(&format!("SHOW CREATE {} {};\n", kind.keyword(), ident(name)));
        }
        let rows = self.sql(&q).await?;
        if rows.len() != listed.len() {
            return Err(source(format!(
                "reading the definitions of {} objects of `{db}` in {} gave {} answers",
                listed.len(),
                self.describe(),
                rows.len()
            )));
        }
        let mut objects = Vec::new();
        for ((kind, name), row) in listed.into_iter().zip(rows) {
            let field = |i: usize| row.get(i).map(|f| unescape(f)).unwrap_or_default();
            // The columns of each SHOW CREATE: name, [sql_mode,] [time_zone,] statement,
            // character_set_client, collation_connection, ...
            let (sql_mode, create, charset, collation) = match kind {
                ObjectKind::View => (None, field(1), field(2), field(3)),
                ObjectKind::Event => (Some(field(1)), field(3), field(4), field(5)),
                _ => (Some(field(1)), field(2), field(3), field(4)),
            };
            if create.is_empty() {
                return Err(source(format!("{} `{name}` of `{db}` has no readable definition", kind.label())));
            }
            objects.push(SchemaObject { kind, name, create, sql_mode, charset, collation });
        }
        order_views(&mut objects);
        Ok(objects)
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
    /// everything, ran it without error and exited 0. On any failure the client's session is
    /// ended (`KILL`) before this returns.
    pub async fn load_into<R: AsyncRead + Unpin + Send>(
        &self,
        db: &str,
        mut sql: R,
        opts: &FeedOptions,
    ) -> Result<LoadReport, FeedError> {
        let mut args: Vec<String> = Vec::new();
        if opts.sandbox_option {
            args.push("--sandbox".into());
        }
        args.extend(["--batch".into(), "--skip-column-names".into(), "--default-character-set=utf8mb4".into()]);
        // `--database=`: a name can never be read as an option.
        args.push(format!("--database={db}"));
        let (mut input, process) =
            self.start_client(args).await.map_err(|e| FeedError::Client(Failure::from(e).into()))?;
        let mut answers = Collected::spawn(process.stdout, ANSWERS);
        let session = answers.bytes.clone();
        opts.sessions.add(&session);
        let fed = tokio::select! {
            r = feed(&mut input, &mut sql, opts) => r,
            _ = answers.ended.wait_for(|v| *v) => Err(FeedFail::Client(std::io::Error::other("the client exited before it read the whole dump"))),
        };
        let result = self.settle(db, fed, Client { input, answers, exit: process.exit }).await;
        opts.sessions.remove(&session);
        result
    }

    /// What a feed came to: the client's answers and exit decide a complete feed; a failed one
    /// ends the client's session first.
    async fn settle(&self, db: &str, fed: Result<u64, FeedFail>, client: Client) -> Result<LoadReport, FeedError> {
        let Client { input, answers, exit } = client;
        match fed {
            Ok(total) => {
                let out = answers.all().await;
                let status = exit.wait().await.map_err(|e| FeedError::Client(Failure::from(e).into()))?;
                let text = String::from_utf8_lossy(&out);
                let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                if status.exit_code != 0 || last.trim() != MARKER {
                    Err(FeedError::Client(self.load_failed(db, status)))
                } else {
                    Ok(LoadReport { bytes: total })
                }
            }
            Err(FeedFail::Client(_)) => {
                // The client went away (an SQL error, or the container stopped): its status says why.
                drop(input);
                self.end_session(&answers.bytes).await;
                let status = tokio::time::timeout(Duration::from_secs(30), exit.wait()).await;
                Err(FeedError::Client(match status {
                    Ok(Ok(status)) => self.load_failed(db, status),
                    Ok(Err(e)) => anyhow::Error::from(Failure::from(e))
                        .context(format!("loading the dump into `{db}` in {}", self.describe())),
                    Err(_) => source(format!("the client loading `{db}` in {} stopped answering", self.describe())),
                }))
            }
            Err(fail) => {
                // Our input failed (download, hash, decompression) or holds a client command:
                // end the session before the client could run a partial statement.
                self.end_session(&answers.bytes).await;
                drop(input);
                let _ = tokio::time::timeout(Duration::from_secs(15), exit.wait()).await;
                Err(match fail {
                    FeedFail::Refused(what) => FeedError::Refused(what),
                    FeedFail::Input(e) | FeedFail::Client(e) => FeedError::Input(e),
                })
            }
        }
    }

    /// Ends the session whose `SELECT CONNECTION_ID()` answer is the first line of `stdout`
    /// (nothing if it never answered).
    async fn end_session(&self, stdout: &Arc<Mutex<Vec<u8>>>) {
        if let Some(id) = session_id(stdout) {
            if let Err(k) = self.sql_bounded(&format!("KILL {id}"), 10).await {
                tracing::debug!(error = %format!("{k:#}"), "could not end the loading session (it may have ended already)");
            }
        }
    }

    fn load_failed(&self, db: &str, status: Status) -> anyhow::Error {
        let command = format!("loading the dump into `{db}` in {}", self.describe());
        Failure::from(ProcessError::Failed { command, code: status.exit_code, stderr: status.stderr }).into()
    }
}

/// Writes the whole dump into the client: after a first query whose answer names the session,
/// and before the marker query and `quit` that end it (see the module's comment).
async fn feed<R: AsyncRead + Unpin>(input: &mut Stdin, sql: &mut R, opts: &FeedOptions) -> Result<u64, FeedFail> {
    let mut guard = (!opts.sandbox_option).then(ClientCommandGuard::new);
    input.write_all(b"SELECT CONNECTION_ID();\n").await.map_err(FeedFail::Client)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    // The first line decides about the sandbox line: gather enough bytes to see it.
    let mut head = 0;
    while head < SANDBOX_LINE.len() + 2 {
        let n = sql.read(&mut buf[head..]).await.map_err(FeedFail::Input)?;
        if n == 0 {
            break;
        }
        head += n;
    }
    let mut start = 0;
    if opts.strip_sandbox_line && buf[..head].starts_with(SANDBOX_LINE) {
        start = buf[..head].iter().position(|b| *b == b'\n').map_or(head, |i| i + 1);
    }
    let mut piece = start..head;
    loop {
        if let Some(g) = guard.as_mut() {
            g.scan(&buf[piece.clone()]).map_err(FeedFail::Refused)?;
        }
        input.write_all(&buf[piece.clone()]).await.map_err(FeedFail::Client)?;
        total += piece.len() as u64;
        let n = sql.read(&mut buf).await.map_err(FeedFail::Input)?;
        if n == 0 {
            break;
        }
        piece = 0..n;
    }
    input.write_all(format!("\nSELECT '{MARKER}';\nquit\n").as_bytes()).await.map_err(FeedFail::Client)?;
    input.flush().await.map_err(FeedFail::Client)?;
    // The `quit` above ends the client even if this end-of-input never reaches it.
    let _ = input.shutdown().await;
    Ok(total)
}

/// What the server holds of some databases (see [`DbSource::schemas`]).
#[derive(Debug, Default)]
pub struct Schemas {
    /// Database -> (character set, collation).
    charsets: std::collections::HashMap<String, (String, String)>,
    /// Database -> its base tables (and sequences), sorted.
    tables: std::collections::HashMap<String, Vec<String>>,
    /// Database -> its triggers, sorted.
    triggers: std::collections::HashMap<String, Vec<String>>,
    /// Database -> how many views, routines and events it has.
    others: std::collections::HashMap<String, usize>,
}

impl Schemas {
    pub fn exists(&self, db: &str) -> bool {
        self.charsets.contains_key(db)
    }

    /// Whether `db` has views, triggers, routines or events (objects that cannot move with
    /// its tables).
    pub fn has_objects(&self, db: &str) -> bool {
        !self.triggers(db).is_empty() || self.others.get(db).is_some_and(|n| *n > 0)
    }

    pub fn triggers(&self, db: &str) -> &[String] {
        self.triggers.get(db).map(Vec::as_slice).unwrap_or(&[])
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

/// What the client can do against client commands in a dump.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFeatures {
    /// It takes `--sandbox` (MariaDB 10.5.25, 10.6.18, 10.11.8, 11.0.6 and later).
    pub sandbox_option: bool,
    /// It understands the sandbox-mode first line of newer dumps.
    pub sandbox_line: bool,
}

/// How a dump is fed to the client.
#[derive(Clone, Default)]
pub struct FeedOptions {
    /// Remove the sandbox-mode first line (the client predates it).
    pub strip_sandbox_line: bool,
    /// Run the client with `--sandbox`; without it the stream passes a [`ClientCommandGuard`].
    pub sandbox_option: bool,
    /// Where a running load registers its session, so that a cleanup can end it.
    pub sessions: Sessions,
}

/// The sessions of the loads running now (their clients' output, whose first line is the
/// session's id): a cleanup after a failure or a signal ends them (`KILL`) before it drops a
/// staging database, whose metadata lock they may hold.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Vec<ClientOutput>>>);

/// A running client's stdout (its first line is its session's id).
type ClientOutput = Arc<Mutex<Vec<u8>>>;

impl Sessions {
    fn add(&self, out: &Arc<Mutex<Vec<u8>>>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(out.clone());
        }
    }
    fn remove(&self, out: &Arc<Mutex<Vec<u8>>>) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|o| !Arc::ptr_eq(o, out));
        }
    }
    /// Ends every registered session.
    pub async fn end_all(&self, db: &DbSource) {
        let outs = self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        for out in outs {
            db.end_session(&out).await;
        }
    }
}

fn session_id(stdout: &Arc<Mutex<Vec<u8>>>) -> Option<u64> {
    let out = stdout.lock().ok()?;
    let text = String::from_utf8_lossy(&out);
    let first = text.lines().next()?;
    first.trim().parse().ok()
}

/// How a feed failed, inside [`DbSource::load_into`].
enum FeedFail {
    Input(std::io::Error),
    Client(std::io::Error),
    Refused(String),
}

/// A view, trigger, routine or event, as the statement that recreates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaObject {
    pub kind: ObjectKind,
    pub name: String,
    /// `CREATE ...` as `SHOW CREATE` gave it.
    pub create: String,
    /// The `sql_mode` it was created under (views have none).
    pub sql_mode: Option<String>,
    pub charset: String,
    pub collation: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Procedure,
    Function,
    View,
    Trigger,
    Event,
}

impl ObjectKind {
    fn parse(s: &str) -> Option<ObjectKind> {
        Some(match s {
            "PROCEDURE" => ObjectKind::Procedure,
            "FUNCTION" => ObjectKind::Function,
            "VIEW" => ObjectKind::View,
            "TRIGGER" => ObjectKind::Trigger,
            "EVENT" => ObjectKind::Event,
            _ => return None,
        })
    }
    fn keyword(self) -> &'static str {
        match self {
            ObjectKind::Procedure => "PROCEDURE",
            ObjectKind::Function => "FUNCTION",
            ObjectKind::View => "VIEW",
            ObjectKind::Trigger => "TRIGGER",
            ObjectKind::Event => "EVENT",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            ObjectKind::Procedure => "procedure",
            ObjectKind::Function => "function",
            ObjectKind::View => "view",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Event => "event",
        }
    }
}

impl std::fmt::Display for SchemaObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}`", self.kind.label(), self.name)
    }
}

/// Statements separated by a delimiter of their own (see [`DbSource::script_bounded`]).
#[derive(Debug, Clone)]
pub struct Script {
    pub delimiter: String,
    pub text: String,
}

/// The statements that drop `objects` from `db` (views first: a view may use a routine).
pub fn drop_objects(db: &str, objects: &[SchemaObject]) -> Vec<String> {
    let mut out: Vec<String> = objects
        .iter()
        .rev()
        .map(|o| format!("DROP {} IF EXISTS {}.{}", o.kind.keyword(), ident(db), ident(&o.name)))
        .collect();
    out.sort_by_key(|s| !s.starts_with("DROP VIEW"));
    out
}

/// A script that recreates `objects` in `db`, each under the session settings it was made
/// with. The delimiter is one that no definition contains.
pub fn create_objects(db: &str, objects: &[SchemaObject]) -> Script {
    // The client takes delimiters of at most 16 bytes.
    let mut delimiter = String::from("$$sb$$");
    while delimiter.len() < 16 && objects.iter().any(|o| o.create.contains(&delimiter)) {
        delimiter.push('$');
    }
    let d = &delimiter;
    let mut text = format!("USE {}{d}\n", ident(db));
    for o in objects {
        let mode = o.sql_mode.as_deref().map(|m| format!("sql_mode = {}, ", literal(m))).unwrap_or_default();
        text.push_str(&format!(
            "SET SESSION {mode}character_set_client = {}, collation_connection = {}{d}\n{}{d}\n",
            literal(&o.charset),
            literal(&o.collation),
            o.create
        ));
    }
    Script { delimiter, text }
}

/// Views that use other views come after them (by name, as the definitions quote them).
fn order_views(objects: &mut [SchemaObject]) {
    let names: Vec<String> = objects.iter().filter(|o| o.kind == ObjectKind::View).map(|o| o.name.clone()).collect();
    let uses = |o: &SchemaObject, name: &str| o.name != name && o.create.contains(&ident(name));
    let Some(start) = objects.iter().position(|o| o.kind == ObjectKind::View) else { return };
    let end = start + names.len();
    let views = &mut objects[start..end];
    // A simple insertion into dependency order; the number of views is small.
    let mut ordered: Vec<SchemaObject> = Vec::with_capacity(views.len());
    let mut pending: Vec<SchemaObject> = views.to_vec();
    while !pending.is_empty() {
        let before = pending.len();
        let mut i = 0;
        while i < pending.len() {
            let ready = !pending.iter().any(|p| uses(&pending[i], &p.name));
            if ready {
                ordered.push(pending.remove(i));
            } else {
                i += 1;
            }
        }
        if pending.len() == before {
            // A cycle by name only (a view naming another in a string): keep the given order.
            ordered.append(&mut pending);
        }
    }
    views.clone_from_slice(&ordered);
}

/// A field of the client's batch output, whose `\n`, `\t`, `\\` and `\0` it escapes.
pub fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
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
