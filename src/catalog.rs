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

use crate::config::valid_segment;
use crate::store::{ObjectInfo, Store, StoreError};

pub const MANIFEST: &str = "manifest.json";
pub const SCHEMA_VERSION: u32 = 1;
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<TarSummary>,
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
        if probe.schema != SCHEMA_VERSION {
            return Err(format!(
                "manifest schema {} is not known to this version (knows {SCHEMA_VERSION})",
                probe.schema
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

/// Every set under `prefix`, sorted by host, then time.
pub async fn list_sets(store: &dyn Store, prefix: &str) -> Result<Vec<SetSummary>, StoreError> {
    let listing_prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let objects = store.list(&listing_prefix).await?;
    Ok(group_sets(prefix, &objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str, size: u64) -> ObjectInfo {
        ObjectInfo { key: key.into(), size, last_modified: None }
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
