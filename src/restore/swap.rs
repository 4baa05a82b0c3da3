//! The restore's third phase, SWAP: all or nothing.
//!
//! It starts only when every database and the data directory are staged, verified and on disk.
//! Each step is written into a journal BEFORE it is taken; a failure at any step (or a signal
//! between steps) undoes every step of the journal in reverse order, so the live databases and
//! directory are as they were. The steps:
//!
//! 1. the `old` databases (and live databases that do not exist yet) are created;
//! 2. the live databases' views, triggers, routines and events are dropped (they are kept in
//!    the journal as the statements that recreate them);
//! 3. ONE `RENAME TABLE` moves the live tables of every database into its `old` database and
//!    the staged tables into the live database (atomic in MariaDB and MySQL);
//! 4. the staged views, triggers, routines and events are created in the live databases;
//! 5. the directory: the live one is renamed aside and the staged one renamed into its place,
//!    then the entries a backup never holds (`logs`, ...) move from the previous directory into
//!    the restored one; a directory that is a mount point has its entries swapped one by one.
//!
//! Only then is the swap committed: the previous tables are dropped with the `old` databases,
//! the previous directory is kept under a dated name (or removed with `--replace`). If an undo
//! step fails itself, the error says what state each database and directory is in and how to
//! finish by hand.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::load::{create_objects, drop_objects, ident, SchemaObject, Schemas};
use super::plan::{DataTarget, DirMode, IN_PLACE_PREFIX};
use super::stage::StagedDb;
use crate::error::{source, Class, Failure};
use crate::failpoint;
use crate::source::dump::DbSource;

/// Seconds a swap statement waits for a lock (SeaTable still running holds them).
const LOCK_WAIT: u64 = 30;

/// One step taken, as the journal records it.
#[derive(Debug)]
enum Step {
    /// Databases that did not exist (the `old` ones, new live ones): dropped if still empty.
    CreatedDatabases(Vec<String>),
    /// Live objects dropped (their definitions, to recreate them).
    DroppedObjects {
        db: String,
        objects: Vec<SchemaObject>,
    },
    /// The one `RENAME TABLE`: per database, live, old and staging names and the tables moved.
    RenamedTables(Vec<TableMove>),
    CreatedObjects {
        db: String,
        objects: Vec<SchemaObject>,
    },
    Renamed {
        from: PathBuf,
        to: PathBuf,
    },
    MadeDir(PathBuf),
    RootMeta {
        dir: PathBuf,
        before: std::fs::Metadata,
    },
}

#[derive(Debug, Clone)]
struct TableMove {
    live: String,
    old: String,
    staging: String,
    outgoing: Vec<String>,
    incoming: Vec<String>,
}

impl TableMove {
    fn forward(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .outgoing
            .iter()
            .map(|t| format!("{}.{} TO {}.{}", ident(&self.live), ident(t), ident(&self.old), ident(t)))
            .collect();
        v.extend(
            self.incoming
                .iter()
                .map(|t| format!("{}.{} TO {}.{}", ident(&self.staging), ident(t), ident(&self.live), ident(t))),
        );
        v
    }
    fn backward(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .incoming
            .iter()
            .map(|t| format!("{}.{} TO {}.{}", ident(&self.live), ident(t), ident(&self.staging), ident(t)))
            .collect();
        v.extend(
            self.outgoing
                .iter()
                .map(|t| format!("{}.{} TO {}.{}", ident(&self.old), ident(t), ident(&self.live), ident(t))),
        );
        v
    }
}

/// What the swap did, for the summary.
#[derive(Debug, Default)]
pub struct Swapped {
    pub lines: Vec<String>,
}

/// The journal of the steps taken.
struct Journal<'a> {
    db: Option<&'a DbSource>,
    steps: Vec<Step>,
}

/// Swaps the staged databases and directory in, all or nothing, and commits.
pub async fn swap(
    db: Option<&DbSource>,
    dbs: &[StagedDb],
    dir: Option<&DataTarget>,
    replace: bool,
    cancel: &CancellationToken,
) -> anyhow::Result<Swapped> {
    let mut journal = Journal { db, steps: Vec::new() };
    let (known, live_objects) = match db {
        Some(src) if !dbs.is_empty() => preflight(src, dbs).await?,
        _ => Default::default(),
    };
    let result = take_steps(&mut journal, dbs, &known, &live_objects, dir, cancel).await;
    match result {
        Ok(()) => Ok(commit(db, dbs, dir, replace, &journal.steps).await),
        Err(e) => {
            let cause = if cancel.is_cancelled() {
                Failure::new(Class::Interrupted, "restore interrupted by a signal during the swap").into()
            } else {
                e
            };
            Err(undo(journal, cause).await)
        }
    }
}

/// Checks, before any step, that every staging database is there with the tables it was
/// loaded with, and reads the live databases' views, triggers, routines and events.
async fn preflight(src: &DbSource, dbs: &[StagedDb]) -> anyhow::Result<(Schemas, Vec<Vec<SchemaObject>>)> {
    let names: Vec<&str> =
        dbs.iter().flat_map(|d| [d.names.live.as_str(), d.names.staging.as_str(), d.names.old.as_str()]).collect();
    let known = src.schemas(&names).await?;
    let mut objects = Vec::new();
    for d in dbs {
        if !known.exists(&d.names.staging) {
            return Err(source(format!(
                "the staging database `{}` is gone at the swap (dropped by someone else?); nothing was changed",
                d.names.staging
            )));
        }
        if known.tables(&d.names.staging) != d.tables.as_slice() {
            return Err(source(format!(
                "the staging database `{}` changed after it was loaded ({} tables, loaded {}); nothing was changed",
                d.names.staging,
                known.tables(&d.names.staging).len(),
                d.tables.len()
            )));
        }
        if known.exists(&d.names.old) {
            return Err(source(format!("database `{}` exists at the swap; nothing was changed", d.names.old)));
        }
        objects.push(if known.has_objects(&d.names.live) {
            src.schema_objects(&d.names.live).await?
        } else {
            Vec::new()
        });
    }
    Ok((known, objects))
}

/// Database steps are journaled BEFORE they are taken: a statement can fail after it took
/// effect (a lost connection), so each of their undos checks what is really there.
fn check_cancel(cancel: &CancellationToken) -> anyhow::Result<()> {
    if cancel.is_cancelled() {
        return Err(Failure::new(Class::Interrupted, "restore interrupted by a signal").into());
    }
    Ok(())
}

async fn take_steps(
    j: &mut Journal<'_>,
    dbs: &[StagedDb],
    known: &Schemas,
    live_objects: &[Vec<SchemaObject>],
    dir: Option<&DataTarget>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    check_cancel(cancel)?;
    failpoint::hit("swap.start")?;
    if let (Some(src), false) = (j.db, dbs.is_empty()) {
        // 1. Databases.
        let mut created = Vec::new();
        let mut script = Vec::new();
        for d in dbs {
            let spec = known.spec(if known.exists(&d.names.live) { &d.names.live } else { &d.names.staging });
            if !known.exists(&d.names.live) {
                script.push(format!("CREATE DATABASE {} {spec}", ident(&d.names.live)));
                created.push(d.names.live.clone());
            }
            script.push(format!("CREATE DATABASE {} {spec}", ident(&d.names.old)));
            created.push(d.names.old.clone());
        }
        j.steps.push(Step::CreatedDatabases(created));
        src.sql_bounded(&script.join(";\n"), LOCK_WAIT)
            .await
            .map_err(|e| e.context("creating the databases of the swap"))?;
        failpoint::hit("swap.db.created")?;
        check_cancel(cancel)?;
        // 2. The live databases' objects that cannot move.
        for (d, objects) in dbs.iter().zip(live_objects).filter(|(_, o)| !o.is_empty()) {
            j.steps.push(Step::DroppedObjects { db: d.names.live.clone(), objects: objects.clone() });
            src.sql_bounded(&drop_objects(&d.names.live, objects).join(";\n"), LOCK_WAIT).await.map_err(|e| {
                e.context(format!("dropping the views, triggers, routines and events of `{}`", d.names.live))
            })?;
        }
        failpoint::hit("swap.db.objects_dropped")?;
        check_cancel(cancel)?;
        // 3. Every table of every database in one atomic statement.
        let moves: Vec<TableMove> = dbs
            .iter()
            .map(|d| TableMove {
                live: d.names.live.clone(),
                old: d.names.old.clone(),
                staging: d.names.staging.clone(),
                outgoing: known.tables(&d.names.live).to_vec(),
                incoming: d.tables.clone(),
            })
            .collect();
        let renames: Vec<String> = moves.iter().flat_map(TableMove::forward).collect();
        j.steps.push(Step::RenamedTables(moves));
        if !renames.is_empty() {
            src.sql_bounded(&format!("RENAME TABLE {}", renames.join(", ")), LOCK_WAIT)
                .await
                .map_err(|e| e.context("swapping the restored tables in"))?;
        }
        failpoint::hit("swap.db.renamed")?;
        check_cancel(cancel)?;
        // 4. The staged objects, in the live databases.
        for d in dbs.iter().filter(|d| !d.objects.is_empty()) {
            j.steps.push(Step::CreatedObjects { db: d.names.live.clone(), objects: d.objects.clone() });
            src.script_bounded(&create_objects(&d.names.live, &d.objects), LOCK_WAIT).await.map_err(|e| {
                e.context(format!("creating the views, triggers, routines and events of `{}`", d.names.live))
            })?;
        }
        failpoint::hit("swap.db.objects_created")?;
        check_cancel(cancel)?;
    }
    if let Some(t) = dir {
        match t.mode {
            DirMode::Rename => swap_renamed(j, t)?,
            DirMode::InPlace => swap_in_place(j, t)?,
        }
    }
    failpoint::hit("swap.end")?;
    check_cancel(cancel)
}

/// A rename is atomic: it is journaled once it happened (undoing one that did not happen could
/// move an older tree over the live one).
fn rename_step(j: &mut Journal<'_>, from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to)
        .map_err(|e| source(format!("cannot rename `{}` to `{}`: {e}", from.display(), to.display())))?;
    j.steps.push(Step::Renamed { from: from.to_path_buf(), to: to.to_path_buf() });
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| source(format!("flushing directory `{}`: {e}", dir.display())))
}

/// The staged tree replaces the target by two renames; the entries a backup never holds move
/// over afterwards, from the previous tree (they stay in the live tree until it is aside).
fn swap_renamed(j: &mut Journal<'_>, t: &DataTarget) -> anyhow::Result<()> {
    let parent = t.target.parent().map(Path::to_path_buf).unwrap_or_default();
    // Moving entries in changes the restored root's mtime: the archive's is put back.
    let mtime = std::fs::metadata(&t.staging).and_then(|m| m.modified()).ok();
    if let Some(prev) = &t.previous {
        remember_root(j, &t.target)?;
        rename_step(j, &t.target, prev)?;
        failpoint::hit("swap.data.moved_aside")?;
    }
    rename_step(j, &t.staging, &t.target)?;
    failpoint::hit("swap.data.renamed_in")?;
    if let Some(prev) = &t.previous {
        let mut carried = false;
        for n in &t.kept {
            let (from, to) = (prev.join(n), t.target.join(n));
            if std::fs::symlink_metadata(&from).is_ok() && std::fs::symlink_metadata(&to).is_err() {
                rename_step(j, &from, &to)?;
                carried = true;
            }
        }
        if let (Some(mtime), true) = (mtime, carried) {
            if let Ok(f) = std::fs::File::open(&t.target) {
                let _ = f.set_modified(mtime);
            }
        }
        failpoint::hit("swap.data.carried")?;
    }
    sync_dir(&parent)
}

/// A target that is a mount point keeps its root: its entries move into the previous directory
/// (inside it), then the staged entries move in. Entries a backup never holds stay where they
/// are, unless the archive has an entry of that name.
fn swap_in_place(j: &mut Journal<'_>, t: &DataTarget) -> anyhow::Result<()> {
    let prev = t.previous.clone().unwrap_or_else(|| t.target.join(format!("{IN_PLACE_PREFIX}before-restore")));
    remember_root(j, &t.target)?;
    // The archive's root (mode, owner, mtime), read before entries move out of it.
    let staged_root = std::fs::metadata(&t.staging).map_err(|e| source(format!("`{}`: {e}", t.staging.display())))?;
    std::fs::create_dir(&prev).map_err(|e| source(format!("cannot create `{}`: {e}", prev.display())))?;
    j.steps.push(Step::MadeDir(prev.clone()));
    let names = |dir: &Path| -> anyhow::Result<Vec<std::ffi::OsString>> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| source(format!("cannot read `{}`: {e}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with(IN_PLACE_PREFIX))
            .collect();
        v.sort();
        Ok(v)
    };
    let staged = names(&t.staging)?;
    for n in names(&t.target)? {
        let keep = t.kept.iter().any(|k| std::ffi::OsStr::new(k) == n) && !staged.contains(&n);
        if !keep {
            rename_step(j, &t.target.join(&n), &prev.join(&n))?;
        }
    }
    failpoint::hit("swap.data.moved_aside")?;
    for n in &staged {
        rename_step(j, &t.staging.join(n), &t.target.join(n))?;
    }
    failpoint::hit("swap.data.renamed_in")?;
    // The root takes the archive's mode, owner and mtime, as a renamed tree would.
    set_root_meta(&t.target, &staged_root)?;
    failpoint::hit("swap.data.carried")?;
    sync_dir(&t.target)
}

/// Renames in and out of the live directory change its mtime (and the in-place swap its mode
/// and owner): the first step of a directory swap records them, so that an undo puts them back.
fn remember_root(j: &mut Journal<'_>, dir: &Path) -> anyhow::Result<()> {
    let before = std::fs::metadata(dir).map_err(|e| source(format!("`{}`: {e}", dir.display())))?;
    j.steps.push(Step::RootMeta { dir: dir.to_path_buf(), before });
    Ok(())
}

fn set_root_meta(dir: &Path, m: &std::fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fail = |e: std::io::Error| source(format!("setting the mode, owner and time of `{}`: {e}", dir.display()));
    if nix_is_root() {
        std::os::unix::fs::chown(dir, Some(m.uid()), Some(m.gid())).map_err(fail)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m.mode() & 0o7777)).map_err(fail)?;
    if let Ok(t) = m.modified() {
        std::fs::File::open(dir).and_then(|f| f.set_modified(t)).map_err(fail)?;
    }
    Ok(())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Every step is done: the previous tables go with the `old` databases, the emptied staging
/// databases are dropped, the previous directory is kept (or removed with `--replace`).
/// Failures here are warnings: the restore itself is complete.
async fn commit(
    db: Option<&DbSource>,
    dbs: &[StagedDb],
    dir: Option<&DataTarget>,
    replace: bool,
    steps: &[Step],
) -> Swapped {
    let mut out = Swapped::default();
    if let Some(src) = db {
        let drops: Vec<String> = dbs
            .iter()
            .flat_map(|d| [d.names.old.clone(), d.names.staging.clone()])
            .map(|n| format!("DROP DATABASE IF EXISTS {}", ident(&n)))
            .collect();
        if !drops.is_empty() {
            if let Err(e) = src.sql_bounded(&drops.join(";\n"), LOCK_WAIT).await {
                tracing::warn!(error = %format!("{e:#}"), "could not drop the databases the restore used (`..__sb_old`, `..__sb_staging`): drop them by hand");
            }
        }
        let outgoing = |live: &str| {
            steps.iter().find_map(|s| match s {
                Step::RenamedTables(m) => m.iter().find(|m| m.live == live).map(|m| m.outgoing.len()),
                _ => None,
            })
        };
        for d in dbs {
            let mut line = format!(
                "database `{}`: {} tables swapped in from {} of SQL (the {} previous tables were dropped)",
                d.item.database,
                d.tables.len(),
                crate::output::human_bytes(d.bytes),
                outgoing(&d.names.live).unwrap_or(0)
            );
            if !d.objects.is_empty() {
                line.push_str(&format!("; {} views, triggers, routines and events recreated", d.objects.len()));
            }
            out.lines.push(line);
        }
    }
    if let Some(t) = dir {
        if t.mode == DirMode::InPlace {
            // Removing it changes the root's mtime, which is the archive's by now.
            let mtime = std::fs::metadata(&t.target).and_then(|m| m.modified());
            if let Err(e) = std::fs::remove_dir(&t.staging) {
                tracing::warn!(dir = %t.staging.display(), error = %e, "could not remove the emptied staging directory");
            }
            if let Ok(mtime) = mtime {
                let _ = std::fs::File::open(&t.target).and_then(|f| f.set_modified(mtime));
            }
        }
        let carried: Vec<String> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Renamed { from, .. } if t.mode == DirMode::Rename && from.parent() == t.previous.as_deref() => {
                    from.file_name().map(|n| n.to_string_lossy().into_owned())
                }
                _ => None,
            })
            .collect();
        let mut line = format!("{} `{}`", t.what, t.target.display());
        if !carried.is_empty() {
            line.push_str(&format!("; kept from the previous directory: {}", carried.join(", ")));
        }
        if let Some(prev) = &t.previous {
            // Entries a backup never holds that the archive had too are in the previous tree:
            // it is kept then, even with --replace, so that nothing of them is lost.
            let holds_kept = t.kept.iter().any(|k| prev.join(k).symlink_metadata().is_ok());
            if replace && !holds_kept {
                super::stage::remove_dir_logged(prev, "previous directory").await;
                line.push_str("; the previous directory was removed");
            } else {
                line.push_str(&format!("; the previous directory is kept as `{}`", prev.display()));
                if replace {
                    line.push_str(" (it holds entries a backup never takes, which the archive had too)");
                }
            }
        }
        out.lines.push(line);
    }
    out
}

/// Undoes every step of the journal, newest first. Returns the error to report: `cause`, with
/// either "undone" or the state left and what to do by hand.
async fn undo(j: Journal<'_>, cause: anyhow::Error) -> anyhow::Error {
    let mut failed: Vec<String> = Vec::new();
    let taken = j.steps.len();
    for step in j.steps.into_iter().rev() {
        if let Err(e) = undo_step(j.db, &step).await {
            tracing::error!(error = %format!("{e:#}"), "an undo step failed");
            failed.push(format!("{e:#}"));
        }
    }
    if failed.is_empty() {
        tracing::warn!(steps = taken, "the swap was undone: the live databases and directories are as they were");
        cause.context("the restore failed during the swap; every step was undone and the live databases and directories are as they were")
    } else {
        Failure::new(
            Class::Source,
            format!(
                "the restore failed during the swap ({}) and could NOT undo everything; finish by hand: {}",
                crate::error::one_line(&cause),
                failed.join("; ")
            ),
        )
        .into()
    }
}

async fn undo_step(db: Option<&DbSource>, step: &Step) -> anyhow::Result<()> {
    let src = || db.ok_or_else(|| anyhow::anyhow!("no database connection to undo a database step"));
    match step {
        Step::Renamed { from, to } => std::fs::rename(to, from).map_err(|e| {
            source(format!(
                "`{}` is still at `{}` ({e}): move it back with `mv {} {}`",
                from.display(),
                to.display(),
                to.display(),
                from.display()
            ))
        }),
        Step::MadeDir(dir) => match std::fs::remove_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(source(format!("could not remove `{}` ({e}): check it and remove it by hand", dir.display())))
            }
            _ => Ok(()),
        },
        Step::RootMeta { dir, before } => set_root_meta(dir, before),
        Step::CreatedObjects { db: live, objects } => {
            src()?.sql_bounded(&drop_objects(live, objects).join(";\n"), LOCK_WAIT).await.map(|_| ()).map_err(|e| {
                e.context(format!(
                    "the restored views, triggers, routines and events are still in `{live}`: drop them by hand"
                ))
            })
        }
        Step::DroppedObjects { db: live, objects } => {
            let src = src()?;
            // Whatever of them is still there goes first, so that every one is recreated.
            src.sql_bounded(&drop_objects(live, objects).join(";\n"), LOCK_WAIT).await?;
            src.script_bounded(&create_objects(live, objects), LOCK_WAIT).await.map_err(|e| {
                e.context(format!(
                    "the views, triggers, routines and events of `{live}` ({}) could not be recreated",
                    objects.iter().map(|o| o.to_string()).collect::<Vec<_>>().join(", ")
                ))
            })
        }
        Step::RenamedTables(moves) => {
            let src = src()?;
            let names: Vec<&str> = moves.iter().flat_map(|m| [m.old.as_str(), m.staging.as_str()]).collect();
            let known = src.schemas(&names).await?;
            // The rename is atomic: it happened if a moved table is where it went.
            let happened = moves.iter().any(|m| {
                m.outgoing.first().is_some_and(|t| known.tables(&m.old).contains(t))
                    || m.incoming.first().is_some_and(|t| !known.tables(&m.staging).contains(t))
            });
            if !happened {
                return Ok(());
            }
            let back: Vec<String> = moves.iter().flat_map(TableMove::backward).collect();
            if back.is_empty() {
                return Ok(());
            }
            src.sql_bounded(&format!("RENAME TABLE {}", back.join(", ")), LOCK_WAIT).await.map(|_| ()).map_err(|e| {
                e.context(format!(
                    "the restored tables are live and the previous ones are in {}: move them back with RENAME TABLE",
                    moves.iter().map(|m| format!("`{}`", m.old)).collect::<Vec<_>>().join(", ")
                ))
            })
        }
        Step::CreatedDatabases(names) => {
            let src = src()?;
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let known = src.schemas(&refs).await?;
            let empty: Vec<String> = names
                .iter()
                .filter(|n| known.exists(n) && known.tables(n).is_empty())
                .map(|n| format!("DROP DATABASE {}", ident(n)))
                .collect();
            if let Some(n) = names.iter().find(|n| !known.tables(n).is_empty()) {
                return Err(source(format!("database `{n}` is not empty after the undo: check it by hand")));
            }
            if empty.is_empty() {
                return Ok(());
            }
            src.sql_bounded(&empty.join(";\n"), LOCK_WAIT).await.map(|_| ())
        }
    }
}
