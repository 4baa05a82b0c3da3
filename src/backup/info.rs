//! The manifest's account of a set: the install as detected (layout, versions, storage
//! backends, with no secret: bucket names and endpoints only), the source, and the objects.

use super::objects::Contents;
use super::scope::Scope;
use crate::catalog::{self, Manifest, SeatableInfo, SetId, SourceInfo, StorageInfo};
use crate::config::{Config, DbAccess};
use crate::seatable::{self, AppContainer, Install};
use crate::source::dump::DbSource;

/// What `backup` learnt before and while writing the set, for its manifest.
pub struct Facts<'a> {
    pub started: chrono::DateTime<chrono::Utc>,
    pub db: Option<&'a DbSource>,
    pub app: Option<&'a AppContainer>,
    pub data_dir: Option<&'a std::path::Path>,
    pub big_data: String,
    /// SeaTable's buckets copied into the set.
    pub mirrored: Vec<String>,
}

/// The manifest of the set `id`, holding `set`.
pub fn manifest(scope: &Scope, id: &SetId, facts: Facts<'_>, set: Contents) -> Manifest {
    let (install, config, db) = (&scope.install, &scope.config, facts.db);
    let mut info = seatable_info(install, config, db, facts.app, facts.data_dir.is_some(), facts.big_data);
    for s in info.storage.iter_mut() {
        if s.bucket.as_ref().is_some_and(|b| facts.mirrored.contains(b)) {
            s.in_backup = true;
        }
    }
    Manifest {
        schema: catalog::SCHEMA_VERSION,
        tool: env!("CARGO_PKG_NAME").into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        host: config.host.clone(),
        class: id.class,
        stamp: id.stamp.clone(),
        started_at: facts.started,
        finished_at: crate::clock::now(),
        layout: install.layout.as_str().into(),
        source: SourceInfo {
            data_dir: facts.data_dir.map(|d| d.display().to_string()),
            database_server: db.map(|d| d.describe().replace('`', "")),
            database_server_version: db.map(|d| d.server_version.clone()),
            dump_binary: db.map(|d| d.dump_binary.clone()),
        },
        objects: set.objects,
        skipped: set.skipped,
        warnings: set.warnings,
        seatable: Some(info),
        requires: vec![],
    }
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
