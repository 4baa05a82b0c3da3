//! `verify`: reads every object of a set back, checks its size and SHA-256 against the manifest
//! (and each chunk hash, for sets that have them) and that it decompresses to its end (a dump to
//! its `-- Dump completed` line, an archive to its end marker). `--deep` also loads each dump
//! into a throw-away database in the DB container, reports its tables and rows, and drops it;
//! only verified bytes reach that database (chunk by chunk, or, for sets without chunk hashes,
//! after the whole dump was checked in a temporary file).

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::catalog::{self, Kind, ObjectEntry, Selection};
use crate::codec::decompress;
use crate::config::{Algorithm, Config};
use crate::error::{integrity, Class, Failure};
use crate::output::human_bytes;
use crate::restore::load::FeedError;
use crate::source::dump::DbSource;
use crate::store::download::{open_verified, DownloadPolicy, Legacy};
use crate::store::Store;

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub selection: Selection,
    pub deep: bool,
}

fn algorithm(o: &ObjectEntry) -> anyhow::Result<Algorithm> {
    crate::restore::plan::algorithm_of(&o.key, Some(&o.compression))
}

/// Reads one object to its end; returns a one-line description of what it held.
async fn check_object(store: &Arc<dyn Store>, o: &ObjectEntry, policy: DownloadPolicy) -> anyhow::Result<String> {
    // Nothing here is used beyond counting and parsing: an object without chunk hashes streams,
    // its verdict is checked below before anything is reported good.
    let (chunks, state) = open_verified(store.clone(), &o.key, o.expected()?, policy, Legacy::Stream).await?;
    let reader = decompress(tokio::io::BufReader::with_capacity(256 * 1024, StreamReader::new(chunks)), algorithm(o)?);
    let result: anyhow::Result<(u64, String)> = match o.kind {
        Kind::MysqlDump => {
            let mut reader = reader;
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            let mut tail: Vec<u8> = Vec::new();
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => break Err(anyhow::Error::new(e)),
                };
                if n == 0 {
                    if !crate::source::dump::ends_complete(&tail) {
                        break Err(integrity(format!("dump `{}` does not end with `-- Dump completed`", o.key)));
                    }
                    break Ok((total, format!("{} of SQL, complete", human_bytes(total))));
                }
                total += n as u64;
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 4096 {
                    tail.drain(..tail.len() - 1024);
                }
            }
        }
        Kind::MirrorIndex => {
            let mut reader = reader;
            let mut text = Vec::new();
            match reader.read_to_end(&mut text).await {
                Err(e) => Err(anyhow::Error::new(e)),
                Ok(n) => {
                    let mut lines = Vec::new();
                    for (i, l) in text.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
                        lines.push(
                            serde_json::from_slice::<crate::mirror::IndexLine>(l)
                                .map_err(|e| integrity(format!("index `{}` line {}: {e}", o.key, i + 1)))?,
                        );
                    }
                    let (count, bytes) = crate::mirror::check_index(store, &lines, &o.key).await?;
                    Ok((
                        n as u64,
                        format!("index of {count} mirrored objects ({}), every one present", human_bytes(bytes)),
                    ))
                }
            }
        }
        Kind::Tar => {
            let key = o.key.clone();
            tokio::task::spawn_blocking(move || {
                use crate::restore::untar;
                // Raw bytes are counted for the manifest's raw_size; `check` reads to the end.
                let mut counting = Counting { inner: SyncIoBridge::new(reader), n: 0 };
                // Exactly the rules of restore's unpacking with its defaults, writing nothing.
                let r = untar::check(&mut counting, &untar::UntarOptions::default())
                    .map_err(|e| integrity(format!("archive `{key}`: {:#}", anyhow::Error::from(e))))?;
                let what = format!(
                    "{} entries ({} files, {} dirs, {} symlinks, {} hard links{}), {} unpacked, \
                     restorable with the defaults",
                    r.entries(),
                    r.files,
                    r.dirs,
                    r.symlinks,
                    r.hardlinks,
                    if r.other > 0 { format!(", {} FIFOs", r.other) } else { String::new() },
                    human_bytes(r.file_bytes)
                );
                Ok((counting.n, what))
            })
            .await
            .map_err(|e| anyhow::anyhow!("verification thread failed: {e}"))?
        }
    };
    match result {
        Ok((raw, what)) => {
            state.verified(&o.key)?;
            if raw != o.raw_size {
                return Err(integrity(format!(
                    "object `{}` decompresses to {raw} bytes, the manifest says {}",
                    o.key, o.raw_size
                )));
            }
            Ok(what)
        }
        Err(e) => Err(state.failure().unwrap_or(e)),
    }
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Loads a dump into a throw-away database and counts its tables and rows.
async fn deep_check(
    db: &DbSource,
    store: &Arc<dyn Store>,
    o: &ObjectEntry,
    policy: DownloadPolicy,
    feed: &crate::restore::load::FeedOptions,
) -> anyhow::Result<String> {
    let name = o.database.clone().unwrap_or_default();
    let scratch = format!("{}__sb_verify", name);
    if scratch.len() > 64 {
        return Err(integrity(format!("database name `{name}` is too long for a throw-away copy")));
    }
    if !crate::config::valid_db_name(&name) {
        return Err(integrity(format!("dump `{}` names no valid database", o.key)));
    }
    // Verified before any of it reaches the server, even the throw-away database: per chunk, or
    // (sets without chunk hashes) whole, in a temporary file, before loading starts.
    let (chunks, state) = open_verified(store.clone(), &o.key, o.expected()?, policy, Legacy::Spool).await?;
    db.drop_database(&scratch).await?;
    db.sql(&format!("CREATE DATABASE {} CHARACTER SET 'utf8mb4'", crate::restore::load::ident(&scratch))).await?;
    let reader = decompress(tokio::io::BufReader::with_capacity(256 * 1024, StreamReader::new(chunks)), algorithm(o)?);
    let loaded = db.load_into(&scratch, reader, feed).await;
    let result = match loaded {
        Ok(_) => match state.verified(&o.key) {
            Ok(()) => db.row_counts(&scratch).await,
            Err(e) => Err(e),
        },
        Err(FeedError::Input(e)) => Err(state.failure().unwrap_or_else(|| integrity(e.to_string()))),
        Err(FeedError::Client(e)) => Err(state.failure().unwrap_or(e)),
        Err(FeedError::Refused(what)) => Err(integrity(format!("dump `{}`: {what}", o.key))),
    };
    if let Err(e) = db.drop_database(&scratch).await {
        tracing::warn!(database = %scratch, error = %format!("{e:#}"), "could not drop the throw-away database");
    }
    let counts = result?;
    let rows: u64 = counts.iter().map(|(_, n)| n).sum();
    Ok(format!("loads: {} tables, {rows} rows", counts.len()))
}

pub async fn run(config: &Config, store: Arc<dyn Store>, opts: &VerifyOptions) -> anyhow::Result<()> {
    let prefix = &config.storage.prefix;
    let mut sel = opts.selection.clone();
    sel.strict = true;
    let set = catalog::choose_set(store.as_ref(), prefix, &sel).await?;
    let id = set.id();
    let Some(manifest) = &set.manifest else {
        return Err(Failure::new(
            Class::Integrity,
            format!("set {id} has no manifest: there is nothing to verify against"),
        )
        .into());
    };
    let policy = DownloadPolicy::from_upload(&config.storage.upload);
    let db = if opts.deep && manifest.objects.iter().any(|o| o.kind == Kind::MysqlDump) {
        Some(DbSource::connect(&config.database).await?)
    } else {
        None
    };
    let feed = match &db {
        Some(d) => {
            let f = d.client_features().await?;
            crate::restore::load::FeedOptions {
                strip_sandbox_line: !f.sandbox_line,
                sandbox_option: f.sandbox_option,
                ..Default::default()
            }
        }
        None => Default::default(),
    };
    println!("verifying set {id} in {}", store.describe());
    let mut failures = Vec::new();
    for o in &manifest.objects {
        let mut outcome = check_object(&store, o, policy).await;
        if let (Ok(what), Some(d), Kind::MysqlDump) = (&outcome, &db, o.kind) {
            outcome = deep_check(d, &store, o, policy, &feed).await.map(|deep| format!("{what}; {deep}"));
        }
        match outcome {
            Ok(what) => println!("  ok    {}  ({}; sha256 ok): {what}", o.key, human_bytes(o.stored_size)),
            Err(e) => {
                println!("  FAIL  {}: {e:#}", o.key);
                failures.push((o.key.clone(), e));
            }
        }
    }
    match failures.len() {
        0 => {
            println!("set {id}: {} objects verified", manifest.objects.len());
            Ok(())
        }
        n => {
            let (key, e) = failures.swap_remove(0);
            let class = crate::exit::class_of(&e);
            Err(Failure::new(
                if class == Class::Internal { Class::Integrity } else { class },
                format!(
                    "set {id} failed verification: {n} of {} objects bad, first `{key}`: {e:#}",
                    manifest.objects.len()
                ),
            )
            .into())
        }
    }
}
