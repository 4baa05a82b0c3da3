//! The objects of a set, one at a time: each is produced (a dump in the database container, a
//! tar of a directory), compressed and uploaded as a staged object, then committed and
//! registered in the run's [`Written`] so that a failed run can remove it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::scope::Scope;
use crate::catalog::{self, Kind, ObjectEntry, SetId, Skipped, TarSummary};
use crate::config::{CompressionConfig, Config};
use crate::error::{Class, Failure};
use crate::output::Progress;
use crate::run::Written;
use crate::seatable::defaults::{ALWAYS_EXCLUDED, LOG_TABLES};
use crate::seatable::{self, AppContainer};
use crate::source::data::{self, DataReport};
use crate::source::docker::Docker;
use crate::source::dump::{DbSource, DumpReport};
use crate::source::tar::{TarOptions, TarStats};
use crate::source::Produced;
use crate::store::upload::{self, Staged};
use crate::store::Store;
use crate::{codec, mirror};

/// What the set holds so far, and what it leaves out.
#[derive(Debug, Default)]
pub struct Contents {
    pub objects: Vec<ObjectEntry>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
}

impl Contents {
    fn skip(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped { what: what.into(), why: why.into() });
    }
}

/// Where this run writes: the store, the new set, the run's cleanup registry.
pub struct Target<'a> {
    pub store: &'a Arc<dyn Store>,
    pub id: &'a SetId,
    pub written: &'a Written,
    pub progress: Option<&'a Progress>,
}

impl Target<'_> {
    fn key(&self, config: &Config, name: &str) -> String {
        self.id.key(&config.storage.prefix, name)
    }
}

/// Dumps each database into its own object (and the log tables into theirs, when asked).
pub async fn dump_databases(
    scope: &Scope,
    src: &DbSource,
    databases: &[String],
    to: &Target<'_>,
    set: &mut Contents,
) -> anyhow::Result<()> {
    let config = &scope.config;
    let ext = config.compression.algorithm.extension();
    for name in databases {
        let key = to.key(config, &catalog::dump_name(name, ext));
        let excluded: Vec<String> =
            config.database.exclude_tables.iter().filter(|t| t.starts_with(&format!("{name}."))).cloned().collect();
        let t = Instant::now();
        let produced = src.dump(name, &excluded).await?;
        let entry = store_dump(to, config, &key, produced, t, &format!("database `{name}`"), |staged, report| {
            dump_entry(format!("db/{name}"), staged, report, config, name, excluded.clone(), vec![])
        })
        .await?;
        let is_log = |t: &str| LOG_TABLES.iter().any(|l| t == format!("{name}.{l}"));
        for t in &excluded {
            let why = if config.database.log_tables_separately && is_log(t) {
                continue; // dumped into its own object below
            } else if config.database.exclude_log_tables && is_log(t) {
                "a log table left out by `database.exclude_log_tables` (a slim dump: base history and up to 5 minutes of unsaved changes are not in it)"
            } else {
                "excluded by `database.exclude_tables`"
            };
            set.skip(format!("table {t}"), why);
        }
        set.objects.push(entry);
        if config.database.log_tables_separately && name == &scope.install.dtable_db(config) {
            if let Some(entry) = dump_log_tables(src, name, config, to).await? {
                set.objects.push(entry);
            }
        }
    }
    Ok(())
}

/// Dumps the log tables `db` has into their own object (`db/<db>.log-tables.sql.*`), so that they
/// can be kept for a shorter time than the rest; `None` when it has none of them.
async fn dump_log_tables(
    src: &DbSource,
    db: &str,
    config: &Config,
    to: &Target<'_>,
) -> anyhow::Result<Option<ObjectEntry>> {
    let present = src.tables_of(db).await.with_context(|| format!("listing the tables of `{db}`"))?;
    let tables: Vec<String> =
        LOG_TABLES.iter().filter(|t| present.iter().any(|p| p == *t)).map(|t| t.to_string()).collect();
    if tables.is_empty() {
        return Ok(None);
    }
    let key = to.key(config, &catalog::log_tables_name(db, config.compression.algorithm.extension()));
    let t = Instant::now();
    let produced = src.dump_tables(db, &tables).await?;
    let what = format!("the log tables of `{db}`");
    let entry = store_dump(to, config, &key, produced, t, &what, |staged, report| {
        dump_entry(format!("db/{db}/log-tables"), staged, report, config, db, vec![], tables)
    })
    .await?;
    Ok(Some(entry))
}

/// Uploads a dump into `key` and commits it; `entry` makes its manifest entry.
async fn store_dump(
    to: &Target<'_>,
    config: &Config,
    key: &str,
    produced: Produced<DumpReport>,
    started: Instant,
    what: &str,
    entry: impl FnOnce(&Staged, &DumpReport) -> ObjectEntry,
) -> anyhow::Result<ObjectEntry> {
    let (staged, report) = transfer(to, key, produced, config, &config.compression.for_dumps())
        .await
        .with_context(|| format!("backing up {what}"))?;
    let entry = entry(&staged, &report);
    staged.commit().await.with_context(|| format!("backing up {what}"))?;
    to.written.push(key);
    log_object(&entry, started);
    Ok(entry)
}

/// The manifest entry of a staged dump.
fn dump_entry(
    component: String,
    staged: &Staged,
    report: &DumpReport,
    config: &Config,
    db: &str,
    excluded_tables: Vec<String>,
    only_tables: Vec<String>,
) -> ObjectEntry {
    ObjectEntry {
        database: Some(db.to_string()),
        excluded_tables,
        only_tables,
        ..ObjectEntry::from_stored(&staged.stored, component, Kind::MysqlDump, &config.compression, report.raw_size)
    }
}

/// Runs the Big Data backup, then archives the data directory; returns what became of the Big
/// Data backup.
pub async fn archive_data(
    scope: &Scope,
    dir: &Path,
    app: &Option<AppContainer>,
    to: &Target<'_>,
    set: &mut Contents,
) -> anyhow::Result<String> {
    let config = &scope.config;
    // Big Data: dtable-db backs its bases up into dtable-storage-server; have it do that now,
    // so that the archive holds a current copy.
    let big_data = big_data_backup(config, app).await?;
    if !big_data.starts_with("ran") {
        set.skip("Big Data backup (`seatable.sh backup-all`)", big_data.clone());
    }
    let storage_excl = scope.storage_exclusions();
    let key = to.key(config, &catalog::data_name(config.compression.algorithm.extension()));
    let (entry, stats) = archive(to, &key, "data", dir, scope.data_tar_options(), config).await?;
    for p in &stats.skipped {
        let why = if let Some(e) = storage_excl.iter().find(|e| &e.path == p) {
            format!("holds nothing worth archiving: {}", e.why)
        } else if ALWAYS_EXCLUDED.contains(&p.as_str()) {
            "never archived: SeaTable recreates it (logs, pids, scripts, ccnet) or dtable-db backs it up into storage-data (db-data)".into()
        } else {
            "excluded by `data.exclude`".into()
        };
        set.skip(format!("data/{p}"), why);
    }
    set.warnings.extend(stats.warnings.iter().cloned());
    set.warnings.extend(data::report_external_symlinks(&stats));
    set.objects.push(entry);
    Ok(big_data)
}

/// Copies SeaTable's own buckets into the set (after the databases, like the files); returns
/// the buckets mirrored.
pub async fn mirror_buckets(scope: &Scope, to: &Target<'_>, set: &mut Contents) -> anyhow::Result<Vec<String>> {
    let mut mirrored = Vec::new();
    let Some(st) = &scope.install.storage else { return Ok(mirrored) };
    for b in mirror::buckets_of(st) {
        let entry = mirror::backup_bucket(&b, to.store, &scope.config, to.id, to.written)
            .await
            .with_context(|| format!("mirroring SeaTable's bucket `{}`", b.location.bucket))?;
        mirrored.push(b.location.bucket.clone());
        set.objects.push(entry);
    }
    Ok(mirrored)
}

/// Archives SeaTable's compose directory as the `config` component, or says why it is not in
/// the set.
pub async fn archive_config(
    scope: &Scope,
    source: Option<(std::path::PathBuf, Vec<std::path::PathBuf>)>,
    whole_set: bool,
    to: &Target<'_>,
    set: &mut Contents,
) -> anyhow::Result<()> {
    let config = &scope.config;
    const WHAT: &str = "config (SeaTable's compose directory)";
    let Some((dir, excludes)) = source else {
        if !config.seatable.config_component {
            set.skip(WHAT, "disabled by `seatable.config_component`");
        } else if whole_set {
            set.skip(WHAT, "no compose directory found; set `seatable.compose_dir`");
        }
        return Ok(());
    };
    let key = to.key(config, &catalog::config_name(config.compression.algorithm.extension()));
    let opts = TarOptions { excludes, ..Default::default() };
    let (entry, stats) = archive(to, &key, "config", &dir, opts, config).await?;
    for p in &stats.skipped {
        set.skip(
            format!("config/{p}"),
            "a directory of the old layout's /opt/seatable (data, DB files): only its top-level files are configuration",
        );
    }
    set.warnings.extend(stats.warnings.iter().cloned());
    set.objects.push(entry);
    Ok(())
}

/// Runs `seatable.sh backup-all` in the app container; says what became of it. A failing
/// backup-all fails the run: the archive would hold stale Big Data backups.
async fn big_data_backup(config: &Config, app: &Option<AppContainer>) -> anyhow::Result<String> {
    if !config.seatable.big_data_backup {
        return Ok("disabled by `seatable.big_data_backup`".into());
    }
    let Some(app) = app else {
        return Ok("no SeaTable app container found (`seatable-server` or `seatable`); the archive holds the Big Data backups dtable-db made on its own schedule".into());
    };
    if !app.running {
        return Ok(format!(
            "app container `{}` is not running; the archive holds the Big Data backups dtable-db made before",
            app.name
        ));
    }
    let docker = Docker::connect(config.database.docker_host.as_deref())?;
    let t = Instant::now();
    tracing::info!(container = %app.name, "running `{} backup-all` (Big Data)", seatable::SEATABLE_SH);
    let out = docker
        .exec_capture(&app.name, vec![seatable::SEATABLE_SH.into(), "backup-all".into()], vec![])
        .await
        .context("running `seatable.sh backup-all`")?;
    for l in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(container = %app.name, "backup-all: {l}");
    }
    if out.status.exit_code != 0 {
        return Err(Failure::new(
            Class::Source,
            format!(
                "Big Data backup `seatable.sh backup-all` in container `{}` failed (exit code {}): {}",
                app.name,
                out.status.exit_code,
                crate::source::process::or_none(&out.status.stderr)
            ),
        )
        .with_hint("see `docker logs` of the app container; `seatable.big_data_backup = false` skips this step")
        .into());
    }
    Ok(format!("ran `seatable.sh backup-all` in `{}` ({:.1} s)", app.name, t.elapsed().as_secs_f64()))
}

/// Archives `dir` into `key` and commits it.
async fn archive(
    to: &Target<'_>,
    key: &str,
    component: &str,
    dir: &Path,
    opts: TarOptions,
    config: &Config,
) -> anyhow::Result<(ObjectEntry, TarStats)> {
    let what = match component {
        "config" => format!("compose directory `{}`", dir.display()),
        _ => format!("data directory `{}`", dir.display()),
    };
    let t = Instant::now();
    let produced = data::tar_stream(dir.to_path_buf(), opts);
    let (staged, report): (Staged, DataReport) =
        transfer(to, key, produced, config, &config.compression).await.with_context(|| format!("backing up {what}"))?;
    let s = report.stats;
    let entry = ObjectEntry {
        tar: Some(TarSummary {
            files: s.files,
            dirs: s.dirs,
            symlinks: s.symlinks,
            hardlinks: s.hardlinks,
            other: s.other,
            file_bytes: s.bytes,
            excluded: s.skipped.clone(),
            external_symlinks: s.external_symlinks.clone(),
            external_symlinks_total: s.external_symlinks_total,
        }),
        ..ObjectEntry::from_stored(&staged.stored, component, Kind::Tar, &config.compression, report.raw_size)
    };
    staged.commit().await.with_context(|| format!("backing up {what}"))?;
    to.written.push(key);
    log_object(&entry, t);
    Ok((entry, s))
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

/// Streams a producer through compression into a staged object; commits nothing. The progress
/// line (when there is one) names the object within its set: `db/dtable_db.sql.zst`, `data/...`.
async fn transfer<T>(
    to: &Target<'_>,
    key: &str,
    produced: Produced<T>,
    config: &Config,
    compression: &CompressionConfig,
) -> anyhow::Result<(Staged, T)> {
    let Produced { reader, finish } = produced;
    let compressed = match to.progress {
        Some(p) => {
            let mut tail = key.rsplit('/');
            let (name, dir) = (tail.next().unwrap_or(key), tail.next().unwrap_or(""));
            p.begin(&format!("{dir}/{name}"));
            p.count_stored(codec::compress(p.count_read(reader), compression))
        }
        None => codec::compress(reader, compression),
    };
    let result = match upload::stage(to.store, key, compressed, &config.storage.upload, to.written.uploads()).await {
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
    };
    if let Some(p) = to.progress {
        p.end();
    }
    result
}
