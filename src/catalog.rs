//! Backup sets: their keys, their manifest, and listing them.
//!
//! ```text
//! <prefix>/<class>/<host>/<stamp>/db/<database>.sql.<ext>
//! <prefix>/<class>/<host>/<stamp>/db/<database>.log-tables.sql.<ext>
//! <prefix>/<class>/<host>/<stamp>/data/seatable.tar.<ext>
//! <prefix>/<class>/<host>/<stamp>/config/seatable-compose.tar.<ext>
//! <prefix>/<class>/<host>/<stamp>/objects/<bucket>.index.jsonl.zst   (mirrored buckets)
//! <prefix>/<class>/<host>/<stamp>/manifest.json        (written last: the commit)
//! ```
//! The class comes first so that one lifecycle rule per class expires the sets of every host.
//! A set without `manifest.json` is incomplete.
//!
//! A manifest is input like any other: [`check_manifest`] refuses one that names objects
//! outside their place, databases that are not plain identifiers, or malformed hashes, before
//! restore or verify act on it.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{valid_db_name, valid_segment, Algorithm, CompressionConfig, RetentionConfig};
/// Recorded in the manifest as the tar writer reports it.
pub use crate::source::tar::ExternalSymlink;
use crate::store::download::{ChunkHashes, Expected};
use crate::store::upload::Stored;
use crate::store::{ObjectInfo, Store, StoreError};

pub const MANIFEST: &str = "manifest.json";
/// Written by this version. 2 added `seatable` (detected install, versions, storage backends)
/// and the `config` component; 3 added per-chunk hashes (`chunk_size`, `chunk_sha256`) and
/// `requires`. Schema 1 and 2 manifests are still read (their objects have no chunk hashes).
pub const SCHEMA_VERSION: u32 = 3;
const SCHEMAS_READ: std::ops::RangeInclusive<u32> = 1..=SCHEMA_VERSION;
const STAMP_FORMAT: &str = "%Y-%m-%dT%H%M%SZ";

/// Bytes per chunk hash written by `backup`: the uploader's (see its reasons there).
pub const CHUNK_SIZE: u64 = crate::store::upload::CHUNK_SIZE;
/// The chunk sizes a reader accepts from a manifest (a forged huge chunk size would make the
/// reader buffer that much before checking it).
pub const MIN_CHUNK_SIZE: u64 = 64 * 1024;
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;
/// The features of [`Manifest::requires`] this version knows. Empty today.
pub const KNOWN_FEATURES: &[&str] = &[];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetClass {
    Daily,
    Weekly,
    Monthly,
}

impl SetClass {
    pub const ALL: [SetClass; 3] = [SetClass::Daily, SetClass::Weekly, SetClass::Monthly];
    pub fn as_str(self) -> &'static str {
        match self {
            SetClass::Daily => "daily",
            SetClass::Weekly => "weekly",
            SetClass::Monthly => "monthly",
        }
    }
    pub fn parse(s: &str) -> Option<SetClass> {
        SetClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
    /// Days the sets of this class are kept.
    pub fn keep_days(self, r: &RetentionConfig) -> u32 {
        match self {
            SetClass::Daily => r.daily,
            SetClass::Weekly => r.weekly,
            SetClass::Monthly => r.monthly,
        }
    }
}

/// The class of a set made at `now`, from the complete sets `host` already has: the first of a
/// calendar month (UTC) is monthly, the first of an ISO week weekly, any other daily. Missed
/// days do not break the rotation.
pub fn pick_class(existing: &[SetSummary], host: &str, now: DateTime<Utc>) -> SetClass {
    use chrono::Datelike;
    let mine: Vec<DateTime<Utc>> = existing
        .iter()
        .filter(|s| s.host == host && s.complete)
        .filter_map(|s| s.created)
        .filter(|c| *c <= now)
        .collect();
    if !mine.iter().any(|c| c.year() == now.year() && c.month() == now.month()) {
        SetClass::Monthly
    } else if !mine.iter().any(|c| c.iso_week() == now.iso_week()) {
        SetClass::Weekly
    } else {
        SetClass::Daily
    }
}

/// The day a set's objects expire under lifecycle rules: S3 adds the rule's days to an object's
/// creation time and rounds up to the next midnight UTC.
pub fn expires_on(class: SetClass, created: DateTime<Utc>, r: &RetentionConfig) -> chrono::NaiveDate {
    (created + chrono::Duration::days(i64::from(class.keep_days(r)))).date_naive() + chrono::Duration::days(1)
}

impl fmt::Display for SetClass {
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
    pub class: SetClass,
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

/// The compression a manifest names (`zstd`, `gzip`); `None` for one this tool does not know.
pub fn algorithm_named(name: &str) -> Option<Algorithm> {
    [Algorithm::Zstd, Algorithm::Gzip].into_iter().find(|a| a.name() == name)
}

/// The relative key of a mirrored bucket's index within a set.
pub fn mirror_index_name(bucket: &str) -> String {
    format!("objects/{bucket}.index.jsonl.zst")
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
    pub class: SetClass,
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
    /// Features a reader must know to use this set (schema 3); a reader refuses a manifest that
    /// names one it does not know (see [`KNOWN_FEATURES`]). Empty today: encrypted sets
    /// (`age`) and differential sets (`differential`) will be marked here, without another
    /// schema bump, so that older readers refuse them instead of misreading them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
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
    /// Bytes per entry of `chunk_sha256` (schema 3); 0: the object has no chunk hashes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunk_size: u64,
    /// Hex SHA-256 of each consecutive `chunk_size` range of the stored bytes, the last one
    /// shorter: a reader checks each chunk before it hands any byte of it on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_sha256: Vec<String>,
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ObjectEntry {
    /// The manifest entry of an object the uploader stored: what was stored, how, and its
    /// hashes; the fields that depend on the kind (`database`, `tar`, ...) are left empty for
    /// the caller.
    pub fn from_stored(
        stored: &Stored,
        component: impl Into<String>,
        kind: Kind,
        compression: &CompressionConfig,
        raw_size: u64,
    ) -> ObjectEntry {
        ObjectEntry {
            component: component.into(),
            key: stored.key.clone(),
            kind,
            compression: compression.algorithm.name().into(),
            compression_level: compression.level,
            stored_size: stored.size,
            raw_size,
            sha256: hex::encode(stored.sha256),
            chunk_size: stored.chunk_size,
            chunk_sha256: stored.chunk_sha256.iter().map(hex::encode).collect(),
            parts: stored.parts,
            database: None,
            excluded_tables: vec![],
            only_tables: vec![],
            tar: None,
            mirror: None,
        }
    }

    /// What the entry says of its object, for the downloader. Malformed hashes are an
    /// integrity error, never "no check" (`check_manifest` refuses them earlier; this is the
    /// last guard).
    pub fn expected(&self) -> anyhow::Result<Expected> {
        let sha256 = parse_sha256(&self.key, "sha256", &self.sha256)?;
        if self.chunk_size == 0 && self.chunk_sha256.is_empty() {
            return Ok(Expected { size: self.stored_size, sha256: Some(sha256), chunks: None });
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size)
            || self.chunk_sha256.len() as u64 != self.stored_size.div_ceil(self.chunk_size)
        {
            return Err(crate::error::integrity(format!(
                "object `{}`: the manifest's chunk hashes do not fit the object ({} hashes of {} bytes for {} bytes)",
                self.key,
                self.chunk_sha256.len(),
                self.chunk_size,
                self.stored_size
            )));
        }
        let hashes = self
            .chunk_sha256
            .iter()
            .enumerate()
            .map(|(i, h)| parse_sha256(&self.key, &format!("chunk_sha256[{i}]"), h))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let chunks = Some(ChunkHashes { size: self.chunk_size, sha256: hashes });
        Ok(Expected { size: self.stored_size, sha256: Some(sha256), chunks })
    }
}

fn parse_sha256(key: &str, field: &str, hex_str: &str) -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out).map_err(|_| {
        crate::error::integrity(format!("object `{key}`: the manifest's `{field}` is not a SHA-256 (64 hex digits)"))
    })?;
    Ok(out)
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
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("malformed manifest: {e}"))?;
        if let Some(f) = m.requires.iter().find(|f| !KNOWN_FEATURES.contains(&f.as_str())) {
            return Err(format!(
                "the set requires feature `{}`, which this version does not know: use a newer seatable-backup",
                shown(f)
            ));
        }
        Ok(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Listing sets.

#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    pub class: SetClass,
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

/// The listing prefix of everything under the configured key prefix: `prefix/`, or the whole
/// bucket for an empty prefix.
pub fn prefix_dir(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    }
}

/// Groups a listing of `<prefix>/` into sets; keys that are not of a set are ignored.
pub fn group_sets(prefix: &str, objects: &[ObjectInfo]) -> Vec<SetSummary> {
    let base = prefix_dir(prefix);
    let mut sets: BTreeMap<SetId, SetSummary> = BTreeMap::new();
    for o in objects {
        let Some(rest) = o.key.strip_prefix(&base) else { continue };
        let mut it = rest.splitn(4, '/');
        let (Some(class), Some(host), Some(stamp), Some(name)) = (it.next(), it.next(), it.next(), it.next()) else {
            continue;
        };
        let Some(class) = SetClass::parse(class) else { continue };
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
    let base = prefix_dir(prefix);
    let mut objects = Vec::new();
    for class in SetClass::ALL {
        objects.extend(store.list(&format!("{base}{class}/{host}/")).await?);
    }
    Ok(group_sets(prefix, &objects))
}

/// Every set under `prefix`, sorted by host, then time.
pub async fn list_sets(store: &dyn Store, prefix: &str) -> Result<Vec<SetSummary>, StoreError> {
    let listing_prefix = prefix_dir(prefix);
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

/// A name from a manifest, for a message: control characters escaped, at most 200 characters.
fn shown(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 200 {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks one entry's hashes: a whole-object SHA-256 always, chunk hashes when it has them.
fn check_hashes(id: &SetId, o: &ObjectEntry) -> Result<(), String> {
    let key = shown(&o.key);
    if !is_sha256_hex(&o.sha256) {
        return Err(format!(
            "manifest of set {id}: object `{key}` has a malformed `sha256` `{}` (64 hex digits expected)",
            shown(&o.sha256)
        ));
    }
    if o.chunk_size == 0 {
        if !o.chunk_sha256.is_empty() {
            return Err(format!("manifest of set {id}: object `{key}` has `chunk_sha256` without a `chunk_size`"));
        }
        return Ok(());
    }
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&o.chunk_size) {
        return Err(format!(
            "manifest of set {id}: object `{key}` has `chunk_size` {}, outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}",
            o.chunk_size
        ));
    }
    let want = o.stored_size.div_ceil(o.chunk_size);
    if o.chunk_sha256.len() as u64 != want {
        return Err(format!(
            "manifest of set {id}: object `{key}` has {} entries in `chunk_sha256`, {want} expected for {} bytes in chunks of {}",
            o.chunk_sha256.len(),
            o.stored_size,
            o.chunk_size
        ));
    }
    if let Some((i, h)) = o.chunk_sha256.iter().enumerate().find(|(_, h)| !is_sha256_hex(h)) {
        return Err(format!(
            "manifest of set {id}: object `{key}` has a malformed `chunk_sha256[{i}]` `{}` (64 hex digits expected)",
            shown(h)
        ));
    }
    Ok(())
}

/// Checks what an entry says it is against where it is stored and how: the directory of its
/// kind, a known compression, a valid database name for a dump.
fn check_kind(id: &SetId, dir: &str, o: &ObjectEntry) -> Result<(), String> {
    let key = shown(&o.key);
    if algorithm_named(&o.compression).is_none() {
        return Err(format!(
            "manifest of set {id}: object `{key}` has unknown compression `{}`",
            shown(&o.compression)
        ));
    }
    let rest = &o.key[dir.len()..];
    let (place, ok) = match o.kind {
        Kind::MysqlDump => ("db/", rest.starts_with("db/")),
        Kind::Tar if o.component == "config" => ("config/", rest.starts_with("config/")),
        Kind::Tar => ("data/", rest.starts_with("data/")),
        Kind::MirrorIndex => {
            let expected = o.mirror.as_ref().map(|m| mirror_index_name(&m.bucket));
            let ok = match &expected {
                Some(e) => rest == e,
                None => false,
            };
            ("objects/<bucket>.index.jsonl.zst", ok)
        }
    };
    if !ok {
        return Err(format!(
            "manifest of set {id}: object `{key}` ({}) is not where backup stores it (`{dir}{place}`)",
            shown(&o.component)
        ));
    }
    if o.kind == Kind::MysqlDump {
        match o.database.as_deref() {
            None => return Err(format!("manifest of set {id}: dump `{key}` does not name its database")),
            Some(db) if !valid_db_name(db) => {
                return Err(format!(
                    "manifest of set {id}: dump `{key}` names database `{}`, which is not a plain identifier (letters, digits, `_`, at most 64)",
                    shown(db)
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks a manifest against the set it was found in and the objects stored there: every
/// object it names must be inside the set, where backup stores its kind, stored with the size
/// it records, named once, with well-formed hashes; a dump must name a valid database, and no
/// database may have two main dumps.
pub fn check_manifest(id: &SetId, prefix: &str, manifest: &Manifest, objects: &[ObjectInfo]) -> Result<(), String> {
    if manifest.host != id.host || manifest.stamp != id.stamp {
        return Err(format!(
            "manifest of set {id} says it belongs to host `{}`, stamp `{}`",
            shown(&manifest.host),
            shown(&manifest.stamp)
        ));
    }
    let dir = id.dir(prefix);
    let mut keys = std::collections::BTreeSet::new();
    let mut main_dumps = std::collections::BTreeSet::new();
    for o in &manifest.objects {
        if !o.key.starts_with(&dir) || crate::store::check_key(&o.key).is_err() || o.key.ends_with(MANIFEST) {
            return Err(format!(
                "manifest of set {id} names object `{}`, which is not an object of the set",
                shown(&o.key)
            ));
        }
        if !keys.insert(o.key.as_str()) {
            return Err(format!("manifest of set {id} names object `{}` twice", shown(&o.key)));
        }
        check_kind(id, &dir, o)?;
        check_hashes(id, o)?;
        if o.kind == Kind::MysqlDump && o.only_tables.is_empty() {
            let db = o.database.as_deref().unwrap_or_default();
            if !main_dumps.insert(db) {
                return Err(format!(
                    "manifest of set {id} holds two dumps of database `{db}` (the second is `{}`)",
                    shown(&o.key)
                ));
            }
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
                    Err(e) if crate::exit::class_of(&e) == Class::Integrity && !sel.strict => {
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
            class: SetClass::Daily,
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
        assert_eq!(pick_class(&[], "a", at("2026-12-01T020000Z")), SetClass::Monthly);
        let nov = [set("a", "2026-11-30T020000Z")];
        // A set this week (in November) but none this month: monthly wins.
        assert_eq!(pick_class(&nov, "a", at("2026-12-01T020000Z")), SetClass::Monthly);
        let dec = [set("a", "2026-12-01T020000Z")];
        assert_eq!(pick_class(&dec, "a", at("2026-12-02T020000Z")), SetClass::Daily);
        assert_eq!(pick_class(&dec, "a", at("2026-12-07T020000Z")), SetClass::Weekly);
        // Another host's sets, incomplete sets and sets from the future do not count.
        let mut incomplete = set("a", "2026-12-01T020000Z");
        incomplete.complete = false;
        let others = [set("b", "2026-12-01T020000Z"), incomplete, set("a", "2026-12-09T020000Z")];
        assert_eq!(pick_class(&others, "a", at("2026-12-02T020000Z")), SetClass::Monthly);
    }

    #[test]
    fn expiry_rounds_to_the_next_midnight() {
        let r = RetentionConfig::default();
        let t = parse_stamp("2026-12-01T230000Z").unwrap();
        assert_eq!(expires_on(SetClass::Daily, t, &r).to_string(), "2026-12-09");
        assert_eq!(expires_on(SetClass::Monthly, t, &r).to_string(), "2027-12-02");
        let morning = parse_stamp("2026-12-01T010000Z").unwrap();
        assert_eq!(expires_on(SetClass::Daily, morning, &r), expires_on(SetClass::Daily, t, &r));
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
        let id = SetId { class: SetClass::Daily, host: "st1".into(), stamp: "2026-11-29T161435Z".into() };
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

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn entry(key: &str, kind: Kind, db: Option<&str>, size: u64) -> ObjectEntry {
        ObjectEntry {
            component: if key.contains("/config/") { "config".into() } else { "x".into() },
            key: key.into(),
            kind,
            compression: "zstd".into(),
            compression_level: 3,
            stored_size: size,
            raw_size: size,
            sha256: SHA.into(),
            chunk_size: CHUNK_SIZE,
            chunk_sha256: vec![SHA.into(); size.div_ceil(CHUNK_SIZE) as usize],
            parts: 1,
            database: db.map(String::from),
            excluded_tables: vec![],
            only_tables: vec![],
            tar: None,
            mirror: None,
        }
    }

    /// A well-formed manifest of set `p/daily/h/2026-12-01T010000Z/` and the listing that fits it.
    fn forged() -> (SetId, Manifest) {
        let id = SetId { class: SetClass::Daily, host: "h".into(), stamp: "2026-12-01T010000Z".into() };
        let dir = id.dir("p");
        let t = parse_stamp(&id.stamp).unwrap();
        let mut index = entry(&format!("{dir}objects/b1.index.jsonl.zst"), Kind::MirrorIndex, None, 10);
        index.mirror = Some(MirrorSummary { bucket: "b1".into(), ..Default::default() });
        let mut logs = entry(&format!("{dir}db/dtable_db.log-tables.sql.zst"), Kind::MysqlDump, Some("dtable_db"), 5);
        logs.only_tables = vec!["operation_log".into()];
        let m = Manifest {
            schema: SCHEMA_VERSION,
            tool: "seatable-backup".into(),
            tool_version: "test".into(),
            host: "h".into(),
            class: SetClass::Daily,
            stamp: id.stamp.clone(),
            started_at: t,
            finished_at: t,
            layout: "new".into(),
            source: SourceInfo::default(),
            objects: vec![
                entry(&format!("{dir}db/dtable_db.sql.zst"), Kind::MysqlDump, Some("dtable_db"), 9 * 1024 * 1024),
                logs,
                entry(&format!("{dir}db/empty_db.sql.zst"), Kind::MysqlDump, Some("empty_db"), 0),
                entry(&format!("{dir}data/seatable.tar.zst"), Kind::Tar, None, 100),
                entry(&format!("{dir}config/seatable-compose.tar.zst"), Kind::Tar, None, 100),
                index,
            ],
            skipped: vec![],
            warnings: vec![],
            seatable: None,
            requires: vec![],
        };
        (id, m)
    }

    fn listing(m: &Manifest) -> Vec<ObjectInfo> {
        m.objects.iter().map(|o| obj(&o.key, o.stored_size)).collect()
    }

    /// `check_manifest` of the forged manifest after `change`; its error, if any.
    fn refusal(change: impl FnOnce(&mut Manifest)) -> Option<String> {
        let (id, mut m) = forged();
        let objects = listing(&m);
        change(&mut m);
        check_manifest(&id, "p", &m, &objects).err()
    }

    #[test]
    fn a_well_formed_manifest_passes() {
        assert_eq!(refusal(|_| {}), None);
        // Schema 1 and 2 entries have no chunk hashes.
        assert_eq!(
            refusal(|m| m.objects.iter_mut().for_each(|o| {
                o.chunk_size = 0;
                o.chunk_sha256.clear();
            })),
            None
        );
        let (id, m) = forged();
        assert_eq!(m.objects[0].chunk_sha256.len(), 3);
        assert_eq!(m.objects[2].chunk_sha256.len(), 0);
        // It survives a round trip through JSON.
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert!(check_manifest(&id, "p", &back, &listing(&m)).is_ok());
    }

    #[test]
    fn database_names_must_be_plain_identifiers() {
        for bad in ["--execute=DROP", "-x", "a.b", "a`b", "a'b", "a b", "", "é", &"x".repeat(65)] {
            assert!(!valid_db_name(bad), "{bad}");
        }
        for good in ["dtable_db", "ccnet_db", "A1", "_", &"x".repeat(64)] {
            assert!(valid_db_name(good), "{good}");
        }
        let e = refusal(|m| m.objects[0].database = Some("--execute=DROP DATABASE x".into())).unwrap();
        assert!(
            e.contains("--execute=DROP") && e.contains("not a plain identifier") && e.contains("dtable_db.sql.zst"),
            "{e}"
        );
        let e = refusal(|m| m.objects[0].database = Some("a.b".into())).unwrap();
        assert!(e.contains("`a.b`") && e.contains("daily/h/2026-12-01T010000Z"), "{e}");
        let e = refusal(|m| m.objects[0].database = None).unwrap();
        assert!(e.contains("does not name its database"), "{e}");
        // Control characters are escaped in the message.
        let e = refusal(|m| m.objects[0].database = Some("a\x1b[2Jb".into())).unwrap();
        assert!(!e.contains('\x1b'), "{e}");
    }

    #[test]
    fn hashes_must_be_well_formed() {
        let e = refusal(|m| m.objects[3].sha256 = String::new()).unwrap();
        assert!(e.contains("malformed `sha256`") && e.contains("data/seatable.tar.zst"), "{e}");
        assert!(refusal(|m| m.objects[3].sha256 = SHA[..63].into()).is_some());
        assert!(refusal(|m| m.objects[3].sha256 = format!("{}g", &SHA[..63])).is_some());
        let e = refusal(|m| {
            m.objects[0].chunk_sha256.pop();
        })
        .unwrap();
        assert!(e.contains("2 entries in `chunk_sha256`, 3 expected"), "{e}");
        let e = refusal(|m| m.objects[0].chunk_sha256.push(SHA.into())).unwrap();
        assert!(e.contains("4 entries"), "{e}");
        let e = refusal(|m| m.objects[0].chunk_sha256[1] = "00".into()).unwrap();
        assert!(e.contains("`chunk_sha256[1]`"), "{e}");
        let e = refusal(|m| m.objects[3].chunk_size = 1024).unwrap();
        assert!(e.contains("`chunk_size` 1024"), "{e}");
        assert!(refusal(|m| m.objects[3].chunk_size = 128 * 1024 * 1024).is_some());
        let e = refusal(|m| m.objects[3].chunk_size = 0).unwrap();
        assert!(e.contains("without a `chunk_size`"), "{e}");
        // An empty object has no chunks, and must not claim one.
        assert!(refusal(|m| m.objects[2].chunk_sha256.push(SHA.into())).is_some());
    }

    #[test]
    fn dumps_and_keys_are_unique() {
        // A second main dump of one database.
        let e = refusal(|m| {
            let (id, _) = forged();
            let mut second = m.objects[0].clone();
            second.key = id.key("p", "db/other.sql.zst");
            m.objects.push(second);
        });
        // Its object is not in the listing, but the duplicate is found first.
        let e = e.unwrap();
        assert!(e.contains("two dumps of database `dtable_db`"), "{e}");
        let e = refusal(|m| {
            let again = m.objects[3].clone();
            m.objects.push(again);
        })
        .unwrap();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn objects_must_be_where_backup_puts_them() {
        let (id, _) = forged();
        let dir = id.dir("p");
        let e = refusal(|m| m.objects[0].key = format!("{dir}../other/db/x.sql.zst")).unwrap();
        assert!(e.contains("not an object of the set"), "{e}");
        let e = refusal(|m| m.objects[0].key = "p/daily/h/2026-11-30T010000Z/db/dtable_db.sql.zst".into()).unwrap();
        assert!(e.contains("not an object of the set"), "{e}");
        let e = refusal(|m| m.objects[0].key = format!("{dir}data/dtable_db.sql.zst")).unwrap();
        assert!(e.contains("not where backup stores it") && e.contains("db/"), "{e}");
        let e = refusal(|m| m.objects[3].key = format!("{dir}db/seatable.tar.zst")).unwrap();
        assert!(e.contains("data/"), "{e}");
        let e = refusal(|m| m.objects[4].key = format!("{dir}data/seatable-compose.tar.zst")).unwrap();
        assert!(e.contains("config/"), "{e}");
        let e = refusal(|m| m.objects[5].key = format!("{dir}objects/b2.index.jsonl.zst")).unwrap();
        assert!(e.contains("objects/"), "{e}");
        assert!(refusal(|m| m.objects[5].mirror = None).is_some());
        let e = refusal(|m| m.objects[3].compression = "xz".into()).unwrap();
        assert!(e.contains("unknown compression `xz`"), "{e}");
        // Sizes still match the listing.
        let e = refusal(|m| m.objects[3].stored_size = 101).unwrap();
        assert!(e.contains("is 100 bytes"), "{e}");
    }

    #[test]
    fn unknown_required_features_are_refused() {
        let (_, mut m) = forged();
        m.requires = vec!["age".into()];
        let e = Manifest::from_json(&m.to_json()).unwrap_err();
        assert!(e.contains("requires feature `age`"), "{e}");
        m.requires.clear();
        assert!(!String::from_utf8(m.to_json()).unwrap().contains("requires"));
        // Schema 2 manifests still read.
        let mut v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        v["schema"] = 2.into();
        assert!(Manifest::from_json(&serde_json::to_vec(&v).unwrap()).is_ok());
    }

    #[test]
    fn manifest_schema_is_checked() {
        assert!(Manifest::from_json(b"{\"schema\": 99}").unwrap_err().contains("schema 99"));
        assert!(Manifest::from_json(b"nope").is_err());
    }
}
