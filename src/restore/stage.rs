//! The restore's second phase, STAGE: every dump is downloaded, verified and loaded into a
//! staging database, and the data archive unpacked into a staging directory and flushed to
//! disk. The live databases and directories are not touched.
//!
//! A dump's bytes reach the client only once verified: chunk by chunk against the manifest's
//! per-chunk hashes, or (older sets) whole, spooled into a private temporary file first. The
//! archive streams into the staging directory, which is swapped in only after its hash matched.
//!
//! [`Cleanup`] records what was staged, so that a failure or a signal in any phase removes it:
//! it first ends the loading sessions and waits for the unpacking thread, then drops the staging
//! databases (with bounded lock waits) and removes the staging directories.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio_util::io::StreamReader;

use super::load::{ident, DbNames, FeedError, FeedOptions, SchemaObject, Schemas};
use super::plan::{DataTarget, DbItem, Item};
use crate::codec::decompress;
use crate::error::{integrity, source, Class, Failure};
use crate::restore::untar::{self, UntarOptions, UntarReport};
use crate::source::dump::DbSource;
use crate::store::download::{open_verified, DownloadPolicy, FetchState, Legacy};
use crate::store::Store;

/// What was staged so far, so that a failure or a signal can remove it.
#[derive(Default, Clone)]
pub struct Cleanup {
    inner: Arc<Mutex<CleanupInner>>,
    /// The sessions of running loads (ended first).
    pub sessions: super::load::Sessions,
}

#[derive(Default)]
struct CleanupInner {
    db: Option<Arc<DbSource>>,
    databases: Vec<String>,
    dirs: Vec<PathBuf>,
    /// Directories whose mtime a staging directory inside them changed, with the one to put back.
    times: Vec<(PathBuf, std::time::SystemTime)>,
    /// Turn true (or close) when an unpacking thread has stopped writing.
    unpackers: Vec<tokio::sync::watch::Receiver<bool>>,
}

impl Cleanup {
    fn with<T>(&self, f: impl FnOnce(&mut CleanupInner) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut i| f(&mut i))
    }
    pub fn add_db(&self, src: &Arc<DbSource>, db: &str) {
        self.with(|s| {
            s.db = Some(src.clone());
            s.databases.push(db.to_string());
        });
    }
    pub fn forget_dbs(&self) {
        self.with(|s| s.databases.clear());
    }
    pub fn add_dir(&self, dir: &Path) {
        self.with(|s| s.dirs.push(dir.to_path_buf()));
    }
    pub fn forget_dir(&self, dir: &Path) {
        self.with(|s| s.dirs.retain(|d| d != dir));
    }

    /// Ends the loading sessions, waits for the unpacking threads, drops every staging database
    /// and removes every staging directory still registered.
    pub async fn remove_all(&self) {
        let Some((db, databases, dirs, unpackers, times)) = self.with(|s| {
            (
                s.db.clone(),
                std::mem::take(&mut s.databases),
                std::mem::take(&mut s.dirs),
                std::mem::take(&mut s.unpackers),
                std::mem::take(&mut s.times),
            )
        }) else {
            return;
        };
        if let Some(src) = &db {
            self.sessions.end_all(src).await;
        }
        for mut u in unpackers {
            let stopped = tokio::time::timeout(std::time::Duration::from_secs(15), u.wait_for(|v| *v)).await;
            if stopped.is_err() {
                tracing::warn!("the unpacking thread did not stop within 15 s");
            }
        }
        if let Some(src) = db {
            for d in databases {
                match src.drop_database(&d).await {
                    Ok(()) => tracing::info!(database = %d, "removed the staging database"),
                    Err(e) => {
                        tracing::error!(database = %d, error = %format!("{e:#}"), "could not remove a staging database; drop it by hand")
                    }
                }
            }
        }
        for dir in dirs {
            remove_dir_logged(&dir, "staging directory").await;
        }
        for (dir, mtime) in times {
            let _ = std::fs::File::open(&dir).and_then(|f| f.set_modified(mtime));
        }
    }
}

/// Removes a directory tree, saying so (or why not).
pub async fn remove_dir_logged(dir: &Path, what: &str) {
    let d = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&d)).await {
        Ok(Ok(())) => tracing::info!(dir = %dir.display(), "removed the {what}"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(Err(e)) => {
            tracing::error!(dir = %dir.display(), error = %e, "could not remove the {what}; remove it by hand")
        }
        Err(e) => tracing::error!(dir = %dir.display(), error = %e, "could not remove the {what}"),
    }
}

/// A database loaded into its staging database.
#[derive(Debug, Clone)]
pub struct StagedDb {
    pub item: DbItem,
    pub names: DbNames,
    /// SQL bytes loaded.
    pub bytes: u64,
    /// The staging database's tables after the load.
    pub tables: Vec<String>,
    /// Its views, triggers, routines and events, recreated in the live database at the swap
    /// (they cannot move with the tables, so they were dropped from the staging database).
    pub objects: Vec<SchemaObject>,
}

/// Checks what earlier restores left of the databases `targets` will use: staging databases
/// and empty `old` databases are dropped (with a warning); an `old` database that holds
/// tables is the previous content of a live database whose restore was killed during its
/// swap, and is never dropped: the restore stops before changing anything.
/// Returns what the server holds of the live databases (for the stage phase).
pub async fn check_db_leftovers(db: &DbSource, targets: &[DbItem]) -> anyhow::Result<Schemas> {
    let names: Vec<DbNames> = targets.iter().map(|t| DbNames::for_db(&t.target)).collect::<Result<_, _>>()?;
    let all: Vec<&str> = names.iter().flat_map(|n| [n.live.as_str(), n.staging.as_str(), n.old.as_str()]).collect();
    let known = db.schemas(&all).await?;
    for n in &names {
        if known.exists(&n.old) && !known.tables(&n.old).is_empty() {
            return Err(Failure::new(
                Class::Source,
                format!(
                    "database `{}` holds {} tables that an interrupted restore moved out of `{}`; nothing was changed",
                    n.old,
                    known.tables(&n.old).len(),
                    n.live
                ),
            )
            .with_hint(format!(
                "check them; to keep the restored `{}` drop them with `DROP DATABASE {}`, or move them back with RENAME TABLE",
                n.live,
                ident(&n.old)
            ))
            .into());
        }
        for leftover in [&n.staging, &n.old] {
            if known.exists(leftover) {
                tracing::warn!(database = %leftover, "dropping an empty or staging database left by an interrupted restore");
            }
        }
    }
    Ok(known)
}

/// Loads one database of the set (its main dump, then its tables kept apart) into its staging
/// database, then reads its views, triggers, routines and events and drops them there.
pub async fn stage_database(
    db: &Arc<DbSource>,
    store: &Arc<dyn Store>,
    it: &DbItem,
    feed: &FeedOptions,
    policy: DownloadPolicy,
    known: &Schemas,
    cleanup: &Cleanup,
) -> anyhow::Result<StagedDb> {
    let names = DbNames::for_db(&it.target)?;
    // One command: each one run in the container costs about 0.1 s.
    db.sql_bounded(
        &format!(
            "DROP DATABASE IF EXISTS {staging}; DROP DATABASE IF EXISTS {old}; CREATE DATABASE {staging} {}",
            known.spec(&names.live),
            staging = ident(&names.staging),
            old = ident(&names.old),
        ),
        20,
    )
    .await?;
    cleanup.add_db(db, &names.staging);
    tracing::info!(database = %it.target, staging = %names.staging, key = %it.item.key, "loading the dump into a staging database");
    let mut bytes = 0;
    for item in std::iter::once(&it.item).chain(&it.extras) {
        bytes += load_item(db, store, item, &names.staging, feed, policy)
            .await
            .map_err(|e| e.context(format!("restoring database `{}`", it.target)))?;
    }
    let after = db.schemas(&[&names.live, &names.staging]).await?;
    guard_live_triggers(db, &names.live, known.triggers(&names.live), after.triggers(&names.live)).await?;
    let objects = if after.has_objects(&names.staging) { db.schema_objects(&names.staging).await? } else { Vec::new() };
    if !objects.is_empty() {
        tracing::info!(database = %it.target, objects = objects.len(), "the dump has views, triggers, routines or events: they are recreated in the live database at the swap");
        let drops = super::load::drop_objects(&names.staging, &objects).join(";\n");
        db.sql_bounded(&drops, 20)
            .await
            .map_err(|e| e.context(format!("preparing `{}` for the swap", names.staging)))?;
    }
    let tables = after.tables(&names.staging).to_vec();
    Ok(StagedDb { item: it.clone(), names, bytes, tables, objects })
}

/// A trigger in a dump is written as it was created: `CREATE TRIGGER db.t ... ON db.tbl` names
/// its database, and loading it into the staging database creates it in the LIVE database. A
/// load must leave the live database alone: triggers it added there are dropped again, and the
/// restore stops (nothing else of the live database was changed).
async fn guard_live_triggers(db: &DbSource, live: &str, before: &[String], after: &[String]) -> anyhow::Result<()> {
    let added: Vec<&String> = after.iter().filter(|t| !before.contains(t)).collect();
    if added.is_empty() {
        return Ok(());
    }
    let drops: Vec<String> =
        added.iter().map(|t| format!("DROP TRIGGER IF EXISTS {}.{}", ident(live), ident(t))).collect();
    let dropped = db.sql_bounded(&drops.join(";\n"), 20).await;
    let names = added.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
    Err(Failure::new(
        Class::Source,
        format!(
            "loading the dump created the triggers {names} in the live database `{live}` itself (their definitions name the database); {}",
            match dropped {
                Ok(_) => "they were dropped again, nothing else was changed".to_string(),
                Err(e) => format!("they could NOT be dropped again ({e:#}): drop them by hand"),
            }
        ),
    )
    .with_hint(format!(
        "recreate those triggers in the source database without the database name (`CREATE TRIGGER t ... ON tbl`), or load the dump by hand into `{live}`"
    ))
    .into())
}

/// The download of one item as a decompressed reader of verified bytes, plus the download's
/// verdict. Each chunk is checked against the manifest before it is handed on; an object of an
/// older set (no chunk hashes) is checked whole first with `Legacy::Spool` (dumps: nothing of
/// them may reach the server unverified), or streamed with `Legacy::Stream` (the archive, whose
/// staging directory is swapped in only after the verdict).
async fn open_item(
    store: &Arc<dyn Store>,
    item: &Item,
    policy: DownloadPolicy,
    legacy: Legacy,
) -> anyhow::Result<(std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>, Arc<FetchState>)> {
    let (chunks, state) = open_verified(store.clone(), &item.key, item.expected()?, policy, legacy).await?;
    let reader = StreamReader::new(chunks);
    Ok((decompress(tokio::io::BufReader::with_capacity(256 * 1024, reader), item.algorithm), state))
}

/// Feeds one dump into database `into`; the download's verdict is the cause of any failure it
/// explains. Returns the bytes of SQL loaded.
pub async fn load_item(
    db: &DbSource,
    store: &Arc<dyn Store>,
    item: &Item,
    into: &str,
    feed: &FeedOptions,
    policy: DownloadPolicy,
) -> anyhow::Result<u64> {
    let (reader, state) = open_item(store, item, policy, Legacy::Spool).await?;
    match db.load_into(into, reader, feed).await {
        Ok(report) => {
            state.verified(&item.key)?;
            tracing::debug!(key = %item.key, seconds = format!("{:.3}", state.chunk_seconds()), "time spent checking chunks");
            Ok(report.bytes)
        }
        Err(FeedError::Input(e)) => {
            Err(state.failure().unwrap_or_else(|| integrity(format!("object `{}` is corrupt: {e}", item.key))))
        }
        Err(FeedError::Refused(what)) => Err(integrity(format!("object `{}`: {what}", item.key))),
        // A client that failed on bad bytes: the download's verdict is the cause.
        Err(FeedError::Client(e)) => Err(state.failure().unwrap_or(e)),
    }
}

/// Aborts a spawned task when dropped (the stage future may be dropped by a signal).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Unpacks the archive into the staging directory and flushes it to disk.
pub async fn stage_data(
    store: &Arc<dyn Store>,
    item: &Item,
    target: &DataTarget,
    untar_opts: UntarOptions,
    policy: DownloadPolicy,
    cleanup: &Cleanup,
) -> anyhow::Result<UntarReport> {
    let staging = target.staging.clone();
    if target.mode == super::plan::DirMode::InPlace {
        // The staging directory is made inside the live one (a mount point): a cleanup puts
        // the live directory's mtime back.
        if let Ok(mtime) = std::fs::metadata(&target.target).and_then(|m| m.modified()) {
            cleanup.with(|s| s.times.push((target.target.clone(), mtime)));
        }
    }
    std::fs::create_dir(&staging)
        .map_err(|e| source(format!("cannot create the staging directory `{}`: {e}", staging.display())))?;
    cleanup.add_dir(&staging);
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700));
    }
    tracing::info!(key = %item.key, staging = %staging.display(), "unpacking the {} archive into a staging directory", target.what);
    let (reader, state) = open_item(store, item, policy, Legacy::Stream).await?;
    // Download, hashing and decompression run in a task of their own; the unpacking thread only
    // writes files. The channel between them holds up to 16 chunks of 1 MiB: with 4, the
    // unpacking thread waited for input about 1.0 s of a 4.7 s restore of the benchmark tree
    // (the task shares the two cores with the store), with 16 about 0.75 s.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let pump = AbortOnDrop(tokio::spawn(async move {
        let mut chunks = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20);
        while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
        // The end of the archive, said explicitly: a channel closed without it (the pump was
        // aborted) is an error for the unpacking thread, never a clean end.
        let _ = tx.send(Ok(bytes::Bytes::new())).await;
    }));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    cleanup.with(|s| s.unpackers.push(done_rx));
    let dest = staging.clone();
    let waited = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let waited_in = waited.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader { rx, current: bytes::Bytes::new(), waited: waited_in, ended: false };
        let r = untar::unpack(reader, &dest, &untar_opts);
        let _ = done_tx.send(true);
        r
    })
    .await
    .map_err(|e| anyhow::anyhow!("the unpacking thread failed: {e}"))?;
    drop(pump);
    let waited = std::time::Duration::from_micros(waited.load(std::sync::atomic::Ordering::Relaxed));
    tracing::debug!(seconds = format!("{:.2}", waited.as_secs_f64()), "the unpacking thread waited for input");
    let report = match unpacked {
        Ok(report) => {
            state.verified(&item.key)?;
            report
        }
        Err(e) => return Err(unpack_failure(e, &state, item, target)),
    };
    // The unpacked files reach the disk before they replace the live tree.
    let dir = staging.clone();
    let flush = std::time::Instant::now();
    tokio::task::spawn_blocking(move || syncfs(&dir))
        .await
        .map_err(|e| anyhow::anyhow!("the flushing thread failed: {e}"))?
        .map_err(|e| source(format!("flushing the restored files in `{}` to disk: {e}", staging.display())))?;
    tracing::info!(seconds = format!("{:.1}", flush.elapsed().as_secs_f64()), "the restored files are on disk");
    Ok(report)
}

fn unpack_failure(e: untar::UntarError, state: &FetchState, item: &Item, target: &DataTarget) -> anyhow::Error {
    if let Some(cause) = state.failure() {
        return cause.context(format!("restoring the {}", target.what));
    }
    // A read error that the download did not see comes from the decompressor: the object is
    // corrupt (the hash verdict only comes at its end, which was not reached).
    if matches!(e, untar::UntarError::Read { .. } | untar::UntarError::ReadData { .. }) {
        return integrity(format!("object `{}` is corrupt: {:#}", item.key, anyhow::Error::from(e)));
    }
    let disk_full = untar::is_disk_full(&e);
    let class = if e.is_bad_archive() { Class::Integrity } else { Class::Source };
    let chain = format!("{:#}", anyhow::Error::from(e));
    let f = Failure::new(class, format!("restoring the {} into `{}`: {chain}", target.what, target.staging.display()));
    if disk_full {
        f.with_hint(format!("the file system of the {} is full: a restore needs room for a second copy", target.what))
            .into()
    } else {
        f.into()
    }
}

/// A blocking reader over a channel of chunks (the unpacking thread's end of the pipe). An
/// empty chunk is the end of the stream; a channel closed before it is an error.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
    /// Microseconds spent waiting for the next chunk (for the debug log).
    waited: Arc<std::sync::atomic::AtomicU64>,
    ended: bool,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            let t = std::time::Instant::now();
            let got = self.rx.blocking_recv();
            let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.waited.fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
            match got {
                Some(Ok(chunk)) if chunk.is_empty() => self.ended = true,
                Some(chunk) => self.current = chunk?,
                None => return Err(std::io::Error::other("the download stopped")),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Flushes the file system that holds `dir` (one call instead of an fsync per file).
pub fn syncfs(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir)?;
    // SAFETY: syncfs takes a valid, open file descriptor and touches no memory of ours.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
