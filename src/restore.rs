//! `restore`: brings a backup set back, onto this host or another one.
//!
//! Two phases. STAGE: every database of the set is loaded into a staging database and the data
//! archive is unpacked into a staging directory beside the target, each download checked
//! against the manifest's SHA-256 as it passes. SWAP: only when everything staged, each
//! database's tables are swapped in with one atomic `RENAME TABLE`, and the staging directory
//! is renamed over the target (the previous one is kept under a dated name, or removed with
//! `--replace`). A failure while staging removes what was staged and leaves the live databases
//! and data directory exactly as they were.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::Utc;
use tokio_util::io::StreamReader;

use crate::catalog::{self, ChosenSet, Kind, Selection};
use crate::codec::decompress;
use crate::config::{Algorithm, Config, ALWAYS_EXCLUDED, DEFAULT_DATA_DIRS};
use crate::error::{integrity, source, usage, Class, Failure};
use crate::list::human_bytes;
use crate::seatable::{compare_versions, Install, Layout};
use crate::source::docker::Docker;
use crate::source::dump::DbSource;
use crate::source::load::{ident, DbNames, FeedError};
use crate::source::untar::{self, UntarOptions, UntarReport};
use crate::store::download::{fetch_verified, DownloadPolicy, Expected, FetchState};
use crate::store::Store;

/// Which part of a set to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Db,
    Data,
    Config,
    /// SeaTable's S3 buckets mirrored into the set.
    Objects,
}

/// How a database is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbMode {
    /// Load into a staging database, then swap all tables in with one atomic `RENAME TABLE`.
    #[default]
    Swap,
    /// For dumps with views, triggers, routines or events (which cannot move between
    /// databases): the dump is first loaded into a staging database to prove it loads, then the
    /// live database is DROPPED and the dump loaded into it again. Not atomic: if that second
    /// load fails, the live database is incomplete until the restore is run again.
    Recreate,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub selection: Selection,
    pub only: Option<Part>,
    /// Restore only these databases of the set.
    pub databases: Vec<String>,
    pub db_mode: DbMode,
    /// Remove the previous data directory instead of keeping it under a dated name.
    pub replace: bool,
    /// Restore into a non-empty directory that does not look like a SeaTable data directory.
    pub force: bool,
    pub untar: UntarOptions,
    /// Run `seatable.sh restore-all` in the app container afterwards.
    pub seatable_restore_all: bool,
    pub dry_run: bool,
}

/// What was staged so far, so that a failure or a signal can remove it.
#[derive(Default, Clone)]
pub struct Staged {
    inner: Arc<Mutex<StagedInner>>,
}

#[derive(Default)]
struct StagedInner {
    db: Option<Arc<DbSource>>,
    databases: Vec<String>,
    dirs: Vec<PathBuf>,
}

impl Staged {
    fn add_db(&self, src: &Arc<DbSource>, db: &str) {
        if let Ok(mut s) = self.inner.lock() {
            s.db = Some(src.clone());
            s.databases.push(db.to_string());
        }
    }
    fn forget_db(&self, db: &str) {
        if let Ok(mut s) = self.inner.lock() {
            s.databases.retain(|d| d != db);
        }
    }
    fn add_dir(&self, dir: &Path) {
        if let Ok(mut s) = self.inner.lock() {
            s.dirs.push(dir.to_path_buf());
        }
    }
    fn forget_dir(&self, dir: &Path) {
        if let Ok(mut s) = self.inner.lock() {
            s.dirs.retain(|d| d != dir);
        }
    }

    /// Drops every staging database and removes every staging directory still registered.
    pub async fn remove_all(&self) {
        let (db, databases, dirs) = match self.inner.lock() {
            Ok(mut s) => (s.db.clone(), std::mem::take(&mut s.databases), std::mem::take(&mut s.dirs)),
            Err(_) => return,
        };
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
            let d = dir.clone();
            let r = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&d)).await;
            match r {
                Ok(Ok(())) => tracing::info!(dir = %dir.display(), "removed the staging directory"),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Ok(Err(e)) => {
                    tracing::error!(dir = %dir.display(), error = %e, "could not remove a staging directory; remove it by hand")
                }
                Err(e) => tracing::error!(dir = %dir.display(), error = %e, "could not remove a staging directory"),
            }
        }
    }
}

/// One object of the set to bring back.
#[derive(Debug, Clone)]
struct Item {
    key: String,
    algorithm: Algorithm,
    /// What the manifest says of it; only its size for a set restored without one.
    expected: Expected,
    size: u64,
}

#[derive(Debug, Clone)]
struct DbItem {
    /// The database as the set names it.
    database: String,
    /// The database it goes into (another name where the target's `.env` names it so).
    target: String,
    item: Item,
    /// Dumps of some of its tables kept apart (its log tables), loaded after the main dump.
    extras: Vec<Item>,
}

/// Where the data directory goes.
#[derive(Debug, Clone)]
struct DataTarget {
    /// `data directory` or `compose directory`, for messages.
    what: String,
    target: PathBuf,
    staging: PathBuf,
    /// Where the current directory goes (kept, or removed after the swap with `--replace`).
    previous: Option<PathBuf>,
}

fn algorithm_of(key: &str, named: Option<&str>) -> anyhow::Result<Algorithm> {
    match named {
        Some("zstd") => return Ok(Algorithm::Zstd),
        Some("gzip") => return Ok(Algorithm::Gzip),
        Some(other) => return Err(integrity(format!("object `{key}` has unknown compression `{other}`"))),
        None => {}
    }
    if key.ends_with(".zst") {
        Ok(Algorithm::Zstd)
    } else if key.ends_with(".gz") {
        Ok(Algorithm::Gzip)
    } else {
        Err(integrity(format!("cannot tell the compression of object `{key}`")))
    }
}

/// The parts of a set: its dumps, its data archive, its compose-directory archive.
#[derive(Debug, Clone, Default)]
struct Items {
    dbs: Vec<DbItem>,
    data: Option<Item>,
    config: Option<Item>,
    /// Index objects of mirrored buckets.
    mirrors: Vec<catalog::ObjectEntry>,
}

/// The parts of a set (from its manifest, else its keys).
fn items_of(set: &ChosenSet, prefix: &str) -> anyhow::Result<Items> {
    let mut dbs = Vec::new();
    let mut data = None;
    let mut config = None;
    let mut mirrors = Vec::new();
    let mut extras: Vec<(String, Item)> = Vec::new();
    match &set.manifest {
        Some(m) => {
            for o in &m.objects {
                let item = Item {
                    key: o.key.clone(),
                    algorithm: algorithm_of(&o.key, Some(&o.compression))?,
                    expected: Expected::of(o)?,
                    size: o.stored_size,
                };
                match o.kind {
                    Kind::MysqlDump => {
                        let database = o.database.clone().ok_or_else(|| {
                            integrity(format!("manifest entry `{}` is a dump without a database name", o.key))
                        })?;
                        if !o.only_tables.is_empty() {
                            extras.push((database, item));
                            continue;
                        }
                        dbs.push(DbItem { target: database.clone(), database, item, extras: Vec::new() });
                    }
                    Kind::Tar if o.component == "config" => config = Some(item),
                    Kind::Tar => data = Some(item),
                    Kind::MirrorIndex => mirrors.push(o.clone()),
                }
            }
        }
        None => {
            let dir = set.id().dir(prefix);
            for o in &set.objects {
                let Some(rest) = o.key.strip_prefix(&dir) else { continue };
                let item = |o: &crate::store::ObjectInfo| -> anyhow::Result<Item> {
                    Ok(Item {
                        key: o.key.clone(),
                        algorithm: algorithm_of(&o.key, None)?,
                        expected: Expected::size_only(o.size),
                        size: o.size,
                    })
                };
                if let Some(name) = rest.strip_prefix("db/") {
                    let database = name.split(".sql.").next().unwrap_or(name).to_string();
                    match name.split_once(".log-tables.sql.") {
                        Some((db, _)) => extras.push((db.to_string(), item(o)?)),
                        None => {
                            dbs.push(DbItem { target: database.clone(), database, item: item(o)?, extras: Vec::new() })
                        }
                    }
                } else if rest.starts_with("data/seatable.tar.") {
                    data = Some(item(o)?);
                } else if rest.starts_with("config/seatable-compose.tar.") {
                    config = Some(item(o)?);
                }
            }
        }
    }
    for (db, item) in extras {
        match dbs.iter_mut().find(|d| d.database == db) {
            Some(d) => d.extras.push(item),
            None => {
                return Err(integrity(format!(
                    "set {} holds the log tables of database `{db}` (`{}`) but no dump of the database itself",
                    set.id(),
                    item.key
                )))
            }
        }
    }
    Ok(Items { dbs, data, config, mirrors })
}

/// Whether `dir` looks like a SeaTable data directory.
fn looks_like_seatable(dir: &Path) -> bool {
    ["seafile-data", "seahub-data", "conf", "storage-data", "nginx-logs", "ccnet", "db-data"]
        .iter()
        .any(|n| dir.join(n).exists())
}

fn is_empty_dir(dir: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(dir)?.next().is_none())
}

/// Whether `dir` looks like SeaTable's compose directory.
fn looks_like_compose(dir: &Path) -> bool {
    dir.join(".env").exists()
        || dir.join("docker-compose.yml").exists()
        || std::fs::read_dir(dir)
            .map(|mut r| r.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".yml"))))
            .unwrap_or(false)
}

/// Decides where the data directory goes and checks that it may go there. Writes nothing.
fn plan_data_target(config: &Config, opts: &RestoreOptions, stamp: &str) -> anyhow::Result<DataTarget> {
    let target = match &config.data.dir {
        Some(d) => d.clone(),
        None => DEFAULT_DATA_DIRS.iter().map(PathBuf::from).find(|p| p.is_dir()).ok_or_else(|| {
            Failure::new(Class::Usage, "no SeaTable data directory to restore into was found")
                .with_hint("set `data.dir` (or --data-dir) to where the data directory should go")
        })?,
    };
    plan_dir_target(target, "data directory", looks_like_seatable, "seafile-data, seahub-data, conf, ...", opts, stamp)
}

/// Decides where an archived directory goes (`what`: for messages) and checks that it may go
/// there: a non-empty target must pass `looks_right` (else `--force`). Writes nothing.
fn plan_dir_target(
    target: PathBuf,
    what: &str,
    looks_right: fn(&Path) -> bool,
    expected: &str,
    opts: &RestoreOptions,
    stamp: &str,
) -> anyhow::Result<DataTarget> {
    let target = if target.is_absolute() { target } else { std::env::current_dir()?.join(target) };
    let name = target
        .file_name()
        .ok_or_else(|| usage(format!("{what} `{}` has no name", target.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = target.parent().ok_or_else(|| usage(format!("the {what} cannot be `/`")))?.to_path_buf();
    let pmeta = std::fs::metadata(&parent)
        .map_err(|e| Failure::new(Class::Source, format!("parent of the {what} `{}`: {e}", parent.display())))?;
    if !pmeta.is_dir() {
        return Err(source(format!("parent of the {what} `{}` is not a directory", parent.display())));
    }
    let previous = match std::fs::symlink_metadata(&target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(source(format!("{what} `{}`: {e}", target.display()))),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Failure::new(
                Class::Usage,
                format!("{what} `{}` is a symlink; restore refuses to replace a link", target.display()),
            )
            .with_hint("configure the directory it points to instead")
            .into())
        }
        Ok(m) if !m.is_dir() => {
            return Err(source(format!("{what} `{}` exists and is not a directory", target.display())))
        }
        Ok(_) => {
            let empty = is_empty_dir(&target)
                .map_err(|e| source(format!("{what} `{}` is not readable: {e}", target.display())))?;
            if !empty && !looks_right(&target) && !opts.force {
                return Err(Failure::new(
                    Class::Usage,
                    format!(
                        "`{}` is not empty and does not look like a SeaTable {what} (no {expected})",
                        target.display()
                    ),
                )
                .with_hint(
                    "check the configured directory; --force restores there anyway (the current content is kept aside)",
                )
                .into());
            }
            Some(parent.join(format!("{name}.before-restore-{}", catalog::stamp(Utc::now()))))
        }
    };
    let staging = parent.join(format!(".{name}.restore-{stamp}-{}", std::process::id()));
    Ok(DataTarget { what: what.to_string(), target, staging, previous })
}

/// The download of one item as a decompressed reader, plus the download's verdict.
fn open_item(
    store: &Arc<dyn Store>,
    item: &Item,
    policy: DownloadPolicy,
) -> (std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>, Arc<FetchState>) {
    let (chunks, state) = fetch_verified(store.clone(), &item.key, item.expected.clone(), policy);
    let reader = StreamReader::new(chunks);
    (decompress(tokio::io::BufReader::with_capacity(256 * 1024, reader), item.algorithm), state)
}

async fn stage_database(
    db: &Arc<DbSource>,
    store: &Arc<dyn Store>,
    it: &DbItem,
    strip_sandbox: bool,
    policy: DownloadPolicy,
    staged: &Staged,
) -> anyhow::Result<u64> {
    let names = DbNames::for_db(&it.target)?;
    let known = db.schemas(&[&names.live, &names.staging, &names.old]).await?;
    for leftover in [&names.staging, &names.old] {
        if known.exists(leftover) {
            tracing::warn!(database = %leftover, "dropping a database left by an interrupted restore");
        }
    }
    // One command: each one run in the container costs about 0.1 s.
    db.sql(&format!(
        "DROP DATABASE IF EXISTS {staging}; DROP DATABASE IF EXISTS {old}; CREATE DATABASE {staging} {}",
        known.spec(&names.live),
        staging = ident(&names.staging),
        old = ident(&names.old),
    ))
    .await?;
    staged.add_db(db, &names.staging);
    tracing::info!(database = %it.target, staging = %names.staging, key = %it.item.key, "loading the dump into a staging database");
    let mut bytes = load_item(db, store, &it.item, &names.staging, strip_sandbox, policy)
        .await
        .map_err(|e| e.context(format!("restoring database `{}`", it.target)))?;
    for extra in &it.extras {
        tracing::info!(database = %it.target, staging = %names.staging, key = %extra.key, "loading the tables kept apart");
        bytes += load_item(db, store, extra, &names.staging, strip_sandbox, policy)
            .await
            .map_err(|e| e.context(format!("restoring database `{}`", it.target)))?;
    }
    Ok(bytes)
}

/// Feeds one dump into database `into`; the download's verdict is the cause of any failure it
/// explains. Returns the bytes of SQL loaded.
async fn load_item(
    db: &DbSource,
    store: &Arc<dyn Store>,
    item: &Item,
    into: &str,
    strip_sandbox: bool,
    policy: DownloadPolicy,
) -> anyhow::Result<u64> {
    let (reader, state) = open_item(store, item, policy);
    match db.load_into(into, reader, strip_sandbox).await {
        Ok(report) => {
            state.verified(&item.key)?;
            Ok(report.bytes)
        }
        Err(FeedError::Input(e)) => {
            Err(state.failure().unwrap_or_else(|| integrity(format!("object `{}` is corrupt: {e}", item.key))))
        }
        // A client that failed on bad bytes: the download's verdict is the cause.
        Err(FeedError::Client(e)) => Err(state.failure().unwrap_or(e)),
    }
}

async fn stage_data(
    store: &Arc<dyn Store>,
    item: &Item,
    target: &DataTarget,
    untar_opts: UntarOptions,
    policy: DownloadPolicy,
    staged: &Staged,
) -> anyhow::Result<UntarReport> {
    let staging = target.staging.clone();
    std::fs::create_dir(&staging)
        .map_err(|e| source(format!("cannot create the staging directory `{}`: {e}", staging.display())))?;
    staged.add_dir(&staging);
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700));
    }
    tracing::info!(key = %item.key, staging = %staging.display(), "unpacking the {} archive into a staging directory", target.what);
    let (reader, state) = open_item(store, item, policy);
    // Download, hashing and decompression run in a task of their own; the unpacking thread only
    // writes files. The channel between them holds up to 16 chunks of 1 MiB: with 4, the
    // unpacking thread waited for input about 1.0 s of a 4.7 s restore of the benchmark tree
    // (the task shares the two cores with the store), with 16 about 0.75 s.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let pump = tokio::spawn(async move {
        let mut chunks = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20);
        while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    });
    let dest = staging.clone();
    let waited = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let waited_in = waited.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader { rx, current: bytes::Bytes::new(), waited: waited_in };
        untar::unpack(reader, &dest, &untar_opts)
    })
    .await
    .map_err(|e| anyhow::anyhow!("the unpacking thread failed: {e}"))?;
    pump.abort();
    let waited = std::time::Duration::from_micros(waited.load(std::sync::atomic::Ordering::Relaxed));
    tracing::debug!(seconds = format!("{:.2}", waited.as_secs_f64()), "the unpacking thread waited for input");
    match unpacked {
        Ok(report) => {
            state.verified(&item.key)?;
            Ok(report)
        }
        Err(e) => {
            if let Some(cause) = state.failure() {
                return Err(cause.context(format!("restoring the {}", target.what)));
            }
            // A read error that the download did not see comes from the decompressor: the
            // object is corrupt (the hash verdict only comes at its end, which was not reached).
            if matches!(e, untar::UntarError::Read { .. } | untar::UntarError::ReadData { .. }) {
                return Err(integrity(format!("object `{}` is corrupt: {:#}", item.key, anyhow::Error::from(e))));
            }
            let disk_full = untar::is_disk_full(&e);
            let class = if e.is_bad_archive() { Class::Integrity } else { Class::Source };
            let chain = format!("{:#}", anyhow::Error::from(e));
            let f = Failure::new(class, format!("restoring the {} into `{}`: {chain}", target.what, staging.display()));
            Err(if disk_full {
                f.with_hint(format!(
                    "the file system of the {} is full: a restore needs room for a second copy",
                    target.what
                ))
            } else {
                f
            }
            .into())
        }
    }
}

/// A blocking reader over a channel of chunks (the unpacking thread's end of the pipe).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
    /// Microseconds spent waiting for the next chunk (for the debug log).
    waited: Arc<std::sync::atomic::AtomicU64>,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let t = std::time::Instant::now();
            let got = self.rx.blocking_recv();
            let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.waited.fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
            match got {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Moves the current directory's top-level entries that a backup never holds (logs, pids, ...)
/// into the staged tree, so that the swap keeps them. Returns what was moved.
fn carry_over(current: &Path, staged: &Path, excluded: &[String]) -> Vec<String> {
    let mut moved = Vec::new();
    let mut names: Vec<String> = ALWAYS_EXCLUDED.iter().map(|s| s.to_string()).collect();
    names.extend(excluded.iter().filter(|e| !e.contains('/')).cloned());
    names.sort();
    names.dedup();
    for n in names {
        let (from, to) = (current.join(&n), staged.join(&n));
        if std::fs::symlink_metadata(&from).is_ok() && std::fs::symlink_metadata(&to).is_err() {
            match std::fs::rename(&from, &to) {
                Ok(()) => moved.push(n),
                Err(e) => {
                    tracing::warn!(path = %from.display(), error = %e, "could not keep an entry the backup does not hold")
                }
            }
        }
    }
    moved
}

/// Flushes the file system that holds `dir` (one call instead of an fsync per file).
fn syncfs(dir: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = std::fs::File::open(dir) {
        // SAFETY: syncfs takes a valid, open file descriptor and touches no memory of ours.
        unsafe { libc::syncfs(f.as_raw_fd()) };
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Renames the staged tree over the target. On failure everything is put back.
fn swap_data(t: &DataTarget, excluded: &[String]) -> anyhow::Result<Vec<String>> {
    let parent = t.target.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut moved = Vec::new();
    if let Some(prev) = &t.previous {
        // Moving entries in changes the restored root's mtime: put the archive's back.
        let mtime = std::fs::metadata(&t.staging).and_then(|m| m.modified()).ok();
        moved = carry_over(&t.target, &t.staging, excluded);
        if let (Some(mtime), false) = (mtime, moved.is_empty()) {
            if let Ok(f) = std::fs::File::open(&t.staging) {
                let _ = f.set_modified(mtime);
            }
        }
        if let Err(e) = std::fs::rename(&t.target, prev) {
            for n in &moved {
                let _ = std::fs::rename(t.staging.join(n), t.target.join(n));
            }
            return Err(source(format!("cannot move `{}` aside to `{}`: {e}", t.target.display(), prev.display())));
        }
    }
    if let Err(e) = std::fs::rename(&t.staging, &t.target) {
        if let Some(prev) = &t.previous {
            let _ = std::fs::rename(prev, &t.target);
            for n in &moved {
                let _ = std::fs::rename(t.staging.join(n), t.target.join(n));
            }
        }
        return Err(source(format!("cannot move the restored tree into `{}`: {e}", t.target.display())));
    }
    sync_dir(&parent);
    Ok(moved)
}

/// The app container, if one of SeaTable's names exists: the API, its name, whether it runs,
/// its SeaTable version.
async fn app_container(config: &Config, install: &Install) -> Option<(Docker, String, bool, Option<String>)> {
    let docker = Docker::connect(config.database.docker_host.as_deref()).ok()?;
    let app = crate::seatable::app_container(&docker, &install.app_containers(config)).await.ok().flatten()?;
    Some((docker, app.name, app.running, app.version))
}

/// The databases of the set go into the databases this host's `.env` names for the same role
/// (ccnet, seafile, dtable), when the set recorded its own names and they differ.
fn map_database_names(dbs: &mut [DbItem], manifest: Option<&catalog::Manifest>, config: &Config) {
    let Some(from) = manifest.and_then(|m| m.seatable.as_ref()).map(|s| &s.database_names) else { return };
    if from.len() != 3 || config.database.databases_configured || config.database.databases.len() < 3 {
        return;
    }
    for d in dbs.iter_mut() {
        if let Some(role) = from.iter().position(|n| n == &d.database) {
            let to = &config.database.databases[role];
            if to != &d.database {
                tracing::info!(from = %d.database, to = %to, "this host names the database differently (`.env`): restoring into its name");
                d.target = to.clone();
            }
        }
    }
}

/// Restoring into an older SeaTable or database server than the set came from is not
/// supported by SeaTable (it migrates its schema forward only): say so before anything changes.
fn warn_if_older(m: &catalog::Manifest, db: Option<&DbSource>, app_version: Option<&str>) {
    use std::cmp::Ordering::Less;
    if let (Some(src), Some(target)) = (&m.source.database_server_version, db.map(|d| d.server_version.as_str())) {
        if compare_versions(target, src) == Some(Less) {
            tracing::warn!(set_version = %src, target_version = %target, "the target database server is OLDER than the one the set was dumped from; the dump may not load, and SeaTable supports restoring into the same or a newer version only");
        }
    }
    if let (Some(src), Some(target)) = (m.seatable.as_ref().and_then(|s| s.version.as_deref()), app_version) {
        if compare_versions(target, src) == Some(Less) {
            tracing::warn!(set_version = %src, target_version = %target, "this SeaTable is OLDER than the one the set was taken from; SeaTable cannot migrate its database backwards: upgrade SeaTable to at least {src} first");
        }
    }
}

/// This host's bucket for each mirrored bucket of the set, matched by what SeaTable keeps there.
/// `strict`: a bucket without a match is an error (else a warning, and it is left out).
fn mirror_targets(
    install: &Install,
    mirrors: &[catalog::ObjectEntry],
    strict: bool,
) -> anyhow::Result<Vec<(catalog::ObjectEntry, crate::mirror::Bucket)>> {
    let here = install.storage.as_ref().map(crate::mirror::buckets_of).unwrap_or_default();
    let mut out = Vec::new();
    for o in mirrors {
        let Some(m) = &o.mirror else { continue };
        match here.iter().find(|b| b.users.iter().any(|u| m.users.contains(u))) {
            Some(b) => out.push((o.clone(), b.clone())),
            None if strict => {
                return Err(Failure::new(
                    Class::Usage,
                    format!(
                        "the set mirrored bucket `{}` ({}), but this host's SeaTable keeps that in no S3 bucket",
                        m.bucket,
                        m.users.join(", ")
                    ),
                )
                .with_hint(
                    "configure the S3 storage in this host's `.env` or conf files first (see `seatable-backup plan`)",
                )
                .into())
            }
            None => {
                tracing::warn!(bucket = %m.bucket, users = %m.users.join(", "), "the set mirrored this bucket, but this host's SeaTable keeps that in no S3 bucket: its objects are not restored")
            }
        }
    }
    Ok(out)
}

/// Where the compose directory goes: the configured or detected one, else the layout's.
fn plan_config_target(
    install: &Install,
    config: &Config,
    opts: &RestoreOptions,
    stamp: &str,
) -> anyhow::Result<DataTarget> {
    let target = config
        .seatable
        .compose_dir
        .clone()
        .or_else(|| install.compose_dir.clone())
        .or_else(|| match install.layout {
            Layout::Old => Some(install.root.join(crate::seatable::OLD_COMPOSE_DIR)),
            _ => Some(install.root.join(crate::seatable::NEW_COMPOSE_DIR)),
        })
        .unwrap_or_default();
    plan_dir_target(target, "compose directory", looks_like_compose, ".env or *.yml", opts, stamp)
}

pub async fn run(config: &Config, store: Arc<dyn Store>, opts: &RestoreOptions, staged: &Staged) -> anyhow::Result<()> {
    // Where things go on THIS host: its install's files, laid under what is configured.
    let install = Install::detect(config)?;
    let config = &install.apply(config);
    let prefix = &config.storage.prefix;
    let set = catalog::choose_set(store.as_ref(), prefix, &opts.selection).await?;
    let id = set.id();
    let Items { mut dbs, data, config: config_item, mirrors } = items_of(&set, prefix)?;
    if !opts.databases.is_empty() {
        for want in &opts.databases {
            if !dbs.iter().any(|d| &d.database == want) {
                let have: Vec<&str> = dbs.iter().map(|d| d.database.as_str()).collect();
                return Err(Failure::new(Class::Usage, format!("set {id} holds no dump of database `{want}`"))
                    .with_hint(format!("it holds: {}", if have.is_empty() { "none".into() } else { have.join(", ") }))
                    .into());
            }
        }
        dbs.retain(|d| opts.databases.contains(&d.database));
    }
    map_database_names(&mut dbs, set.manifest.as_ref(), config);
    let want_db = matches!(opts.only, None | Some(Part::Db));
    let want_data = matches!(opts.only, None | Some(Part::Data)) && opts.databases.is_empty();
    let want_objects = matches!(opts.only, None | Some(Part::Objects)) && opts.databases.is_empty();
    if opts.only == Some(Part::Objects) && mirrors.is_empty() {
        return Err(Failure::new(Class::Usage, format!("set {id} holds no mirrored buckets"))
            .with_hint("it was written without `seatable.mirror_object_storage`")
            .into());
    }
    // Each mirrored bucket goes into the bucket this host's SeaTable uses for the same.
    let mirror_targets =
        if want_objects { mirror_targets(&install, &mirrors, opts.only == Some(Part::Objects))? } else { Vec::new() };
    if !want_db {
        dbs.clear();
    }
    // The compose directory holds this host's secrets and settings (its domain, its DB
    // password): it is put back only when asked for.
    let (data, component) = match opts.only {
        Some(Part::Config) => match config_item {
            Some(item) => (Some(item), "config"),
            None => {
                return Err(Failure::new(Class::Usage, format!("set {id} holds no `config` component"))
                    .with_hint("it was written without SeaTable's compose directory; restore `db` or `data`")
                    .into())
            }
        },
        _ => {
            if config_item.is_some() && opts.only.is_none() {
                tracing::info!("the set also holds SeaTable's compose directory (`.env`, license): restore it with `--only config`");
            }
            (if want_data { data } else { None }, "data")
        }
    };
    if dbs.is_empty() && data.is_none() && mirror_targets.is_empty() {
        return Err(usage(format!("nothing to restore: set {id} holds no such component")));
    }
    let policy = DownloadPolicy::from_upload(&config.storage.upload);
    let excluded: Vec<String> = set
        .manifest
        .as_ref()
        .and_then(|m| m.objects.iter().filter(|o| o.component == component).find_map(|o| o.tar.as_ref()))
        .map(|t| t.excluded.clone())
        .unwrap_or_default();

    // Checks that write nothing.
    let db_src = if dbs.is_empty() { None } else { Some(Arc::new(DbSource::connect(&config.database).await?)) };
    let data_target = match (&data, component) {
        (Some(_), "config") => Some(plan_config_target(&install, config, opts, &id.stamp)?),
        (Some(_), _) => Some(plan_data_target(config, opts, &id.stamp)?),
        (None, _) => None,
    };
    let app = app_container(config, &install).await;
    let migrating = id.host != config.host;
    if let Some(m) = &set.manifest {
        warn_if_older(m, db_src.as_deref(), app.as_ref().and_then(|a| a.3.as_deref()));
    }
    let app = app.map(|(d, n, r, _)| (d, n, r));

    if opts.dry_run {
        print!("{}", render_dry_run(&set, &dbs, data.as_ref(), db_src.as_deref(), data_target.as_ref(), opts, &store));
        for (o, b) in &mirror_targets {
            println!(
                "  objects of mirrored bucket `{}` -> SeaTable's bucket `{}` on this host (added; objects already there with the same size are left alone; nothing is deleted)",
                o.mirror.as_ref().map(|m| m.bucket.as_str()).unwrap_or("?"),
                b.location.bucket
            );
        }
        return Ok(());
    }

    // Objects first: putting them back only adds to SeaTable's buckets, so a failure here
    // leaves the databases and the data directory untouched.
    let mut object_lines = Vec::new();
    for (o, b) in &mirror_targets {
        let from = o.mirror.as_ref().map(|m| m.bucket.clone()).unwrap_or_default();
        let lines = crate::mirror::read_index(&store, o, config).await?;
        let target: Arc<dyn Store> =
            Arc::new(crate::mirror::open_bucket(b, config.storage.s3.request_checksums).await?);
        let r = crate::mirror::restore_bucket(&store, lines, &target, config)
            .await
            .with_context(|| format!("restoring mirrored bucket `{from}` into `{}`", b.location.bucket))?;
        object_lines.push(format!(
            "bucket `{}` (from `{from}`): {} objects put back ({}, {} server-side), {} already there",
            b.location.bucket,
            r.objects,
            human_bytes(r.bytes),
            r.server_side,
            r.unchanged
        ));
    }
    if let Some((_, name, true)) = &app {
        tracing::warn!(container = %name, "SeaTable's app container is running: it may write while the restore runs; stopping it first is safer");
    }

    // STAGE.
    let started = std::time::Instant::now();
    let mut loaded = Vec::new();
    let strip = match &db_src {
        Some(src) => !src.client_knows_sandbox().await?,
        None => false,
    };
    if let Some(src) = &db_src {
        if strip {
            tracing::info!("the database client predates the sandbox-mode line: it is removed from the dumps");
        }
        for it in &dbs {
            let bytes = stage_database(src, &store, it, strip, policy, staged).await?;
            let names = DbNames::for_db(&it.target)?;
            let unmovable = src.unmovable_objects(&[&names.staging, &names.live]).await?;
            if !unmovable.is_empty() && opts.db_mode == DbMode::Swap {
                let list: Vec<String> = unmovable.iter().take(5).map(|u| u.to_string()).collect();
                return Err(Failure::new(
                    Class::Usage,
                    format!(
                        "database `{}` has objects that an atomic table swap cannot move ({}{}); nothing was changed",
                        it.database,
                        list.join(", "),
                        if unmovable.len() > 5 { ", ..." } else { "" }
                    ),
                )
                .with_hint("--db-restore recreate drops the live database and loads the dump into it (not atomic; see the README)")
                .into());
            }
            // Recreate only where a swap cannot work; every other database is still swapped.
            let mode = if unmovable.is_empty() { DbMode::Swap } else { opts.db_mode };
            loaded.push((it.clone(), bytes, mode));
        }
    }
    let mut unpacked = None;
    if let (Some(item), Some(t)) = (&data, &data_target) {
        unpacked = Some(stage_data(&store, item, t, opts.untar.clone(), policy, staged).await?);
    }

    // SWAP.
    let mut lines = Vec::new();
    if let Some(src) = &db_src {
        for (it, bytes, mode) in &loaded {
            let names = DbNames::for_db(&it.target)?;
            match mode {
                DbMode::Swap => {
                    let r = src.swap_in(&names).await?;
                    staged.forget_db(&names.staging);
                    lines.push(format!(
                        "database `{}`: {} tables swapped in from {} of SQL (the {} previous tables were dropped)",
                        it.database,
                        r.tables_in,
                        human_bytes(*bytes),
                        r.tables_out
                    ));
                }
                DbMode::Recreate => {
                    src.drop_database(&names.staging).await?;
                    staged.forget_db(&names.staging);
                    src.drop_database(&names.live).await?;
                    src.sql(&format!(
                        "CREATE DATABASE {} CHARACTER SET 'utf8mb4'",
                        crate::source::load::ident(&names.live)
                    ))
                    .await?;
                    for item in std::iter::once(&it.item).chain(&it.extras) {
                        if let Err(e) = load_item(src, &store, item, &names.live, strip, policy).await {
                            return Err(e.context(format!(
                                "recreating database `{}`: the live database is now INCOMPLETE; run the restore again",
                                it.database
                            )));
                        }
                    }
                    lines.push(format!(
                        "database `{}`: dropped and recreated from the dump (it has views, triggers, routines or events)",
                        it.database
                    ));
                }
            }
        }
    }
    if let (Some(t), Some(report)) = (&data_target, &unpacked) {
        // The unpacked files reach the disk before they replace the live tree.
        let dir = t.staging.clone();
        let flush = std::time::Instant::now();
        let _ = tokio::task::spawn_blocking(move || syncfs(&dir)).await;
        tracing::info!(seconds = format!("{:.1}", flush.elapsed().as_secs_f64()), "the restored files are on disk");
        let moved = swap_data(t, &excluded)?;
        staged.forget_dir(&t.staging);
        let mut line = format!(
            "{} `{}`: {} files, {} directories, {} symlinks, {} hard links ({})",
            t.what,
            t.target.display(),
            report.files,
            report.dirs,
            report.symlinks,
            report.hardlinks,
            human_bytes(report.file_bytes)
        );
        if !moved.is_empty() {
            line.push_str(&format!("; kept from the previous directory: {}", moved.join(", ")));
        }
        if let Some(prev) = &t.previous {
            if opts.replace {
                let p = prev.clone();
                match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&p)).await {
                    Ok(Ok(())) => line.push_str("; the previous directory was removed"),
                    _ => line.push_str(&format!("; could not remove the previous directory `{}`", prev.display())),
                }
            } else {
                line.push_str(&format!("; the previous directory is kept as `{}`", prev.display()));
            }
        }
        lines.push(line);
    }

    println!("restored set {id} from {} in {:.1} s", store.describe(), started.elapsed().as_secs_f64());
    for l in object_lines.iter().chain(&lines) {
        println!("  {l}");
    }
    post_restore(config, opts, &id, migrating, app).await
}

async fn post_restore(
    config: &Config,
    opts: &RestoreOptions,
    id: &catalog::SetId,
    migrating: bool,
    app: Option<(Docker, String, bool)>,
) -> anyhow::Result<()> {
    const SCRIPT: &str = "/opt/seatable/scripts/seatable.sh";
    let app_name = app.as_ref().map(|a| a.1.clone()).unwrap_or_else(|| "seatable-server".into());
    if opts.seatable_restore_all {
        let Some((docker, name, running)) = app else {
            return Err(Failure::new(
                Class::Source,
                "--seatable-restore-all: no SeaTable app container (`seatable-server` or `seatable`) was found",
            )
            .with_hint(format!("start SeaTable, then run `docker exec seatable-server {SCRIPT} restore-all`"))
            .into());
        };
        if !running {
            return Err(source(format!(
                "--seatable-restore-all: the app container `{name}` is not running; the restore itself is complete"
            )));
        }
        let out = docker
            .exec_capture(&name, vec![SCRIPT.into(), "restore-all".into()], vec![])
            .await
            .context("running `seatable.sh restore-all`")?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            tracing::info!(container = %name, "restore-all: {l}");
        }
        if out.status.exit_code != 0 {
            return Err(source(format!(
                "`seatable.sh restore-all` in `{name}` failed (exit code {}): {}; the restore itself is complete",
                out.status.exit_code, out.status.stderr
            )));
        }
        println!("  ran `seatable.sh restore-all` in `{name}`");
    } else {
        println!("next steps:");
        println!("  1. start SeaTable if it is stopped (`docker compose up -d`)");
        println!("  2. rebuild Big Data: `docker exec {app_name} {SCRIPT} restore-all` (or restore with --seatable-restore-all)");
    }
    if migrating {
        println!(
            "note: set {id} was written by host `{}`; this is `{}`. If SeaTable's domain changes, follow SeaTable's \
             domain-change procedure, and keep or remove PLUGINS_REPO_ID in conf/dtable_web_settings.py (it belongs \
             to the old server's plugin repository).",
            id.host, config.host
        );
    }
    Ok(())
}

fn render_dry_run(
    set: &ChosenSet,
    dbs: &[DbItem],
    data: Option<&Item>,
    db: Option<&DbSource>,
    target: Option<&DataTarget>,
    opts: &RestoreOptions,
    store: &Arc<dyn Store>,
) -> String {
    let mut s = String::new();
    let id = set.id();
    s.push_str(&format!(
        "dry run: restore of set {id} from {}{}\n",
        store.describe(),
        if set.manifest.is_none() { " (NO MANIFEST: nothing can be checked)" } else { "" }
    ));
    for d in dbs {
        let names = DbNames::for_db(&d.target).ok();
        s.push_str(&format!(
            "  download {} ({})\n    -> database `{}` in {}: loaded into `{}`, then {}\n",
            d.item.key,
            human_bytes(d.item.size),
            d.database,
            db.map(|x| x.describe()).unwrap_or_default(),
            names.as_ref().map(|n| n.staging.as_str()).unwrap_or("?"),
            match opts.db_mode {
                DbMode::Swap => "its tables REPLACE all tables of the live database in one atomic swap",
                DbMode::Recreate => {
                    "its tables replace the live ones in one atomic swap, or, if it has views, triggers, \
                     routines or events, the live database is DROPPED and recreated from the dump"
                }
            }
        ));
        for x in &d.extras {
            s.push_str(&format!(
                "  download {} ({})\n    -> loaded into the same staging database (tables kept apart)\n",
                x.key,
                human_bytes(x.size)
            ));
        }
    }
    if let (Some(item), Some(t)) = (data, target) {
        s.push_str(&format!(
            "  download {} ({})\n    -> unpacked into `{}`, then renamed to `{}`\n",
            item.key,
            human_bytes(item.size),
            t.staging.display(),
            t.target.display()
        ));
        match &t.previous {
            Some(p) if opts.replace => {
                s.push_str(&format!("    the current `{}` is REMOVED after the swap\n", t.target.display()));
                let _ = p;
            }
            Some(p) => s.push_str(&format!(
                "    the current `{}` is kept as `{}` (its logs, pids, ... move into the restored tree)\n",
                t.target.display(),
                p.display()
            )),
            None => s.push_str(&format!("    `{}` does not exist yet\n", t.target.display())),
        }
    }
    s.push_str("nothing was changed.\n");
    s
}
