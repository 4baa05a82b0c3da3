//! `restore`: brings a backup set back, onto this host or another one.
//!
//! Three phases, each in a file of its own:
//! - [`plan`]: what goes where, and every check that needs no download (the set's manifest,
//!   names, targets, the directory, leftovers of a killed restore). Writes nothing.
//! - [`stage`]: every dump verified and loaded into a staging database, the data archive
//!   unpacked into a staging directory and flushed to disk. The live state is not touched.
//! - [`swap`]: all or nothing, with an undo journal: any failure, or a signal, undoes every
//!   step taken, so the live databases and directory are as they were.
//!
//! [`load`] holds the SQL side (the client fed through the DB container's exec, the schema
//! objects that cannot move with their tables), [`guard`] the refusal of client commands for
//! clients without `--sandbox`, [`untar`] the hostile-input-safe unpacking (and the same rules
//! without writing, for `verify`), [`targuard`] the bound on tar metadata records.

pub mod guard;
pub mod load;
pub mod plan;
pub mod stage;
pub mod swap;
pub mod targuard;
pub mod untar;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::run::RunContext;
use crate::store::upload::OpenUploads;

use crate::catalog::{self, ChosenSet, Selection};
use crate::config::Config;
use crate::error::{source, usage, Class, Failure};
use crate::output::human_bytes;
use crate::seatable::{compare_versions, Install};
use crate::source::docker::Docker;
use crate::source::dump::DbSource;
use crate::store::download::DownloadPolicy;
use crate::store::Store;
use load::{DbNames, FeedOptions};
use plan::{DataTarget, DbItem, DirMode, Item, Items};
pub use stage::Cleanup;
use stage::StagedDb;
use untar::UntarOptions;

/// Which part of a set to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Db,
    Data,
    Config,
    /// SeaTable's S3 buckets mirrored into the set.
    Objects,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub selection: Selection,
    pub only: Option<Part>,
    /// Restore only these databases of the set (also ones that are not SeaTable's).
    pub databases: Vec<String>,
    /// Remove the previous data directory instead of keeping it under a dated name.
    pub replace: bool,
    /// Restore into a non-empty directory that does not look like a SeaTable data directory.
    pub force: bool,
    pub untar: UntarOptions,
    /// Run `seatable.sh restore-all` in the app container afterwards.
    pub seatable_restore_all: bool,
    pub dry_run: bool,
}

/// What the plan decided: the work of the stage and swap phases.
struct Planned {
    set: ChosenSet,
    dbs: Vec<DbItem>,
    /// The archive to unpack and where it goes.
    dir: Option<(Item, DataTarget)>,
    mirrors: Vec<(catalog::ObjectEntry, crate::mirror::Bucket)>,
    db_src: Option<Arc<DbSource>>,
    /// What the server held of the live, staging and old databases when planned.
    schemas: load::Schemas,
    app: Option<(Docker, String, bool)>,
    migrating: bool,
}

/// Restores the set `opts` selects. A failure, or the run's cancellation (SIGINT, SIGTERM), in
/// any phase leaves the live databases and directories as they were: what was staged is
/// removed, a swap under way is undone.
pub async fn run(
    config: &Config,
    store: Arc<dyn Store>,
    opts: &RestoreOptions,
    ctx: &RunContext,
) -> anyhow::Result<()> {
    let cleanup = Cleanup::default();
    let result = run_phases(config, store, opts, &ctx.cancel, &cleanup).await;
    if result.is_err() {
        cleanup.remove_all().await;
    }
    result
}

async fn run_phases(
    config: &Config,
    store: Arc<dyn Store>,
    opts: &RestoreOptions,
    cancel: &CancellationToken,
    cleanup: &Cleanup,
) -> anyhow::Result<()> {
    // Where things go on THIS host: its install's files, laid under what is configured. What
    // cannot be read of a broken live install is a warning: the restore may be what fixes it.
    let install = detect_install(config);
    let config = &install.apply(config);
    let p = plan_restore(config, &install, &store, opts).await?;
    if opts.dry_run {
        print!("{}", render_dry_run(&p, opts, &store));
        return Ok(());
    }
    if let Some((_, t)) = &p.dir {
        for leftover in plan::leftover_dirs(t) {
            tracing::warn!(dir = %leftover.display(), "removing a staging directory left by an interrupted restore");
            stage::remove_dir_logged(&leftover, "leftover staging directory").await;
        }
    }
    let uploads = OpenUploads::default();
    let object_lines = tokio::select! {
        r = restore_mirrors(config, &store, &p.mirrors, &uploads) => r?,
        _ = cancel.cancelled() => {
            uploads.abort_all().await;
            return Err(Failure::new(Class::Interrupted, "restore interrupted by a signal while putting mirrored objects back; the databases and the data directory were not changed").into());
        }
    };
    if let Some((_, name, true)) = &p.app {
        tracing::warn!(container = %name, "SeaTable's app container is running: it may write while the restore runs; stopping it first is safer");
    }

    let started = std::time::Instant::now();
    let policy = DownloadPolicy::from_upload(&config.storage.upload);
    let staged = tokio::select! {
        r = stage_all(&p, &store, opts, policy, cleanup) => r?,
        _ = cancel.cancelled() => {
            return Err(Failure::new(Class::Interrupted, "restore interrupted by a signal while staging; what was staged is removed, nothing was changed").into());
        }
    };
    let (dbs, unpacked) = staged;
    let dir = p.dir.as_ref().map(|(_, t)| t);
    let swapped = swap::swap(p.db_src.as_deref(), &dbs, dir, opts.replace, cancel).await?;
    cleanup.forget_dbs();
    if let Some(t) = dir {
        cleanup.forget_dir(&t.staging);
    }

    let id = p.set.id();
    println!("restored set {id} from {} in {:.1} s", store.describe(), started.elapsed().as_secs_f64());
    for l in &object_lines {
        println!("  {l}");
    }
    for (i, l) in swapped.lines.iter().enumerate() {
        match (&unpacked, l.starts_with("database ")) {
            (Some(r), false) if i + 1 == swapped.lines.len() => println!(
                "  {l}: {} files, {} directories, {} symlinks, {} hard links ({})",
                r.files,
                r.dirs,
                r.symlinks,
                r.hardlinks,
                human_bytes(r.file_bytes)
            ),
            _ => println!("  {l}"),
        }
    }
    post_restore(config, opts, &id, p.migrating, p.app).await
}

/// This host's install as far as it can be read; what cannot be read is a warning.
fn detect_install(config: &Config) -> Install {
    let (install, warnings) = Install::detect_for_restore(config);
    for w in warnings {
        tracing::warn!("{w}; the restore goes on with what the set and the configuration say");
    }
    install
}

/// PLAN: the set, what of it goes where, every check that writes nothing.
async fn plan_restore(
    config: &Config,
    install: &Install,
    store: &Arc<dyn Store>,
    opts: &RestoreOptions,
) -> anyhow::Result<Planned> {
    let prefix = &config.storage.prefix;
    let set = catalog::choose_set(store.as_ref(), prefix, &opts.selection).await?;
    let id = set.id();
    let Items { dbs, data, config: config_item, mirrors } = plan::items_of(&set, prefix)?;
    let want_db = matches!(opts.only, None | Some(Part::Db));
    let want_data = matches!(opts.only, None | Some(Part::Data)) && opts.databases.is_empty();
    let want_objects = matches!(opts.only, None | Some(Part::Objects)) && opts.databases.is_empty();
    if opts.only == Some(Part::Objects) && mirrors.is_empty() {
        return Err(Failure::new(Class::Usage, format!("set {id} holds no mirrored buckets"))
            .with_hint("it was written without `seatable.mirror_object_storage`")
            .into());
    }
    let dbs = if want_db { plan::db_targets(dbs, &set, config, &opts.databases)? } else { Vec::new() };
    // Each mirrored bucket goes into the bucket this host's SeaTable uses for the same.
    let mirrors =
        if want_objects { mirror_targets(install, &mirrors, opts.only == Some(Part::Objects))? } else { Vec::new() };
    // The compose directory holds this host's secrets and settings (its domain, its DB
    // password): it is put back only when asked for.
    let stamp = id.stamp.clone();
    let dir = match opts.only {
        Some(Part::Config) => match config_item {
            Some(item) => Some((item, plan::config_target(install, config, opts.force, &stamp)?)),
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
            match data {
                Some(item) if want_data => {
                    let excluded: Vec<String> = item
                        .entry
                        .as_ref()
                        .and_then(|e| e.tar.as_ref())
                        .map(|t| t.excluded.clone())
                        .unwrap_or_default();
                    let target = plan::data_target(config, opts.force, &excluded, &stamp)?;
                    Some((item, target))
                }
                _ => None,
            }
        }
    };
    if dbs.is_empty() && dir.is_none() && mirrors.is_empty() {
        return Err(usage(format!("nothing to restore: set {id} holds no such component")));
    }
    let db_src = if dbs.is_empty() { None } else { Some(Arc::new(DbSource::connect(&config.database).await?)) };
    let schemas = match &db_src {
        Some(src) => stage::check_db_leftovers(src, &dbs).await?,
        None => Default::default(),
    };
    if let Some((_, t)) = &dir {
        if t.mode == DirMode::InPlace {
            tracing::info!(dir = %t.target.display(), "the {} is a mount point: its entries are swapped inside it", t.what);
        }
    }
    let app = app_container(config, install).await;
    if let Some(m) = &set.manifest {
        warn_if_older(m, db_src.as_deref(), app.as_ref().and_then(|a| a.3.as_deref()));
    }
    let migrating = id.host != config.host;
    let app = app.map(|(d, n, r, _)| (d, n, r));
    Ok(Planned { set, dbs, dir, mirrors, db_src, schemas, app, migrating })
}

/// Objects first: putting them back only adds to SeaTable's buckets, so a failure here leaves
/// the databases and the data directory untouched.
async fn restore_mirrors(
    config: &Config,
    store: &Arc<dyn Store>,
    mirrors: &[(catalog::ObjectEntry, crate::mirror::Bucket)],
    uploads: &OpenUploads,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for (o, b) in mirrors {
        let from = o.mirror.as_ref().map(|m| m.bucket.clone()).unwrap_or_default();
        let index = crate::mirror::read_index(store, o, config).await?;
        let target: Arc<dyn Store> =
            Arc::new(crate::mirror::open_bucket(b, config.storage.s3.request_checksums).await?);
        let r = crate::mirror::restore_bucket(store, index, &target, config, uploads)
            .await
            .with_context(|| format!("restoring mirrored bucket `{from}` into `{}`", b.location.bucket))?;
        lines.push(format!(
            "bucket `{}` (from `{from}`): {} objects put back ({}, {} server-side), {} already there",
            b.location.bucket,
            r.objects,
            human_bytes(r.bytes),
            r.server_side,
            r.unchanged
        ));
    }
    Ok(lines)
}

/// STAGE: every database loaded into its staging database, the archive unpacked and flushed.
async fn stage_all(
    p: &Planned,
    store: &Arc<dyn Store>,
    opts: &RestoreOptions,
    policy: DownloadPolicy,
    cleanup: &Cleanup,
) -> anyhow::Result<(Vec<StagedDb>, Option<untar::UntarReport>)> {
    let mut dbs = Vec::new();
    if let Some(src) = &p.db_src {
        let features = src.client_features().await?;
        if !features.sandbox_line {
            tracing::info!("the database client predates the sandbox-mode line: it is removed from the dumps");
        }
        if !features.sandbox_option {
            tracing::info!(
                "the database client has no --sandbox: client commands in the dumps are refused before they reach it"
            );
        }
        let feed = FeedOptions {
            strip_sandbox_line: !features.sandbox_line,
            sandbox_option: features.sandbox_option,
            sessions: cleanup.sessions.clone(),
        };
        for it in &p.dbs {
            dbs.push(stage::stage_database(src, store, it, &feed, policy, &p.schemas, cleanup).await?);
        }
    }
    let mut unpacked = None;
    if let Some((item, t)) = &p.dir {
        unpacked = Some(stage::stage_data(store, item, t, opts.untar.clone(), policy, cleanup).await?);
    }
    crate::failpoint::hit("stage.done")?;
    Ok((dbs, unpacked))
}

/// The app container, if one of SeaTable's names exists: the API, its name, whether it runs,
/// its SeaTable version.
async fn app_container(config: &Config, install: &Install) -> Option<(Docker, String, bool, Option<String>)> {
    let docker = Docker::connect(config.database.docker_host.as_deref()).ok()?;
    let app = crate::seatable::app_container(&docker, &install.app_containers(config)).await.ok().flatten()?;
    Some((docker, app.name, app.running, app.version))
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

fn render_dry_run(p: &Planned, opts: &RestoreOptions, store: &Arc<dyn Store>) -> String {
    let mut s = String::new();
    let id = p.set.id();
    s.push_str(&format!(
        "dry run: restore of set {id} from {}{}\n",
        store.describe(),
        if p.set.manifest.is_none() { " (NO MANIFEST: nothing can be checked)" } else { "" }
    ));
    for d in &p.dbs {
        let names = DbNames::for_db(&d.target).ok();
        s.push_str(&format!(
            "  download {} ({})\n    -> database `{}` in {}: loaded into `{}`, then its tables REPLACE all tables of \
             `{}` in one atomic swap (its views, triggers, routines and events are recreated with them)\n",
            d.item.key,
            human_bytes(d.item.size),
            d.database,
            p.db_src.as_ref().map(|x| x.describe()).unwrap_or_default(),
            names.as_ref().map(|n| n.staging.as_str()).unwrap_or("?"),
            d.target
        ));
        for x in &d.extras {
            s.push_str(&format!(
                "  download {} ({})\n    -> loaded into the same staging database (tables kept apart)\n",
                x.key,
                human_bytes(x.size)
            ));
        }
    }
    if let Some((item, t)) = &p.dir {
        let how = match t.mode {
            DirMode::Rename => format!("then renamed to `{}`", t.target.display()),
            DirMode::InPlace => format!("then its entries replace those of `{}` (a mount point)", t.target.display()),
        };
        s.push_str(&format!(
            "  download {} ({})\n    -> unpacked into `{}`, {how}\n",
            item.key,
            human_bytes(item.size),
            t.staging.display()
        ));
        match &t.previous {
            Some(_) if opts.replace => {
                s.push_str(&format!("    the current content of `{}` is REMOVED after the swap\n", t.target.display()))
            }
            Some(prev) => s.push_str(&format!(
                "    the current content of `{}` is kept in `{}` (its {} stay in the restored tree)\n",
                t.target.display(),
                prev.display(),
                t.kept.join(", ")
            )),
            None => s.push_str(&format!("    `{}` does not exist yet\n", t.target.display())),
        }
        for leftover in plan::leftover_dirs(t) {
            s.push_str(&format!("    `{}` (left by an interrupted restore) is removed\n", leftover.display()));
        }
    }
    for (o, b) in &p.mirrors {
        s.push_str(&format!(
            "  objects of mirrored bucket `{}` -> SeaTable's bucket `{}` on this host (added; objects already there with the same size are left alone; nothing is deleted)\n",
            o.mirror.as_ref().map(|m| m.bucket.as_str()).unwrap_or("?"),
            b.location.bucket
        ));
    }
    s.push_str("nothing was changed.\n");
    s
}
