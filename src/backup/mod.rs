//! `backup`: databases first, then the data directory, then the manifest (the commit).
//!
//! Everything that can be checked is checked before the first byte is written (destination,
//! Docker, container, dump tools, login, databases, data directory). Each object is committed
//! only after its producer succeeded; on any failure the objects this run already committed are
//! deleted (best effort: without delete permission they stay, in a set without manifest, which
//! `list` shows as incomplete) and no manifest is written.
//!
//! - [`scope`]: what a backup of this install takes (shared with `plan`);
//! - `objects`: producing, compressing, uploading and committing each object;
//! - `info`: the manifest's account of the install;
//! - `object_lock`: Object Lock retention on the complete set.

mod info;
mod object_lock;
mod objects;
pub mod scope;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

pub use info::{seatable_info, storage_info};
use objects::{Contents, Target};
use scope::Scope;

use crate::catalog::{self, Manifest, SetId};
use crate::cli::Only;
use crate::config::Config;
use crate::error::{storage, Class, Failure};
use crate::run::{RunContext, Written};
use crate::seatable::AppContainer;
use crate::source::data;
use crate::source::dump::DbSource;
use crate::store::{Retention, Store};

/// Runs one backup; returns the manifest written. A failed or cancelled run removes what it
/// wrote (and aborts its open uploads) before it returns: nothing that looks complete is left.
pub async fn run(
    config: &Config,
    store: Arc<dyn Store>,
    only: Option<Only>,
    ctx: &RunContext,
) -> anyhow::Result<Manifest> {
    let work = write_set(config, store.clone(), only, ctx);
    tokio::select! {
        result = work => {
            if result.is_err() {
                ctx.written.remove_all(store.as_ref()).await;
            }
            result
        }
        _ = ctx.cancel.cancelled() => {
            ctx.written.abort_open_uploads(store.as_ref()).await;
            ctx.written.remove_all(store.as_ref()).await;
            Err(Failure::new(Class::Interrupted, format!("backup interrupted by {}; no manifest written", ctx.reason()))
                .into())
        }
    }
}

/// What the preflight found: the database server, the data directory, the app container.
struct Ready {
    db: Option<DbSource>,
    databases: Vec<String>,
    data_dir: Option<PathBuf>,
    app: Option<AppContainer>,
}

/// Writes the set: the objects, then the manifest.
async fn write_set(
    config: &Config,
    store: Arc<dyn Store>,
    only: Option<Only>,
    ctx: &RunContext,
) -> anyhow::Result<Manifest> {
    let (clock, written) = (Instant::now(), &ctx.written);
    // What the install's files say, laid under what is configured.
    let scope = Scope::new(config, only)?;
    let config_source = scope.config_source(only)?;
    let ready = preflight(&scope, store.as_ref()).await?;
    let (id, started, lock) = new_set(&scope.config, store.as_ref(), written).await?;
    tracing::info!(set = %id, destination = %store.describe(), layout = scope.install.layout.as_str(), "backup started");

    let to = Target { store: &store, id: &id, written, progress: ctx.progress.as_ref() };
    let mut set = Contents::default();
    // Databases first, so that no row points at a file missing from the set.
    if let Some(src) = &ready.db {
        objects::dump_databases(&scope, src, &ready.databases, &to, &mut set).await?;
    }
    let mut big_data = "not applicable (the data directory is not in this backup)".to_string();
    if let Some(dir) = &ready.data_dir {
        big_data = objects::archive_data(&scope, dir, &ready.app, &to, &mut set).await?;
    }
    // SeaTable's own buckets, when asked to mirror them (after the databases, like the files).
    let mut mirrored = Vec::new();
    if scope.want_data && scope.config.seatable.mirror_object_storage {
        mirrored = objects::mirror_buckets(&scope, &to, &mut set).await?;
    }
    objects::archive_config(&scope, config_source, only.is_none(), &to, &mut set).await?;

    let facts = info::Facts {
        started,
        db: ready.db.as_ref(),
        app: ready.app.as_ref(),
        data_dir: ready.data_dir.as_deref(),
        big_data,
        mirrored,
    };
    let manifest = info::manifest(&scope, &id, facts, set);
    let key = commit(store.as_ref(), &scope.config, &id, &manifest, written, lock).await?;
    log_complete(&id, &key, &manifest, clock);
    Ok(manifest)
}

/// Checks everything that can be checked before a byte is written.
async fn preflight(scope: &Scope, store: &dyn Store) -> anyhow::Result<Ready> {
    let config = &scope.config;
    store.preflight().await.with_context(|| format!("checking destination `{}`", store.describe()))?;
    let (db, databases) = if scope.want_db {
        let src = DbSource::connect(&config.database).await?;
        let databases = scope.databases(&src.databases);
        src.check_databases(&databases)?;
        tracing::info!(server = %src.describe(), version = %src.server_version, dump = %src.dump_binary, "database server ready");
        (Some(src), databases)
    } else {
        (None, config.database.databases.clone())
    };
    let data_dir = if scope.want_data { Some(data::resolve_dir(&config.data)?) } else { None };
    if let Some(dir) = &data_dir {
        data::check_follow(dir, &config.data.follow_symlinks)?;
    }
    Ok(Ready { db, databases, data_dir, app: scope.app().await })
}

/// Picks the new set's class and stamp, and the Object Lock retention it gets; checks that its
/// directory is empty and registers it as this run's.
async fn new_set(
    config: &Config,
    store: &dyn Store,
    written: &Written,
) -> anyhow::Result<(SetId, chrono::DateTime<chrono::Utc>, Option<Retention>)> {
    let mut started = crate::clock::now();
    let earlier = catalog::host_sets(store, &config.storage.prefix, &config.host)
        .await
        .context("listing this host's sets to pick the class")?;
    // One stamp, one set per host: a run in the same second as the last one (in another class
    // directory) waits for the next second, so that stamps order the sets.
    while earlier.iter().any(|s| s.stamp >= catalog::stamp(started)) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        started = crate::clock::now();
        if earlier.iter().any(|s| s.created.is_some_and(|c| c > started + chrono::Duration::seconds(5))) {
            break; // a set from the future (clock skew): do not wait for it
        }
    }
    let class = catalog::pick_class(&earlier, &config.host, started);
    let id = SetId { class, host: config.host.clone(), stamp: catalog::stamp(started) };
    let lock = object_lock::retention_for(config, store, class, started).await;
    let dir = id.dir(&config.storage.prefix);
    let existing = store.list(&dir).await.context("checking the new set's keys")?;
    if !existing.is_empty() {
        return Err(storage(format!("set `{dir}` already has objects (another run in the same second?)")));
    }
    written.set_dir(&dir);
    Ok((id, started, lock))
}

/// Writes the manifest (the commit), then locks the set where the bucket has Object Lock;
/// returns the manifest's key.
async fn commit(
    store: &dyn Store,
    config: &Config,
    id: &SetId,
    manifest: &Manifest,
    written: &Written,
    lock: Option<Retention>,
) -> anyhow::Result<String> {
    let key = id.key(&config.storage.prefix, catalog::MANIFEST);
    // Registered before the PUT: one that fails, times out or is cut short by a signal may
    // still have landed, and a failed run must not leave a manifest behind.
    written.push(&key);
    store.put_object(&key, manifest.to_json().into()).await.context("writing the manifest")?;
    // The set is complete: from here on nothing may remove it, not even a failed lock.
    written.take();
    if let Some(retention) = lock {
        object_lock::lock_set(store, id, &config.storage.prefix, retention).await?;
    }
    Ok(key)
}

fn log_complete(id: &SetId, key: &str, manifest: &Manifest, clock: Instant) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::LocalStore;
    use crate::store::{ByteReader, MultipartUpload, ObjectInfo, OpenUpload, StoreError};

    type Hook = Box<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), StoreError>> + Send + Sync>;

    /// The local store, except that once the manifest's PUT landed, `hook` decides what the
    /// PUT answers (an error, as a timeout after the store took the object; or no answer).
    struct ManifestPutHook(LocalStore, Hook);

    #[async_trait::async_trait]
    impl Store for ManifestPutHook {
        fn describe(&self) -> String {
            self.0.describe()
        }
        async fn preflight(&self) -> Result<(), StoreError> {
            self.0.preflight().await
        }
        async fn put_object(&self, key: &str, body: bytes::Bytes) -> Result<(), StoreError> {
            self.0.put_object(key, body).await?;
            if key.ends_with(catalog::MANIFEST) {
                return (self.1)().await;
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

    /// A config backing up `tmp/data` (one file) into the local store `tmp/store`.
    fn data_only(tmp: &std::path::Path) -> (Config, std::path::PathBuf) {
        let (data, dest, root) = (tmp.join("data"), tmp.join("store"), tmp.join("root"));
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
        (Config::from_toml(&toml, &tmp.join("c.toml")).unwrap(), dest)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_manifest_put_with_unknown_outcome_is_cleaned_up_with_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let (config, dest) = data_only(tmp.path());
        let lost: Hook = Box::new(|| {
            Box::pin(async {
                Err(StoreError::Unreachable { target: "manifest".into(), detail: "injected timeout".into() })
            })
        });
        let store: Arc<dyn Store> = Arc::new(ManifestPutHook(LocalStore::new(dest.clone()), lost));
        let ctx = RunContext::new();
        let err = write_set(&config, store.clone(), None, &ctx).await.unwrap_err();
        assert!(format!("{err:#}").contains("writing the manifest"), "{err:#}");
        // The manifest landed: the set looks complete until the run's cleanup.
        let listed = store.list("").await.unwrap();
        assert!(listed.iter().any(|o| o.key.ends_with(catalog::MANIFEST)), "{listed:?}");
        ctx.written.remove_all(store.as_ref()).await;
        let left = store.list("").await.unwrap();
        assert!(left.is_empty(), "the failed run left {left:?}");
    }

    /// Cancellation comes through the run's context, so a test drives it in-process: the run
    /// is cancelled while its manifest PUT hangs (it landed, but no answer came), and `run`
    /// returns `Interrupted` having removed the manifest and the data object.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_run_leaves_nothing_that_looks_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let (config, dest) = data_only(tmp.path());
        let ctx = RunContext::new();
        let canceller = ctx.clone();
        let hang: Hook = Box::new(move || {
            canceller.cancel("a test");
            Box::pin(std::future::pending())
        });
        let store: Arc<dyn Store> = Arc::new(ManifestPutHook(LocalStore::new(dest.clone()), hang));
        let err = run(&config, store.clone(), None, &ctx).await.unwrap_err();
        assert_eq!(crate::exit::class_of(&err), Class::Interrupted, "{err:#}");
        assert!(format!("{err:#}").contains("interrupted by a test"), "{err:#}");
        let left = store.list("").await.unwrap();
        assert!(left.is_empty(), "the cancelled run left {left:?}");
    }
}
