//! Backup sets: their keys, their manifest, and listing them.
//!
//! ```text
//! <prefix>/<class>/<host>/<stamp>/db/<database>.sql.<ext>
//! <prefix>/<class>/<host>/<stamp>/data/seatable.tar.<ext>
//! <prefix>/<class>/<host>/<stamp>/manifest.json        (written last: the commit)
//! ```
//! The class comes first so that one lifecycle rule per class expires the sets of every host.
//! A set without `manifest.json` is incomplete.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{valid_segment, RetentionConfig};
use crate::store::{ObjectInfo, Store, StoreError};

pub const MANIFEST: &str = "manifest.json";
/// Written by this version. 2 added `seatable` (detected install, versions, storage backends)
/// and the `config` component; schema 1 manifests are still read.
pub const SCHEMA_VERSION: u32 = 2;
const SCHEMAS_READ: std::ops::RangeInclusive<u32> = 1..=SCHEMA_VERSION;
const STAMP_FORMAT: &str = "%Y-%m-%dT%H%M%SZ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Daily,
    Weekly,
    Monthly,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Daily, Class::Weekly, Class::Monthly];
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Daily => "daily",
            Class::Weekly => "weekly",
            Class::Monthly => "monthly",
        }
    }
    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }
    /// Days the sets of this class are kept.
    pub fn keep_days(self, r: &RetentionConfig) -> u32 {
        match self {
            Class::Daily => r.daily,
            Class::Weekly => r.weekly,
            Class::Monthly => r.monthly,
        }
    }
}

/// The class of a set made at `now`, from the complete sets `host` already has: the first of a
/// calendar month (UTC) is monthly, the first of an ISO week weekly, any other daily. Missed
/// days do not break the rotation.
pub fn pick_class(existing: &[SetSummary], host: &str, now: DateTime<Utc>) -> Class {
    use chrono::Datelike;
    let mine: Vec<DateTime<Utc>> = existing
        .iter()
        .filter(|s| s.host == host && s.complete)
        .filter_map(|s| s.created)
        .filter(|c| *c <= now)
        .collect();
    if !mine.iter().any(|c| c.year() == now.year() && c.month() == now.month()) {
        Class::Monthly
    } else if !mine.iter().any(|c| c.iso_week() == now.iso_week()) {
        Class::Weekly
    } else {
        Class::Daily
    }
}

/// The day a set's objects expire under lifecycle rules: S3 adds the rule's days to an object's
/// creation time and rounds up to the next midnight UTC.
pub fn expires_on(class: Class, created: DateTime<Utc>, r: &RetentionConfig) -> chrono::NaiveDate {
    (created + chrono::Duration::days(i64::from(class.keep_days(r)))).date_naive() + chrono::Duration::days(1)
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `2026-11-29T161435Z`: sortable, no colons.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.format(STAMP_FORMAT).to_string()
}

pub fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, STAMP_FORMAT).ok().map(|n| n.and_utc())
}

/// Which set: class, host, stamp.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SetId {
    pub class: Class,
    pub host: String,
    pub stamp: String,
}

impl SetId {
    /// `<prefix>/<class>/<host>/<stamp>/` (no leading slash; an empty prefix is left out).
    pub fn dir(&self, prefix: &str) -> String {
        let base = format!("{}/{}/{}/", self.class, self.host, self.stamp);
        if prefix.is_empty() {
            base
        } else {
            format!("{prefix}/{base}")
        }
    }
    pub fn key(&self, prefix: &str, rest: &str) -> String {
        format!("{}{rest}", self.dir(prefix))
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.class, self.host, self.stamp)
    }
}

/// The relative key of a database dump within a set.
pub fn dump_name(db: &str, ext: &str) -> String {
    format!("db/{db}.sql.{ext}")
}

pub fn data_name(ext: &str) -> String {
    format!("data/seatable.tar.{ext}")
}

/// The relative key of a database's log tables, dumped apart.
pub fn log_tables_name(db: &str, ext: &str) -> String {
    format!("db/{db}.log-tables.sql.{ext}")
}

/// The relative key of the compose directory's archive within a set.
pub fn config_name(ext: &str) -> String {
    format!("config/seatable-compose.tar.{ext}")
}

// ---------------------------------------------------------------------------------------------
// The manifest.

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Version of this schema; readers refuse versions they do not know.
    pub schema: u32,
    pub tool: String,
    pub tool_version: String,
    pub host: String,
    pub class: Class,
    pub stamp: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The detected SeaTable layout (`new`, `old`, `custom`).
    pub layout: String,
    pub source: SourceInfo,
    pub objects: Vec<ObjectEntry>,
    /// What was deliberately not backed up, and why.
    pub skipped: Vec<Skipped>,
    /// Things a human should know (files that changed while read, ...).
    pub warnings: Vec<String>,
    /// The SeaTable install the set was taken from (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seatable: Option<SeatableInfo>,
}

/// What the backup knew of the SeaTable install. Never holds a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SeatableInfo {
    /// Why the layout was taken for what it is (the file found, or "configured").
    pub layout_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_dir: Option<String>,
    /// SeaTable's version (the app container's image tag, else `SEATABLE_IMAGE` in `.env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_container: Option<String>,
    /// `container `mariadb`` or `external `db.example.com:3306``.
    pub database: String,
    /// The ccnet, seafile and dtable databases' names, in that order (empty when the configured
    /// list does not say which is which); a restore maps them onto the target's names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub database_names: Vec<String>,
    /// Where bases and files are kept.
    #[serde(default)]
    pub storage: Vec<StorageInfo>,
    /// What became of the Big Data backup (`seatable.sh backup-all`).
    pub big_data_backup: String,
}

/// One of SeaTable's storage backends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StorageInfo {
    /// `dtable-storage-server`, `seafile commits`, `seafile fs`, `seafile blocks`, `avatars`.
    pub user: String,
    /// `filesystem` or `s3`.
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Objects are encrypted with a customer key (SSE-C): without that key they are lost.
    #[serde(default)]
    pub sse_c: bool,
    /// Where this was read (`.env` key, conf file, or default).
    pub source: String,
    /// Whether this set holds these objects.
    pub in_backup: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SourceInfo {
    /// Data directory on the host.
    pub data_dir: Option<String>,
    /// DB container name, or `host:port` for an external server.
    pub database_server: Option<String>,
    pub database_server_version: Option<String>,
    pub dump_binary: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    MysqlDump,
    Tar,
    /// The index of a mirrored bucket: one JSON line per object (key, size, ETag, where it is
    /// stored); see `mirror.rs`.
    MirrorIndex,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectEntry {
    /// `db/dtable_db`, `data`.
    pub component: String,
    /// Full key in the bucket.
    pub key: String,
    pub kind: Kind,
    /// `zstd` or `gzip`.
    pub compression: String,
    pub compression_level: i32,
    /// Bytes stored.
    pub stored_size: u64,
    /// Bytes before compression.
    pub raw_size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    pub parts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_tables: Vec<String>,
    /// A dump of only these tables of `database` (its log tables, kept apart); restored into
    /// the same database together with its main dump.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<TarSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSummary>,
}

/// A bucket of SeaTable's, mirrored into the set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct MirrorSummary {
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// What SeaTable keeps there (`dtable-storage-server`, `seafile blocks`, ...): a restore
    /// puts the objects into the bucket the target host uses for the same.
    pub users: Vec<String>,
    /// The source objects are SSE-C encrypted (the copies are not: the key is needed to read them).
    #[serde(default)]
    pub sse_c: bool,
    /// Objects and bytes in the bucket at backup time.
    pub objects: u64,
    pub bytes: u64,
    /// Copied by this run (new or changed since the set that held them), and how many of
    /// those were copied server-side.
    pub copied_objects: u64,
    pub copied_bytes: u64,
    pub server_side_copies: u64,
    /// Unchanged, and kept by an earlier set that outlives this one: referenced, not copied.
    pub referenced_objects: u64,
    pub referenced_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TarSummary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub other: u64,
    pub file_bytes: u64,
    /// Paths left out (relative to the data directory).
    pub excluded: Vec<String>,
    /// Symlinks pointing outside the archived directory (the first 100): archived as links,
    /// what they point to is NOT in the set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_symlinks: Vec<ExternalSymlink>,
    /// How many such symlinks there were in all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub external_symlinks_total: u64,
}

/// A symlink of an archived directory whose target lies outside it (absolute, or climbing out
/// with `..`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ExternalSymlink {
    /// Relative to the archived directory.
    pub path: String,
    /// The target as stored in the link.
    pub target: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    pub what: String,
    pub why: String,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        #[derive(Deserialize)]
        struct Probe {
            schema: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
        if !SCHEMAS_READ.contains(&probe.schema) {
            return Err(format!(
                "manifest schema {} is not known to this version (knows {} to {})",
                probe.schema,
                SCHEMAS_READ.start(),
                SCHEMAS_READ.end()
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("malformed manifest: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Listing sets.

#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    pub class: Class,
    pub host: String,
    pub stamp: String,
    pub complete: bool,
    pub objects: usize,
    pub bytes: u64,
    /// From the stamp.
    pub created: Option<DateTime<Utc>>,
    /// `<prefix>/<class>/<host>/<stamp>/`
    pub dir: String,
}

impl SetSummary {
    pub fn id(&self) -> SetId {
        SetId { class: self.class, host: self.host.clone(), stamp: self.stamp.clone() }
    }
}

/// Groups a listing of `<prefix>/` into sets; keys that are not of a set are ignored.
pub fn group_sets(prefix: &str, objects: &[ObjectInfo]) -> Vec<SetSummary> {
    let base = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let mut sets: BTreeMap<SetId, SetSummary> = BTreeMap::new();
    for o in objects {
        let Some(rest) = o.key.strip_prefix(&base) else { continue };
        let mut it = rest.splitn(4, '/');
        let (Some(class), Some(host), Some(stamp), Some(name)) = (it.next(), it.next(), it.next(), it.next()) else {
            continue;
        };
        let Some(class) = Class::parse(class) else { continue };
        if !valid_segment(host) || parse_stamp(stamp).is_none() || name.is_empty() {
            continue;
        }
        let id = SetId { class, host: host.to_string(), stamp: stamp.to_string() };
        let entry = sets.entry(id.clone()).or_insert_with(|| SetSummary {
            class,
            host: id.host.clone(),
            stamp: id.stamp.clone(),
            complete: false,
            objects: 0,
            bytes: 0,
            created: parse_stamp(stamp),
            dir: id.dir(prefix),
        });
        entry.objects += 1;
        entry.bytes += o.size;
        if name == MANIFEST {
            entry.complete = true;
        }
    }
    let mut v: Vec<SetSummary> = sets.into_values().collect();
    v.sort_by(|a, b| (a.host.as_str(), a.stamp.as_str(), a.class).cmp(&(b.host.as_str(), b.stamp.as_str(), b.class)));
    v
}

/// The sets of one host (each class's `<prefix>/<class>/<host>/` listed on its own, so other
/// hosts' objects are not read).
pub async fn host_sets(store: &dyn Store, prefix: &str, host: &str) -> Result<Vec<SetSummary>, StoreError> {
    let base = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let mut objects = Vec::new();
    for class in Class::ALL {
        objects.extend(store.list(&format!("{base}{class}/{host}/")).await?);
    }
    Ok(group_sets(prefix, &objects))
}

/// Every set under `prefix`, sorted by host, then time.
pub async fn list_sets(store: &dyn Store, prefix: &str) -> Result<Vec<SetSummary>, StoreError> {
    let listing_prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let objects = store.list(&listing_prefix).await?;
    Ok(group_sets(prefix, &objects))
}

// ---------------------------------------------------------------------------------------------
// Choosing a set to restore or verify.

/// Which set a command asked for.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// A stamp (`2026-11-29T161435Z`), or `None`/`latest`: the newest complete set.
    pub set: Option<String>,
    /// The host whose sets to look at.
    pub host: String,
    /// Only sets made strictly before this time.
    pub before: Option<DateTime<Utc>>,
    /// Accept a set without a manifest (nothing can be checked then).
    pub allow_incomplete: bool,
    /// `latest` means the newest set with a manifest, even if it does not check out (verify);
    /// otherwise such sets are skipped with a warning (restore).
    pub strict: bool,
}

/// A chosen set: its summary, its manifest (unless incomplete and allowed), its objects.
#[derive(Debug, Clone)]
pub struct ChosenSet {
    pub summary: SetSummary,
    pub manifest: Option<Manifest>,
    /// The objects stored under the set's directory.
    pub objects: Vec<ObjectInfo>,
}

impl ChosenSet {
    pub fn id(&self) -> SetId {
        self.summary.id()
    }
}

/// Parses `--before`: a date (`2026-11-29`, midnight UTC), an RFC 3339 time, or a set stamp.
pub fn parse_before(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    parse_stamp(s)
}

/// Checks a manifest against the set it was found in and the objects stored there: every
/// object it names must be inside the set and stored with the size it records.
pub fn check_manifest(id: &SetId, prefix: &str, manifest: &Manifest, objects: &[ObjectInfo]) -> Result<(), String> {
    if manifest.host != id.host || manifest.stamp != id.stamp {
        return Err(format!(
            "manifest of set {id} says it belongs to host `{}`, stamp `{}`",
            manifest.host, manifest.stamp
        ));
    }
    let dir = id.dir(prefix);
    for o in &manifest.objects {
        if !o.key.starts_with(&dir) || crate::store::check_key(&o.key).is_err() || o.key.ends_with(MANIFEST) {
            return Err(format!("manifest of set {id} names object `{}`, which is not an object of the set", o.key));
        }
        match objects.iter().find(|s| s.key == o.key) {
            None => {
                return Err(format!(
                    "object `{}` named by the manifest of set {id} is missing: the set is incomplete (partly expired by a lifecycle rule, pruned, or deleted)",
                    o.key
                ))
            }
            Some(s) if s.size != o.stored_size => {
                return Err(format!(
                    "object `{}` is {} bytes, the manifest of set {id} says {}",
                    o.key, s.size, o.stored_size
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Finds the set `sel` asks for, reads its manifest and checks it against the stored objects.
/// `latest` skips sets that do not check out (with a warning) and takes the newest that does.
pub async fn choose_set(store: &dyn Store, prefix: &str, sel: &Selection) -> anyhow::Result<ChosenSet> {
    use crate::error::{integrity, Class, Failure};
    let all = list_sets(store, prefix).await?;
    let mut sets: Vec<SetSummary> = all.iter().filter(|s| s.host == sel.host).cloned().collect();
    if sets.is_empty() {
        let mut hosts: Vec<&str> = all.iter().map(|s| s.host.as_str()).collect();
        hosts.dedup();
        return Err(Failure::new(
            Class::Usage,
            format!("no backup sets of host `{}` in {} under prefix `{prefix}`", sel.host, store.describe()),
        )
        .with_hint(if hosts.is_empty() {
            "the destination holds no sets at all: check `storage.destination` and `storage.prefix`".to_string()
        } else {
            format!("sets exist for: {}; pick one with --from-host", hosts.join(", "))
        })
        .into());
    }
    if let Some(before) = sel.before {
        sets.retain(|s| s.created.is_some_and(|c| c < before));
    }
    sets.sort_by(|a, b| b.stamp.cmp(&a.stamp).then(b.class.cmp(&a.class)));
    let load = |s: SetSummary| async move {
        let dir = s.id().dir(prefix);
        let objects = store.list(&dir).await?;
        let manifest = if s.complete {
            let bytes = store.get_object(&s.id().key(prefix, MANIFEST)).await?;
            let m = Manifest::from_json(&bytes).map_err(|e| integrity(format!("set {}: {e}", s.id())))?;
            check_manifest(&s.id(), prefix, &m, &objects).map_err(integrity)?;
            Some(m)
        } else {
            None
        };
        Ok::<ChosenSet, anyhow::Error>(ChosenSet { summary: s, manifest, objects })
    };
    match sel.set.as_deref() {
        None | Some("latest") => {
            for s in sets {
                if !s.complete {
                    tracing::warn!(set = %s.id(), "skipping an incomplete set (no manifest)");
                    continue;
                }
                match load(s.clone()).await {
                    Ok(c) => return Ok(c),
                    Err(e) if crate::error::class_of(&e) == Class::Integrity && !sel.strict => {
                        tracing::warn!(set = %s.id(), error = %format!("{e:#}"), "skipping a set that does not check out");
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(Failure::new(
                Class::Integrity,
                format!(
                    "no complete backup set of host `{}`{} in {}",
                    sel.host,
                    sel.before.map(|b| format!(" before {b}")).unwrap_or_default(),
                    store.describe()
                ),
            )
            .with_hint("`seatable-backup list` shows every set; name one explicitly to see why it is not usable")
            .into())
        }
        Some(stamp) => {
            if parse_stamp(stamp).is_none() {
                return Err(Failure::new(Class::Usage, format!("`{stamp}` is not a set stamp or `latest`"))
                    .with_hint("stamps look like 2026-11-29T161435Z; `seatable-backup list` shows them")
                    .into());
            }
            let Some(s) = sets.into_iter().find(|s| s.stamp == stamp) else {
                return Err(Failure::new(
                    Class::Usage,
                    format!("no set `{stamp}` of host `{}` in {}", sel.host, store.describe()),
                )
                .with_hint("`seatable-backup list` shows every set")
                .into());
            };
            if !s.complete && !sel.allow_incomplete {
                return Err(Failure::new(
                    Class::Integrity,
                    format!("set {} has no manifest: it is incomplete (its backup failed or is still running)", s.id()),
                )
                .with_hint("--allow-incomplete restores what is there, unchecked")
                .into());
            }
            let c = load(s).await?;
            if c.manifest.is_none() {
                tracing::warn!(set = %c.id(), "this set has no manifest: nothing can be checked against it");
            }
            Ok(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> ObjectInfo {
        ObjectInfo { key: key.into(), size, last_modified: None, etag: None }
    }

    fn set(host: &str, stamp: &str) -> SetSummary {
        SetSummary {
            class: Class::Daily,
            host: host.into(),
            stamp: stamp.into(),
            complete: true,
            objects: 1,
            bytes: 1,
            created: parse_stamp(stamp),
            dir: String::new(),
        }
    }

    #[test]
    fn classes_rotate_by_month_and_iso_week() {
        let at = |s: &str| parse_stamp(s).unwrap();
        // 2026-12-01 is a Tuesday; ISO week 49 runs Mon 11-30 .. Sun 12-06.
        assert_eq!(pick_class(&[], "a", at("2026-12-01T020000Z")), Class::Monthly);
        let nov = [set("a", "2026-11-30T020000Z")];
        // A set this week (in November) but none this month: monthly wins.
        assert_eq!(pick_class(&nov, "a", at("2026-12-01T020000Z")), Class::Monthly);
        let dec = [set("a", "2026-12-01T020000Z")];
        assert_eq!(pick_class(&dec, "a", at("2026-12-02T020000Z")), Class::Daily);
        assert_eq!(pick_class(&dec, "a", at("2026-12-07T020000Z")), Class::Weekly);
        // Another host's sets, incomplete sets and sets from the future do not count.
        let mut incomplete = set("a", "2026-12-01T020000Z");
        incomplete.complete = false;
        let others = [set("b", "2026-12-01T020000Z"), incomplete, set("a", "2026-12-09T020000Z")];
        assert_eq!(pick_class(&others, "a", at("2026-12-02T020000Z")), Class::Monthly);
    }

    #[test]
    fn expiry_rounds_to_the_next_midnight() {
        let r = RetentionConfig::default();
        let t = parse_stamp("2026-12-01T230000Z").unwrap();
        assert_eq!(expires_on(Class::Daily, t, &r).to_string(), "2026-12-09");
        assert_eq!(expires_on(Class::Monthly, t, &r).to_string(), "2027-12-02");
        let morning = parse_stamp("2026-12-01T010000Z").unwrap();
        assert_eq!(expires_on(Class::Daily, morning, &r), expires_on(Class::Daily, t, &r));
    }

    #[test]
    fn stamps_round_trip_and_sort() {
        let t = DateTime::parse_from_rfc3339("2026-11-29T16:14:35Z").unwrap().with_timezone(&Utc);
        assert_eq!(stamp(t), "2026-11-29T161435Z");
        assert_eq!(parse_stamp("2026-11-29T161435Z"), Some(t));
        assert!(parse_stamp("2026-11-29T16:14:35Z").is_none());
        assert!(stamp(t) < stamp(t + chrono::Duration::seconds(1)));
    }

    #[test]
    fn keys_carry_class_host_stamp() {
        let id = SetId { class: Class::Daily, host: "st1".into(), stamp: "2026-11-29T161435Z".into() };
        assert_eq!(
            id.key("seatable", &dump_name("dtable_db", "zst")),
            "seatable/daily/st1/2026-11-29T161435Z/db/dtable_db.sql.zst"
        );
        assert_eq!(id.key("", &data_name("gz")), "daily/st1/2026-11-29T161435Z/data/seatable.tar.gz");
    }

    #[test]
    fn grouping_marks_sets_without_manifest_incomplete() {
        let objs = vec![
            obj("p/daily/a/2026-11-28T010000Z/db/x.sql.zst", 10),
            obj("p/daily/a/2026-11-28T010000Z/manifest.json", 1),
            obj("p/daily/a/2026-11-29T010000Z/db/x.sql.zst", 5),
            obj("p/weekly/b/2026-11-29T010000Z/manifest.json", 2),
            obj("p/junk/b/2026-11-29T010000Z/manifest.json", 2),
            obj("p/daily/a/not-a-stamp/manifest.json", 2),
            obj("other/daily/a/2026-11-28T010000Z/manifest.json", 1),
        ];
        let sets = group_sets("p", &objs);
        assert_eq!(sets.len(), 3);
        assert!(sets[0].complete && sets[0].bytes == 11 && sets[0].objects == 2);
        assert!(!sets[1].complete);
        assert_eq!(sets[2].host, "b");
        assert_eq!(sets[0].dir, "p/daily/a/2026-11-28T010000Z/");
    }

    #[test]
    fn manifest_schema_is_checked() {
        assert!(Manifest::from_json(b"{\"schema\": 99}").unwrap_err().contains("schema 99"));
        assert!(Manifest::from_json(b"nope").is_err());
    }
}
