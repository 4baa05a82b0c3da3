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

use crate::catalog::{
    self, Kind, Manifest, ObjectEntry, SeatableInfo, SetId, Skipped, SourceInfo, StorageInfo, TarSummary,
};
use crate::cli::Only;
use crate::config::{CompressionConfig, Config, DbAccess};
use crate::error::{storage, usage, Class as ErrClass, Failure};
use crate::mirror;
use crate::seatable::defaults::LOG_TABLES;
use crate::seatable::{self, AppContainer, Install};
use crate::source::data::{self, DataReport};
use crate::source::docker::Docker;
use crate::source::dump::{DbSource, DumpReport};
use crate::source::tar::{TarOptions, TarStats};
use crate::source::Produced;
use crate::store::upload::{self, Staged};
use crate::store::{Retention, Store};
use crate::{clock, codec};

/// Keys this run has made visible, so that a failed or interrupted run can remove them.
#[derive(Debug, Default, Clone)]
pub struct Written(Arc<Mutex<Vec<String>>>, Arc<Mutex<Option<String>>>);

impl Written {
    pub(crate) fn push(&self, key: &str) {
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
        // Newest first: the manifest (registered last) goes before the objects it lists, so a
        // cleanup cut short leaves a set without manifest, never a complete-looking one.
        for key in self.take().into_iter().rev() {
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
    let mut started = clock::now();
    let clock = Instant::now();
    // What the install's files say, laid under what is configured.
    let install = Install::detect(config)?;
    let config = &install.apply(config);
    let want_db = config.database.enabled && matches!(only, None | Some(Only::Db));
    let want_data = config.data.enabled && matches!(only, None | Some(Only::Data));
    let config_source = if config.seatable.config_component && matches!(only, None | Some(Only::Config)) {
        install.config_source()?
    } else {
        None
    };
    if only == Some(Only::Config) && config_source.is_none() {
        return Err(Failure::new(ErrClass::Usage, "--only config: no SeaTable compose directory was found")
            .with_hint("set `seatable.compose_dir` (4.3+: /opt/seatable-compose; older: /opt/seatable)")
            .into());
    }
    if !want_db && !want_data && config_source.is_none() {
        return Err(usage(
            "nothing to back up: the databases and the data directory are both disabled (or left out by --only)",
        ));
    }

    // Preflight: nothing is written until all of this passed.
    store.preflight().await.with_context(|| format!("checking destination `{}`", store.describe()))?;
    let mut databases = config.database.databases.clone();
    let db = if want_db {
        let src = DbSource::connect(&config.database).await?;
        if !config.configured.databases
            && src.databases.iter().any(|d| d == seatable::SCHEDULER_DB)
            && !databases.iter().any(|d| d == seatable::SCHEDULER_DB)
        {
            databases.push(seatable::SCHEDULER_DB.to_string());
        }
        src.check_databases(&databases)?;
        tracing::info!(server = %src.describe(), version = %src.server_version, dump = %src.dump_binary, "database server ready");
        Some(src)
    } else {
        None
    };
    let data_dir: Option<PathBuf> = if want_data { Some(data::resolve_dir(&config.data)?) } else { None };
    if let Some(dir) = &data_dir {
        data::check_follow(dir, &config.data.follow_symlinks)?;
    }
    let app = find_app(&install, config).await;

    let earlier = catalog::host_sets(store.as_ref(), &config.storage.prefix, &config.host)
        .await
        .context("listing this host's sets to pick the class")?;
    // One stamp, one set per host: a run in the same second as the last one (in another class
    // directory) waits for the next second, so that stamps order the sets.
    while earlier.iter().any(|s| s.stamp >= catalog::stamp(started)) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        started = clock::now();
        if earlier.iter().any(|s| s.created.is_some_and(|c| c > started + chrono::Duration::seconds(5))) {
            break; // a set from the future (clock skew): do not wait for it
        }
    }
    let class = catalog::pick_class(&earlier, &config.host, started);
    let id = SetId { class, host: config.host.clone(), stamp: catalog::stamp(started) };
    let lock = object_lock(config, store.as_ref(), class, started).await;
    let prefix = &config.storage.prefix;
    let existing = store.list(&id.dir(prefix)).await.context("checking the new set's keys")?;
    if !existing.is_empty() {
        return Err(storage(format!("set `{}` already has objects (another run in the same second?)", id.dir(prefix))));
    }
    written.set_dir(&id.dir(prefix));
    tracing::info!(set = %id, destination = %store.describe(), layout = install.layout.as_str(), "backup started");

    let ext = config.compression.algorithm.extension();
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();

    // Databases first, so that no row points at a file missing from the set.
    if let Some(src) = &db {
        for name in &databases {
            let key = id.key(prefix, &catalog::dump_name(name, ext));
            let excluded: Vec<String> =
                config.database.exclude_tables.iter().filter(|t| t.starts_with(&format!("{name}."))).cloned().collect();
            let t = Instant::now();
            let produced = src.dump(name, &excluded).await?;
            let (staged, report): (Staged, DumpReport) =
                transfer(&store, &key, produced, config, &config.compression.for_dumps())
                    .await
                    .with_context(|| format!("backing up database `{name}`"))?;
            let entry = dump_entry(format!("db/{name}"), &staged, &report, config, name, excluded.clone(), vec![]);
            staged.commit().await.with_context(|| format!("backing up database `{name}`"))?;
            written.push(&key);
            log_object(&entry, t);
            let is_log = |t: &str| LOG_TABLES.iter().any(|l| t == format!("{name}.{l}"));
            for t in &excluded {
                let why = if config.database.log_tables_separately && is_log(t) {
                    continue; // dumped into its own object below
                } else if config.database.exclude_log_tables && is_log(t) {
                    "a log table left out by `database.exclude_log_tables` (a slim dump: base history and up to 5 minutes of unsaved changes are not in it)"
                } else {
                    "excluded by `database.exclude_tables`"
                };
                skipped.push(Skipped { what: format!("table {t}"), why: why.into() });
            }
            objects.push(entry);
            if config.database.log_tables_separately && name == &install.dtable_db(config) {
                if let Some(entry) = dump_log_tables(src, name, &store, config, &id, written).await? {
                    objects.push(entry);
                }
            }
        }
    }

    let mut big_data = "not applicable (the data directory is not in this backup)".to_string();
    if let Some(dir) = &data_dir {
        // Big Data: dtable-db backs its bases up into dtable-storage-server; have it do that now,
        // so that the archive holds a current copy.
        big_data = big_data_backup(config, &app).await?;
        if !big_data.starts_with("ran") {
            skipped.push(Skipped { what: "Big Data backup (`seatable.sh backup-all`)".into(), why: big_data.clone() });
        }

        let storage_excl = install.storage_exclusions();
        let mut excludes = data::excludes(&config.data);
        excludes.extend(storage_excl.iter().map(|e| PathBuf::from(&e.path)));
        let key = id.key(prefix, &catalog::data_name(ext));
        let opts = TarOptions { excludes, follow_symlinks: config.data.follow_symlinks.clone() };
        let (entry, stats) = archive(&store, &key, "data", dir, opts, config, written).await?;
        for p in &stats.skipped {
            let why = if let Some(e) = storage_excl.iter().find(|e| &e.path == p) {
                format!("holds nothing worth archiving: {}", e.why)
            } else if crate::seatable::defaults::ALWAYS_EXCLUDED.contains(&p.as_str()) {
                "never archived: SeaTable recreates it (logs, pids, scripts, ccnet) or dtable-db backs it up into storage-data (db-data)".into()
            } else {
                "excluded by `data.exclude`".into()
            };
            skipped.push(Skipped { what: format!("data/{p}"), why });
        }
        warnings.extend(stats.warnings.iter().cloned());
        warnings.extend(data::report_external_symlinks(&stats));
        objects.push(entry);
    }

    // SeaTable's own buckets, when asked to mirror them (after the databases, like the files).
    let mut mirrored = Vec::new();
    if want_data && config.seatable.mirror_object_storage {
        if let Some(st) = &install.storage {
            for b in mirror::buckets_of(st) {
                let entry = mirror::backup_bucket(&b, &store, config, &id, written)
                    .await
                    .with_context(|| format!("mirroring SeaTable's bucket `{}`", b.location.bucket))?;
                mirrored.push(b.location.bucket.clone());
                objects.push(entry);
            }
        }
    }

    if let Some((dir, excludes)) = &config_source {
        let key = id.key(prefix, &catalog::config_name(ext));
        let opts = TarOptions { excludes: excludes.clone(), ..Default::default() };
        let (entry, stats) = archive(&store, &key, "config", dir, opts, config, written).await?;
        for p in &stats.skipped {
            skipped.push(Skipped {
                what: format!("config/{p}"),
                why: "a directory of the old layout's /opt/seatable (data, DB files): only its top-level files are configuration".into(),
            });
        }
        warnings.extend(stats.warnings.iter().cloned());
        objects.push(entry);
    } else if config.seatable.config_component && only.is_none() {
        skipped.push(Skipped {
            what: "config (SeaTable's compose directory)".into(),
            why: "no compose directory found; set `seatable.compose_dir`".into(),
        });
    } else if !config.seatable.config_component {
        skipped.push(Skipped {
            what: "config (SeaTable's compose directory)".into(),
            why: "disabled by `seatable.config_component`".into(),
        });
    }

    let mut seatable_info = seatable_info(&install, config, db.as_ref(), app.as_ref(), data_dir.is_some(), big_data);
    for s in seatable_info.storage.iter_mut() {
        if s.bucket.as_ref().is_some_and(|b| mirrored.contains(b)) {
            s.in_backup = true;
        }
    }
    let manifest = Manifest {
        schema: catalog::SCHEMA_VERSION,
        tool: env!("CARGO_PKG_NAME").into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        host: config.host.clone(),
        class: id.class,
        stamp: id.stamp.clone(),
        started_at: started,
        finished_at: clock::now(),
        layout: install.layout.as_str().into(),
        source: SourceInfo {
            data_dir: data_dir.as_ref().map(|d| d.display().to_string()),
            database_server: db.as_ref().map(|d| d.describe().replace('`', "")),
            database_server_version: db.as_ref().map(|d| d.server_version.clone()),
            dump_binary: db.as_ref().map(|d| d.dump_binary.clone()),
        },
        objects,
        skipped,
        warnings,
        seatable: Some(seatable_info),
        requires: vec![],
    };
    let key = id.key(prefix, catalog::MANIFEST);
    // Registered before the PUT: one that fails, times out or is cut short by a signal may
    // still have landed, and a failed run must not leave a manifest behind.
    written.push(&key);
    store.put_object(&key, manifest.to_json().into()).await.context("writing the manifest")?;
    // The set is complete: from here on nothing may remove it, not even a failed lock.
    written.take();
    if let Some(retention) = lock {
        lock_set(store.as_ref(), &id, prefix, retention).await?;
    }
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
    for s in manifest.seatable.iter().flat_map(|s| &s.storage).filter(|s| !s.in_backup) {
        tracing::warn!(
            bucket = s.bucket.as_deref().unwrap_or("?"),
            endpoint = s.endpoint.as_deref().unwrap_or("AWS"),
            "NOT in this backup: {}'s objects live in S3 bucket `{}`; back that bucket up separately (versioning, or an S3-to-S3 copy), or mirror it into the set (`seatable.mirror_object_storage`)",
            s.user,
            s.bucket.as_deref().unwrap_or("?")
        );
    }
    Ok(manifest)
}

/// The Object Lock retention for a new set, when the bucket has Object Lock enabled and the
/// configuration does not turn it off.
async fn object_lock(
    config: &Config,
    store: &dyn Store,
    class: catalog::Class,
    started: chrono::DateTime<chrono::Utc>,
) -> Option<Retention> {
    if !config.retention.object_lock {
        return None;
    }
    match store.features().await {
        Ok(f) if f.object_lock => {
            let days = config.retention.object_lock_days.unwrap_or_else(|| class.keep_days(&config.retention));
            let r = Retention {
                mode: config.retention.object_lock_mode,
                until: started + chrono::Duration::days(days.into()),
            };
            tracing::info!(mode = r.mode.as_str(), until = %r.until, "the bucket has Object Lock: the set's objects will be locked");
            Some(r)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the bucket's Object Lock setting (these credentials may lack s3:GetBucketObjectLockConfiguration); the set is not locked");
            None
        }
    }
}

/// Objects locked at once.
const LOCKS_IN_FLIGHT: usize = 8;

/// Puts the retention on every object of the complete set (the manifest included).
async fn lock_set(store: &dyn Store, id: &SetId, prefix: &str, retention: Retention) -> anyhow::Result<()> {
    use futures::StreamExt;
    let keys: Vec<String> = store
        .list(&id.dir(prefix))
        .await
        .with_context(|| format!("listing set {id} to lock it"))?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let count = keys.len();
    let failed: Vec<(String, crate::store::StoreError)> = futures::stream::iter(keys)
        .map(|k| async move { store.lock_object(&k, retention).await.err().map(|e| (k, e)) })
        .buffer_unordered(LOCKS_IN_FLIGHT)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    if let Some((key, e)) = failed.first() {
        return Err(storage(format!(
            "set {id} is complete, but Object Lock retention could not be put on {} of its {count} objects (first `{key}`: {e})",
            failed.len()
        )));
    }
    tracing::info!(set = %id, objects = count, mode = retention.mode.as_str(), until = %retention.until, "set locked");
    Ok(())
}

/// Dumps the log tables `db` has into their own object (`db/<db>.log-tables.sql.*`), so that they
/// can be kept for a shorter time than the rest; `None` when it has none of them.
async fn dump_log_tables(
    src: &DbSource,
    db: &str,
    store: &Arc<dyn Store>,
    config: &Config,
    id: &SetId,
    written: &Written,
) -> anyhow::Result<Option<ObjectEntry>> {
    let present = src.tables_of(db).await.with_context(|| format!("listing the tables of `{db}`"))?;
    let tables: Vec<String> =
        LOG_TABLES.iter().filter(|t| present.iter().any(|p| p == *t)).map(|t| t.to_string()).collect();
    if tables.is_empty() {
        return Ok(None);
    }
    let ext = config.compression.algorithm.extension();
    let key = id.key(&config.storage.prefix, &catalog::log_tables_name(db, ext));
    let t = Instant::now();
    let produced = src.dump_tables(db, &tables).await?;
    let (staged, report): (Staged, DumpReport) =
        transfer(store, &key, produced, config, &config.compression.for_dumps())
            .await
            .with_context(|| format!("backing up the log tables of `{db}`"))?;
    let entry = dump_entry(format!("db/{db}/log-tables"), &staged, &report, config, db, vec![], tables);
    staged.commit().await.with_context(|| format!("backing up the log tables of `{db}`"))?;
    written.push(&key);
    log_object(&entry, t);
    Ok(Some(entry))
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
        ..staged.entry(component, Kind::MysqlDump, &config.compression, report.raw_size)
    }
}

/// SeaTable's app container, when Docker answers and it exists.
pub async fn find_app(install: &Install, config: &Config) -> Option<AppContainer> {
    let docker = Docker::connect(config.database.docker_host.as_deref()).ok()?;
    match seatable::app_container(&docker, &install.app_containers(config)).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot look for SeaTable's app container");
            None
        }
    }
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
            ErrClass::Source,
            format!(
                "Big Data backup `seatable.sh backup-all` in container `{}` failed (exit code {}): {}",
                app.name,
                out.status.exit_code,
                if out.status.stderr.is_empty() { "no error output" } else { &out.status.stderr }
            ),
        )
        .with_hint("see `docker logs` of the app container; `seatable.big_data_backup = false` skips this step")
        .into());
    }
    Ok(format!("ran `seatable.sh backup-all` in `{}` ({:.1} s)", app.name, t.elapsed().as_secs_f64()))
}

/// Archives `dir` into `key` and commits it.
async fn archive(
    store: &Arc<dyn Store>,
    key: &str,
    component: &str,
    dir: &std::path::Path,
    opts: TarOptions,
    config: &Config,
    written: &Written,
) -> anyhow::Result<(ObjectEntry, TarStats)> {
    let what = match component {
        "config" => format!("compose directory `{}`", dir.display()),
        _ => format!("data directory `{}`", dir.display()),
    };
    let t = Instant::now();
    let produced = data::tar_stream(dir.to_path_buf(), opts);
    let (staged, report): (Staged, DataReport) = transfer(store, key, produced, config, &config.compression)
        .await
        .with_context(|| format!("backing up {what}"))?;
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
        ..staged.entry(component, Kind::Tar, &config.compression, report.raw_size)
    };
    staged.commit().await.with_context(|| format!("backing up {what}"))?;
    written.push(key);
    log_object(&entry, t);
    Ok((entry, s))
}

/// The manifest's account of the install (no secrets: bucket names and endpoints only).
pub fn seatable_info(
    install: &Install,
    config: &Config,
    db: Option<&DbSource>,
    app: Option<&AppContainer>,
    data_in_backup: bool,
    big_data_backup: String,
) -> SeatableInfo {
    let database = match (&config.database.access, db) {
        (_, Some(src)) if src.container().is_some() => format!("container {}", src.describe().replace('`', "")),
        (DbAccess::Host { host, port }, _) => format!("external {host}:{port}"),
        (DbAccess::Container { container, .. }, _) => {
            format!("container {}", container.as_deref().unwrap_or("(not checked)"))
        }
    };
    let excluded: Vec<String> = install.storage_exclusions().into_iter().map(|e| e.path).collect();
    SeatableInfo {
        layout_source: install.layout_source.clone(),
        compose_dir: install.compose_dir.as_ref().map(|d| d.display().to_string()),
        version: app
            .and_then(|a| a.version.clone())
            .or_else(|| install.env_image.as_deref().and_then(seatable::image_version)),
        image: app.map(|a| a.image.clone()).or_else(|| install.env_image.clone()),
        app_container: app.map(|a| a.name.clone()),
        database,
        database_names: if config.configured.databases {
            Vec::new()
        } else {
            config.database.databases.iter().take(3).cloned().collect()
        },
        storage: install.storage.as_ref().map(|s| storage_info(s, data_in_backup, &excluded)).unwrap_or_default(),
        big_data_backup,
    }
}

/// One line per storage backend: where it keeps its objects and whether this set holds them.
pub fn storage_info(
    st: &seatable::storage::StorageBackends,
    data_in_backup: bool,
    excluded: &[String],
) -> Vec<StorageInfo> {
    use seatable::storage::Backend;
    let entry = |user: String, b: &Backend, source: &str, path: &str| match b {
        Backend::Filesystem { path: fs_path } => StorageInfo {
            user,
            backend: "filesystem".into(),
            bucket: None,
            endpoint: fs_path.clone(),
            region: None,
            sse_c: false,
            source: source.to_string(),
            in_backup: data_in_backup && !excluded.iter().any(|e| e == path),
        },
        Backend::S3 { location, .. } => StorageInfo {
            user,
            backend: "s3".into(),
            bucket: Some(location.bucket.clone()),
            endpoint: location.endpoint(),
            region: location.region.clone(),
            sse_c: location.sse_c,
            source: source.to_string(),
            in_backup: false,
        },
    };
    let mut out = vec![entry(
        "dtable-storage-server".into(),
        &st.dtable_storage.value,
        &st.dtable_storage.source,
        "storage-data",
    )];
    for (kind, b) in &st.seafile {
        out.push(entry(format!("seafile {}", kind.name()), &b.value, &b.source, kind.data_path()));
    }
    if let Some(a) = &st.avatar {
        out.push(StorageInfo {
            user: "avatars".into(),
            backend: "s3".into(),
            bucket: Some(a.value.bucket.clone()),
            endpoint: a.value.endpoint(),
            region: a.value.region.clone(),
            sse_c: a.value.sse_c,
            source: a.source.clone(),
            in_backup: false,
        });
    }
    out
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
    compression: &CompressionConfig,
) -> anyhow::Result<(Staged, T)> {
    // The progress line names the object within its set: `db/dtable_db.sql.zst`, `data/...`.
    let mut tail = key.rsplit('/');
    let (name, dir) = (tail.next().unwrap_or(key), tail.next().unwrap_or(""));
    crate::output::begin(&format!("{dir}/{name}"));
    let result = transfer_counted(store, key, produced, config, compression).await;
    crate::output::end();
    result
}

async fn transfer_counted<T>(
    store: &Arc<dyn Store>,
    key: &str,
    produced: Produced<T>,
    config: &Config,
    compression: &CompressionConfig,
) -> anyhow::Result<(Staged, T)> {
    let Produced { reader, finish } = produced;
    let compressed = crate::output::count_stored(codec::compress(crate::output::count_read(reader), compression));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::LocalStore;
    use crate::store::{ByteReader, MultipartUpload, ObjectInfo, OpenUpload, StoreError};

    /// The local store, except that the manifest's PUT lands and then reports an error (as a
    /// timeout after the store took the object does).
    struct ManifestPutLost(LocalStore);

    #[async_trait::async_trait]
    impl Store for ManifestPutLost {
        fn describe(&self) -> String {
            self.0.describe()
        }
        async fn preflight(&self) -> Result<(), StoreError> {
            self.0.preflight().await
        }
        async fn put_object(&self, key: &str, body: bytes::Bytes) -> Result<(), StoreError> {
            self.0.put_object(key, body).await?;
            if key.ends_with(catalog::MANIFEST) {
                return Err(StoreError::Unreachable { target: key.into(), detail: "injected timeout".into() });
            }
            Ok(())
        }
        async fn create_upload(&self, key: &str) -> Result<Arc<dyn MultipartUpload>, StoreError> {
            self.0.create_upload(key).await
        }
        async fn get_object(&self, key: &str) -> Result<bytes::Bytes, StoreError> {
            self.0.get_object(key).await
        }
        async fn get_stream(&self, key: &str) -> Result<ByteReader, StoreError> {
            self.0.get_stream(key).await
        }
        async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<bytes::Bytes>, StoreError> {
            self.0.get_range(key, start, len).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
            self.0.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key).await
        }
        async fn list_open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
            self.0.list_open_uploads(prefix).await
        }
        async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError> {
            self.0.abort_upload(upload).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_manifest_put_with_unknown_outcome_is_cleaned_up_with_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let (data, dest, root) = (tmp.path().join("data"), tmp.path().join("store"), tmp.path().join("root"));
        for d in [&data, &dest, &root] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(data.join("file"), b"content").unwrap();
        let toml = format!(
            "host = \"h\"\n[storage]\ndestination = \"file://{}\"\n[database]\nenabled = false\n[data]\ndir = \"{}\"\n[seatable]\nroot = \"{}\"\nconfig_component = false\nbig_data_backup = false\n",
            dest.display(),
            data.display(),
            root.display()
        );
        let config = Config::from_toml(&toml, &tmp.path().join("c.toml")).unwrap();
        let store: Arc<dyn Store> = Arc::new(ManifestPutLost(LocalStore::new(dest.clone())));
        let written = Written::default();
        let err = run(&config, store.clone(), None, &written).await.unwrap_err();
        assert!(format!("{err:#}").contains("writing the manifest"), "{err:#}");
        // The manifest landed: the set looks complete until the run's cleanup.
        let listed = store.list("").await.unwrap();
        assert!(listed.iter().any(|o| o.key.ends_with(catalog::MANIFEST)), "{listed:?}");
        written.remove_all(store.as_ref()).await;
        let left = store.list("").await.unwrap();
        assert!(left.is_empty(), "the failed run left {left:?}");
    }
}
