//! The restore's first phase, PLAN: what of the set goes where, and every check that needs no
//! download. Nothing here writes anything.
//!
//! Everything read from the bucket is untrusted: the manifest was checked when the set was
//! chosen (`catalog::check_manifest`: keys inside the set, hashes well-formed, database names
//! plain identifiers); here each dump is given a target database, and only SeaTable's own
//! databases (the ccnet, seafile, dtable and scheduler roles, mapped onto this host's names) are
//! targets, others only when `--db` names them. Two dumps for one target are refused.

use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::catalog::{self, ChosenSet, Kind, ObjectEntry};
use crate::config::{Algorithm, Config};
use crate::error::{integrity, source, usage, Class, Failure};
use crate::seatable::defaults::{ALWAYS_EXCLUDED, DEFAULT_DATABASES};
use crate::seatable::{Install, Layout, SCHEDULER_DB};
use crate::store::download::Expected;

/// One object of the set to bring back.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub algorithm: Algorithm,
    pub size: u64,
    /// Its manifest entry; `None` for a set restored without manifest (`--allow-incomplete`),
    /// whose objects cannot be checked.
    pub entry: Option<ObjectEntry>,
}

impl Item {
    /// What the download must match: the manifest's chunk hashes (or, for an older set, its
    /// whole-object hash), or (a set restored without manifest, `--allow-incomplete`) only the
    /// size.
    pub fn expected(&self) -> anyhow::Result<Expected> {
        match &self.entry {
            Some(e) => e.expected().map(Expected::chunks_only),
            None => Ok(Expected::size_only(self.size)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbItem {
    /// The database as the set names it.
    pub database: String,
    /// The database it goes into (another name where the target's `.env` names it so).
    pub target: String,
    pub item: Item,
    /// Dumps of some of its tables kept apart (its log tables), loaded after the main dump.
    pub extras: Vec<Item>,
}

/// How an archived directory is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirMode {
    /// Unpacked beside the target; the target is renamed aside and the staged tree renamed in.
    Rename,
    /// The target is a mount point (a disk of its own), which cannot be renamed: unpacked into
    /// a directory inside it, and its entries are swapped one by one.
    InPlace,
}

/// Where an archived directory goes.
#[derive(Debug, Clone)]
pub struct DataTarget {
    /// `data directory` or `compose directory`, for messages.
    pub what: String,
    pub target: PathBuf,
    pub mode: DirMode,
    pub staging: PathBuf,
    /// Where the current content goes (kept, or removed after the swap with `--replace`);
    /// `None` when the target does not exist yet.
    pub previous: Option<PathBuf>,
    /// Top-level names a backup never holds (`logs`, `pids`, ...): the live ones stay.
    pub kept: Vec<String>,
}

/// Names of what this tool creates inside a data directory that is a mount point; a backup
/// leaves them out.
pub const IN_PLACE_PREFIX: &str = crate::seatable::defaults::TOOL_ENTRY_PREFIX;

pub fn algorithm_of(key: &str, named: Option<&str>) -> anyhow::Result<Algorithm> {
    if let Some(name) = named {
        return catalog::algorithm_named(name)
            .ok_or_else(|| integrity(format!("object `{key}` has unknown compression `{name}`")));
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
pub struct Items {
    pub dbs: Vec<DbItem>,
    pub data: Option<Item>,
    pub config: Option<Item>,
    /// Index objects of mirrored buckets.
    pub mirrors: Vec<ObjectEntry>,
}

fn checked_db_name(name: &str, key: &str) -> anyhow::Result<String> {
    if crate::config::valid_db_name(name) {
        Ok(name.to_string())
    } else {
        Err(integrity(format!(
            "object `{key}` names database `{}`, which is not a plain name (letters, digits, `_`)",
            name.chars().take(80).collect::<String>().escape_debug()
        )))
    }
}

/// The parts of a set (from its manifest, else its keys).
pub fn items_of(set: &ChosenSet, prefix: &str) -> anyhow::Result<Items> {
    let mut items = Items::default();
    let mut extras: Vec<(String, Item)> = Vec::new();
    match &set.manifest {
        Some(m) => {
            for o in &m.objects {
                let item = Item {
                    key: o.key.clone(),
                    algorithm: algorithm_of(&o.key, Some(&o.compression))?,
                    size: o.stored_size,
                    entry: Some(o.clone()),
                };
                match o.kind {
                    Kind::MysqlDump => {
                        let named = o.database.as_deref().ok_or_else(|| {
                            integrity(format!("manifest entry `{}` is a dump without a database name", o.key))
                        })?;
                        let database = checked_db_name(named, &o.key)?;
                        if !o.only_tables.is_empty() {
                            extras.push((database, item));
                            continue;
                        }
                        items.dbs.push(DbItem { target: database.clone(), database, item, extras: Vec::new() });
                    }
                    Kind::Tar if o.component == "config" => items.config = Some(item),
                    Kind::Tar => items.data = Some(item),
                    Kind::MirrorIndex => items.mirrors.push(o.clone()),
                }
            }
        }
        None => {
            let dir = set.id().dir(prefix);
            for o in &set.objects {
                let Some(rest) = o.key.strip_prefix(&dir) else { continue };
                let item = |o: &crate::store::ObjectInfo| -> anyhow::Result<Item> {
                    Ok(Item { key: o.key.clone(), algorithm: algorithm_of(&o.key, None)?, size: o.size, entry: None })
                };
                if let Some(name) = rest.strip_prefix("db/") {
                    match name.split_once(".log-tables.sql.") {
                        Some((db, _)) => extras.push((checked_db_name(db, &o.key)?, item(o)?)),
                        None => {
                            let database = checked_db_name(name.split(".sql.").next().unwrap_or(name), &o.key)?;
                            items.dbs.push(DbItem {
                                target: database.clone(),
                                database,
                                item: item(o)?,
                                extras: vec![],
                            })
                        }
                    }
                } else if rest.starts_with("data/seatable.tar.") {
                    items.data = Some(item(o)?);
                } else if rest.starts_with("config/seatable-compose.tar.") {
                    items.config = Some(item(o)?);
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for d in &items.dbs {
        if !seen.insert(d.database.clone()) {
            return Err(integrity(format!("set {} holds two dumps of database `{}`", set.id(), d.database)));
        }
    }
    for (db, item) in extras {
        match items.dbs.iter_mut().find(|d| d.database == db) {
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
    Ok(items)
}

/// Gives every dump its target database on this host, or leaves it out. SeaTable's databases
/// (by role: ccnet, seafile, dtable, as the set recorded them, and `scheduler`) go into this
/// host's database of the same role; any other database of the set only when `wanted` (`--db`)
/// names it. Two dumps for one target are refused. Writes nothing.
pub fn db_targets(
    dbs: Vec<DbItem>,
    set: &ChosenSet,
    config: &Config,
    wanted: &[String],
) -> anyhow::Result<Vec<DbItem>> {
    let id = set.id();
    for want in wanted {
        if !dbs.iter().any(|d| &d.database == want) {
            let have: Vec<&str> = dbs.iter().map(|d| d.database.as_str()).collect();
            return Err(Failure::new(Class::Usage, format!("set {id} holds no dump of database `{want}`"))
                .with_hint(format!("it holds: {}", if have.is_empty() { "none".into() } else { have.join(", ") }))
                .into());
        }
    }
    let recorded: Vec<String> = set
        .manifest
        .as_ref()
        .and_then(|m| m.seatable.as_ref())
        .map(|s| s.database_names.clone())
        .filter(|n| n.len() == 3)
        .unwrap_or_default();
    let here = &config.database.databases;
    let map_roles = !config.configured.databases && here.len() >= 3;
    let mut out: Vec<DbItem> = Vec::new();
    for mut d in dbs {
        let named = wanted.contains(&d.database);
        if !wanted.is_empty() && !named {
            continue;
        }
        // The role of the dump: where the set recorded its names, that record; else the names
        // SeaTable uses by default, and this host's own names.
        let role = if recorded.is_empty() {
            DEFAULT_DATABASES
                .iter()
                .position(|n| *n == d.database)
                .or_else(|| here.iter().position(|n| n == &d.database))
        } else {
            recorded.iter().position(|n| n == &d.database)
        };
        d.target = match role {
            Some(r) if map_roles => here[r].clone(),
            Some(_) => d.database.clone(),
            None if d.database == SCHEDULER_DB || named || here.contains(&d.database) => d.database.clone(),
            None => {
                tracing::warn!(database = %d.database, set = %id, "the set holds a dump of a database that is not one of SeaTable's: it is not restored (name it with --db to restore it)");
                continue;
            }
        };
        if d.target != d.database {
            tracing::info!(from = %d.database, to = %d.target, "this host names the database differently: restoring into its name");
        }
        if !crate::config::valid_db_name(&d.target) {
            return Err(usage(format!("target database `{}` is not a plain name", d.target)));
        }
        if let Some(other) = out.iter().find(|o| o.target == d.target) {
            return Err(Failure::new(
                Class::Usage,
                format!(
                    "set {id}: databases `{}` and `{}` would both be restored into `{}`; nothing was changed",
                    other.database, d.database, d.target
                ),
            )
            .with_hint("restore one of them with --db NAME")
            .into());
        }
        out.push(d);
    }
    Ok(out)
}

/// Whether `dir` looks like a SeaTable data directory.
fn looks_like_seatable(dir: &Path) -> bool {
    ["seafile-data", "seahub-data", "conf", "storage-data", "nginx-logs", "ccnet", "db-data"]
        .iter()
        .any(|n| dir.join(n).exists())
}

/// Whether `dir` looks like SeaTable's compose directory.
fn looks_like_compose(dir: &Path) -> bool {
    dir.join(".env").exists()
        || dir.join("docker-compose.yml").exists()
        || std::fs::read_dir(dir)
            .map(|mut r| r.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".yml"))))
            .unwrap_or(false)
}

/// Whether anything but this tool's own leftovers is in `dir`.
fn is_empty_dir(dir: &Path) -> std::io::Result<bool> {
    for e in std::fs::read_dir(dir)? {
        if !e?.file_name().to_string_lossy().starts_with(IN_PLACE_PREFIX) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `path` is a mount point: on another device than its parent, or listed as one in
/// `/proc/self/mountinfo` (a bind mount stays on the same device, and cannot be renamed either).
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::metadata(path), path.parent()) else { return false };
    if std::fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev()) {
        return true;
    }
    let Ok(canonical) = std::fs::canonicalize(path) else { return false };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|mp| Path::new(&unescape_mount(mp)) == canonical)
}

/// A mount point as mountinfo writes it (`\040` for a space, and so on).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decides where the data directory goes and checks that it may go there. Writes nothing.
pub fn data_target(config: &Config, force: bool, excluded: &[String], stamp: &str) -> anyhow::Result<DataTarget> {
    let target = match &config.data.dir {
        Some(d) => d.clone(),
        None => crate::seatable::defaults::default_data_dir().ok_or_else(|| {
            Failure::new(Class::Usage, "no SeaTable data directory to restore into was found")
                .with_hint("set `data.dir` (or --data-dir) to where the data directory should go")
        })?,
    };
    let mut kept: Vec<String> = ALWAYS_EXCLUDED.iter().map(|s| s.to_string()).collect();
    kept.extend(excluded.iter().filter(|e| !e.contains('/')).cloned());
    kept.sort();
    kept.dedup();
    dir_target(
        target,
        "data directory",
        looks_like_seatable,
        "seafile-data, seahub-data, conf, ...",
        force,
        kept,
        stamp,
    )
}

/// Where the compose directory goes: the configured or detected one, else the layout's.
pub fn config_target(install: &Install, config: &Config, force: bool, stamp: &str) -> anyhow::Result<DataTarget> {
    let target = config.seatable.compose_dir.clone().or_else(|| install.compose_dir.clone()).unwrap_or_else(|| {
        match install.layout {
            Layout::Old => install.root.join(crate::seatable::OLD_COMPOSE_DIR),
            _ => install.root.join(crate::seatable::NEW_COMPOSE_DIR),
        }
    });
    dir_target(target, "compose directory", looks_like_compose, ".env or *.yml", force, Vec::new(), stamp)
}

/// Decides where an archived directory goes (`what`: for messages) and checks that it may go
/// there: a non-empty target must pass `looks_right` (else `--force`). Writes nothing.
fn dir_target(
    target: PathBuf,
    what: &str,
    looks_right: fn(&Path) -> bool,
    expected: &str,
    force: bool,
    kept: Vec<String>,
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
    let now = catalog::stamp(Utc::now());
    let pid = std::process::id();
    let (mode, previous) = match std::fs::symlink_metadata(&target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (DirMode::Rename, None),
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
            if !empty && !looks_right(&target) && !force {
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
            if is_mount_point(&target) {
                (DirMode::InPlace, Some(unused(target.join(format!("{IN_PLACE_PREFIX}before-restore-{now}")))))
            } else {
                (DirMode::Rename, Some(unused(parent.join(format!("{name}.before-restore-{now}")))))
            }
        }
    };
    let staging = match mode {
        DirMode::Rename => parent.join(format!(".{name}.restore-{stamp}-{pid}")),
        DirMode::InPlace => target.join(format!("{IN_PLACE_PREFIX}restore-{stamp}-{pid}")),
    };
    Ok(DataTarget { what: what.to_string(), target, mode, staging, previous, kept })
}

/// `path`, or `path-2`, `path-3`, ... whichever does not exist (two restores in one second).
fn unused(path: PathBuf) -> PathBuf {
    if std::fs::symlink_metadata(&path).is_err() {
        return path;
    }
    let base = path.as_os_str().to_os_string();
    (2..)
        .map(|n| {
            let mut p = base.clone();
            p.push(format!("-{n}"));
            PathBuf::from(p)
        })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or(path)
}

/// Staging directories that a killed restore left for `t` (beside it, or inside it when it is a
/// mount point). The run lock makes sure no other restore is using them.
pub fn leftover_dirs(t: &DataTarget) -> Vec<PathBuf> {
    let (dir, prefix) = match t.mode {
        DirMode::Rename => {
            let name = t.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (t.target.parent().map(Path::to_path_buf).unwrap_or_default(), format!(".{name}.restore-"))
        }
        DirMode::InPlace => (t.target.clone(), format!("{IN_PLACE_PREFIX}restore-")),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p != &t.staging)
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_seen() {
        assert!(is_mount_point(Path::new("/proc")));
        let t = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(t.path()));
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
    }
}
