//! `backup`: databases first, then the data directory, then the manifest (the commit).
//!
//! Everything that can be checked is checked before the first byte is written (destination,
//! Docker, container, dump tools, login, databases, data directory). Each object is committed
//! only after its producer succeeded; on any failure the objects this run already committed are
//! deleted (best effort: without delete permission they stay, in a set without manifest, which
//! `list` shows as incomplete) and no manifest is written.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;

use crate::catalog::{self, Class, Kind, Manifest, ObjectEntry, SetId, Skipped, SourceInfo, TarSummary};
use crate::cli::Only;
use crate::codec;
use crate::config::Config;
use crate::error::{storage, usage};
use crate::source::data::{self, DataReport};
use crate::source::dump::{DbSource, DumpReport};
use crate::source::Produced;
use crate::store::upload::{self, Staged};
use crate::store::Store;

/// Keys this run has made visible, so that a failed or interrupted run can remove them.
#[derive(Debug, Default, Clone)]
pub struct Written(Arc<Mutex<Vec<String>>>, Arc<Mutex<Option<String>>>);

impl Written {
    fn push(&self, key: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push(key.to_string());
        }
    }
    fn take(&self) -> Vec<String> {
        self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
    fn set_dir(&self, dir: &str) {
        if let Ok(mut d) = self.1.lock() {
            *d = Some(dir.to_string());
        }
    }

    /// Aborts the multipart uploads still open under this run's set. An upload whose creation
    /// was answered just as the run was stopped is in no registry yet; the set's directory is
    /// new and this run's own, so everything open under it is this run's.
    pub async fn abort_open_uploads(&self, store: &dyn Store) {
        let Some(dir) = self.1.lock().ok().and_then(|d| d.clone()) else { return };
        match store.list_open_uploads(&dir).await {
            Ok(open) => {
                for u in open {
                    match store.abort_upload(&u).await {
                        Ok(()) => tracing::info!(key = %u.key, "aborted an open upload of the stopped run"),
                        Err(e) => tracing::warn!(key = %u.key, error = %e, "could not abort an open upload"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list the open uploads of the stopped run"),
        }
    }

    /// Deletes what this run wrote (a failed run must not leave parts of a set behind).
    pub async fn remove_all(&self, store: &dyn Store) {
        for key in self.take() {
            match store.delete(&key).await {
                Ok(()) => tracing::info!(key = %key, "removed the object of the failed run"),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "could not remove the object of the failed run; its set has no manifest and counts as incomplete")
                }
            }
        }
    }
}

/// Runs one backup; returns the manifest written.
pub async fn run(
    config: &Config,
    store: Arc<dyn Store>,
    only: Option<Only>,
    written: &Written,
) -> anyhow::Result<Manifest> {
    let started = Utc::now();
    let clock = Instant::now();
    let want_db = config.database.enabled && only != Some(Only::Data);
    let want_data = config.data.enabled && only != Some(Only::Db);
    if !want_db && !want_data {
        return Err(usage(
            "nothing to back up: the databases and the data directory are both disabled (or left out by --only)",
        ));
    }

    // Preflight: nothing is written until all of this passed.
    store.preflight().await.with_context(|| format!("checking destination `{}`", store.describe()))?;
    let db = if want_db {
        let src = DbSource::connect(&config.database).await?;
        src.check_databases(&config.database.databases)?;
        tracing::info!(server = %src.describe(), version = %src.server_version, dump = %src.dump_binary, "database server ready");
        Some(src)
    } else {
        None
    };
    let data_dir: Option<PathBuf> = if want_data { Some(data::resolve_dir(&config.data)?) } else { None };

    let id = SetId { class: Class::Daily, host: config.host.clone(), stamp: catalog::stamp(started) };
    let prefix = &config.storage.prefix;
    let existing = store.list(&id.dir(prefix)).await.context("checking the new set's keys")?;
    if !existing.is_empty() {
        return Err(storage(format!("set `{}` already has objects (another run in the same second?)", id.dir(prefix))));
    }
    written.set_dir(&id.dir(prefix));
    tracing::info!(set = %id, destination = %store.describe(), "backup started");

    let ext = config.compression.algorithm.extension();
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();

    // Databases first, so that no row points at a file missing from the set.
    if let Some(src) = &db {
        for name in &config.database.databases {
            let key = id.key(prefix, &catalog::dump_name(name, ext));
            let excluded: Vec<String> =
                config.database.exclude_tables.iter().filter(|t| t.starts_with(&format!("{name}."))).cloned().collect();
            let t = Instant::now();
            let produced = src.dump(name, &excluded).await?;
            let (staged, report): (Staged, DumpReport) = transfer(&store, &key, produced, config)
                .await
                .with_context(|| format!("backing up database `{name}`"))?;
            let entry = ObjectEntry {
                component: format!("db/{name}"),
                key: key.clone(),
                kind: Kind::MysqlDump,
                compression: config.compression.algorithm.name().into(),
                compression_level: config.compression.level,
                stored_size: staged.size,
                raw_size: report.raw_size,
                sha256: hex::encode(staged.sha256),
                parts: staged.parts,
                database: Some(name.clone()),
                excluded_tables: excluded.clone(),
                tar: None,
            };
            staged.commit().await.with_context(|| format!("backing up database `{name}`"))?;
            written.push(&key);
            log_object(&entry, t);
            for t in excluded {
                skipped
                    .push(Skipped { what: format!("table {t}"), why: "excluded by `database.exclude_tables`".into() });
            }
            objects.push(entry);
        }
    }

    if let Some(dir) = &data_dir {
        let key = id.key(prefix, &catalog::data_name(ext));
        let t = Instant::now();
        let produced = data::tar_stream(dir.clone(), data::excludes(&config.data));
        let (staged, report): (Staged, DataReport) = transfer(&store, &key, produced, config)
            .await
            .with_context(|| format!("backing up data directory `{}`", dir.display()))?;
        let s = &report.stats;
        let entry = ObjectEntry {
            component: "data".into(),
            key: key.clone(),
            kind: Kind::Tar,
            compression: config.compression.algorithm.name().into(),
            compression_level: config.compression.level,
            stored_size: staged.size,
            raw_size: report.raw_size,
            sha256: hex::encode(staged.sha256),
            parts: staged.parts,
            database: None,
            excluded_tables: vec![],
            tar: Some(TarSummary {
                files: s.files,
                dirs: s.dirs,
                symlinks: s.symlinks,
                hardlinks: s.hardlinks,
                other: s.other,
                file_bytes: s.bytes,
                excluded: s.skipped.clone(),
            }),
        };
        staged.commit().await.with_context(|| format!("backing up data directory `{}`", dir.display()))?;
        written.push(&key);
        log_object(&entry, t);
        for p in &s.skipped {
            let why = if crate::config::ALWAYS_EXCLUDED.contains(&p.as_str()) {
                "never archived: SeaTable recreates it (logs, pids, scripts, ccnet) or dtable-db backs it up into storage-data (db-data)"
            } else {
                "excluded by `data.exclude`"
            };
            skipped.push(Skipped { what: format!("data/{p}"), why: why.into() });
        }
        warnings.extend(s.warnings.iter().cloned());
        objects.push(entry);
    }

    let manifest = Manifest {
        schema: catalog::SCHEMA_VERSION,
        tool: env!("CARGO_PKG_NAME").into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        host: config.host.clone(),
        class: id.class,
        stamp: id.stamp.clone(),
        started_at: started,
        finished_at: Utc::now(),
        layout: crate::seatable::layout_of(data_dir.as_deref()).into(),
        source: SourceInfo {
            data_dir: data_dir.as_ref().map(|d| d.display().to_string()),
            database_server: db.as_ref().map(|d| d.describe().replace('`', "")),
            database_server_version: db.as_ref().map(|d| d.server_version.clone()),
            dump_binary: db.as_ref().map(|d| d.dump_binary.clone()),
        },
        objects,
        skipped,
        warnings,
    };
    let key = id.key(prefix, catalog::MANIFEST);
    store.put_object(&key, manifest.to_json().into()).await.context("writing the manifest")?;
    let stored: u64 = manifest.objects.iter().map(|o| o.stored_size).sum();
    let raw: u64 = manifest.objects.iter().map(|o| o.raw_size).sum();
    tracing::info!(
        set = %id,
        objects = manifest.objects.len(),
        raw_bytes = raw,
        stored_bytes = stored,
        seconds = format!("{:.1}", clock.elapsed().as_secs_f64()),
        warnings = manifest.warnings.len(),
        "backup complete: manifest written to `{key}`"
    );
    Ok(manifest)
}

fn log_object(e: &ObjectEntry, t: Instant) {
    let secs = t.elapsed().as_secs_f64();
    tracing::info!(
        component = %e.component,
        key = %e.key,
        raw_bytes = e.raw_size,
        stored_bytes = e.stored_size,
        ratio = format!("{:.2}", if e.stored_size > 0 { e.raw_size as f64 / e.stored_size as f64 } else { 0.0 }),
        seconds = format!("{secs:.1}"),
        "uploaded"
    );
}

/// Streams a producer through compression into a staged object; commits nothing.
async fn transfer<T>(
    store: &Arc<dyn Store>,
    key: &str,
    produced: Produced<T>,
    config: &Config,
) -> anyhow::Result<(Staged, T)> {
    let Produced { reader, finish } = produced;
    let compressed = codec::compress(reader, &config.compression);
    match upload::stage(store, key, compressed, &config.storage.upload).await {
        Ok(staged) => match finish.await {
            Ok(report) => Ok((staged, report)),
            Err(e) => {
                staged.abort().await;
                Err(e)
            }
        },
        // The stream broke or the store failed: that is the cause. (A producer that fails
        // ends its stream cleanly and is caught by `finish` above.) Dropping `finish` here
        // leaves the producer to stop on its closed pipe.
        Err(upload_err) => Err(upload_err),
    }
}
