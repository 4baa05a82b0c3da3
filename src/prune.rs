//! `prune`: client-side retention for stores without lifecycle rules (a local directory, or an
//! S3-compatible store that refuses them). The same ages as the lifecycle rules: a set goes on
//! the day its class's rule would expire it (stamp + keep days, rounded up to the next
//! midnight UTC).
//!
//! Whatever the ages say, prune never deletes:
//! - the newest complete set of any host (nor the `retention.keep_last` newest);
//! - a set whose mirrored objects a kept set references (they must outlive it).
//!
//! A set is deleted manifest FIRST: a prune cut short leaves a set without manifest, which
//! every command treats as incomplete, never a complete-looking set with missing parts.
//! Multipart uploads of this tool left open for over a day are aborted too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::catalog::{self, check_manifest, group_sets, Manifest, SetSummary, MANIFEST};
use crate::config::Config;
use crate::error::{Class as ErrClass, Failure};
use crate::output::human_bytes;
use crate::store::{ObjectInfo, OpenUpload, Store, StoreError};
use crate::{clock, mirror};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Delete,
    Keep,
}

/// What prune decided for one set, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub set: String,
    pub dir: String,
    pub complete: bool,
    pub objects: usize,
    pub bytes: u64,
    pub expires_on: Option<chrono::NaiveDate>,
    pub action: Action,
    pub why: String,
}

/// A set as prune sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub summary: SetSummary,
    /// Its manifest checks out against the stored objects.
    pub restorable: bool,
}

/// Decides, without touching the store, which sets go. `references` gives for a set's
/// directory the directories of the sets it references (read only for sets that are kept).
pub fn decide(
    sets: &[Candidate],
    config: &Config,
    now: DateTime<Utc>,
    references: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Decision> {
    let r = &config.retention;
    let today = now.date_naive();
    // Per host, newest first: the protected ones.
    let mut protected: BTreeMap<String, String> = BTreeMap::new();
    let mut hosts: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in sets {
        hosts.entry(c.summary.host.as_str()).or_default().push(c);
    }
    for (host, mut list) in hosts {
        list.sort_by(|a, b| b.summary.stamp.cmp(&a.summary.stamp));
        let keep = r.keep_last.max(1) as usize;
        for (n, c) in list.iter().filter(|c| c.summary.complete && c.restorable).take(keep).enumerate() {
            let why = if n == 0 {
                format!("the newest complete set of host `{host}`: always kept")
            } else {
                format!("one of the {keep} newest complete sets of host `{host}` (`retention.keep_last`)")
            };
            protected.insert(c.summary.dir.clone(), why);
        }
        // No set of this host checks out: keep its newest set with a manifest all the same.
        if !list.iter().any(|c| c.summary.complete && c.restorable) {
            if let Some(c) = list.iter().find(|c| c.summary.complete) {
                protected.insert(
                    c.summary.dir.clone(),
                    format!("the newest set with a manifest of host `{host}` (none of its sets checks out): kept"),
                );
            }
        }
    }
    let expires = |c: &Candidate| c.summary.created.map(|t| catalog::expires_on(c.summary.class, t, r));
    let due = |c: &Candidate| expires(c).is_some_and(|d| d <= today);
    // Sets referenced by a kept set are kept; references point at older sets, so walking
    // newest first sees every referrer before the sets it references.
    let mut order: Vec<&Candidate> = sets.iter().collect();
    order.sort_by(|a, b| b.summary.stamp.cmp(&a.summary.stamp));
    let mut kept_for: BTreeMap<String, String> = BTreeMap::new();
    for c in &order {
        let kept = !due(c) || protected.contains_key(&c.summary.dir) || kept_for.contains_key(&c.summary.dir);
        if !kept {
            continue;
        }
        for dir in references.get(&c.summary.dir).into_iter().flatten() {
            if dir != &c.summary.dir {
                kept_for.entry(dir.clone()).or_insert_with(|| c.summary.id().to_string());
            }
        }
    }
    let mut out: Vec<Decision> = sets
        .iter()
        .map(|c| {
            let s = &c.summary;
            let exp = expires(c);
            let (action, why) = if let Some(why) = protected.get(&s.dir) {
                (Action::Keep, why.clone())
            } else if let Some(by) = kept_for.get(&s.dir) {
                (Action::Keep, format!("set {by} references its mirrored objects"))
            } else if due(c) {
                (
                    Action::Delete,
                    format!(
                        "{} set older than {} days{}",
                        s.class,
                        s.class.keep_days(r),
                        if s.complete { "" } else { " (incomplete)" }
                    ),
                )
            } else {
                (Action::Keep, format!("within its {} days", s.class.keep_days(r)))
            };
            Decision {
                set: s.id().to_string(),
                dir: s.dir.clone(),
                complete: s.complete,
                objects: s.objects,
                bytes: s.bytes,
                expires_on: exp,
                action,
                why,
            }
        })
        .collect();
    out.sort_by(|a, b| a.set.cmp(&b.set));
    out
}

#[derive(Debug, Serialize)]
struct Report {
    destination: String,
    now: DateTime<Utc>,
    dry_run: bool,
    sets: Vec<Decision>,
    deleted_sets: usize,
    deleted_bytes: u64,
    /// Open multipart uploads of this tool started over a day ago.
    stale_uploads: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<String>,
}

/// Manifests read at once.
const IN_FLIGHT: usize = 8;
/// Uploads left open longer than this are dead runs' leftovers.
const STALE_UPLOAD_HOURS: i64 = 24;

pub async fn run(config: &Config, store: Arc<dyn Store>, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let now = clock::now();
    let prefix = &config.storage.prefix;
    let base = crate::catalog::prefix_dir(prefix);
    let objects = store.list(&base).await.with_context(|| format!("listing {}", store.describe()))?;
    let loaded = load_sets(&store, prefix, &objects).await?;
    let candidates: Vec<Candidate> = loaded.iter().map(|(c, _)| c.clone()).collect();
    // References matter only for sets that are kept: decide once without them, then read the
    // indexes of the kept sets that mirror buckets, and decide again.
    let first = decide(&candidates, config, now, &BTreeMap::new());
    let references = kept_references(&store, config, &loaded, &first).await?;
    let decisions = decide(&candidates, config, now, &references);

    let mut outcome = Outcome::default();
    if !dry_run {
        delete_expired(store.as_ref(), &decisions, &objects, &mut outcome).await;
    }
    let stale: Vec<OpenUpload> = store
        .list_open_uploads(&base)
        .await
        .with_context(|| format!("listing open uploads in {}", store.describe()))?
        .into_iter()
        .filter(|u| is_set_key(prefix, &u.key))
        .filter(|u| u.initiated.is_some_and(|t| now - t > chrono::Duration::hours(STALE_UPLOAD_HOURS)))
        .collect();
    if !dry_run {
        abort_stale(store.as_ref(), &stale, &mut outcome).await;
    }

    let report = Report {
        destination: store.describe(),
        now,
        dry_run,
        deleted_sets: outcome.deleted_sets,
        deleted_bytes: outcome.deleted_bytes,
        stale_uploads: stale.iter().map(|u| u.key.clone()).collect(),
        failures: outcome.failures.clone(),
        sets: decisions,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    outcome.into_result()
}

/// The objects of the set directory `dir`: a listing is sorted by key, so they are one run of it.
fn in_dir(objects: &[ObjectInfo], dir: &str) -> Vec<ObjectInfo> {
    let start = objects.partition_point(|o| o.key.as_str() < dir);
    objects[start..].iter().take_while(|o| o.key.starts_with(dir)).cloned().collect()
}

/// Every set with its manifest: whether it checks out, and what its kept sets reference. A
/// manifest that cannot be read or parsed stops prune before anything is deleted: which set
/// of its host is the newest restorable one (the one that must stay) is then unknown.
async fn load_sets(
    store: &Arc<dyn Store>,
    prefix: &str,
    objects: &[ObjectInfo],
) -> anyhow::Result<Vec<(Candidate, Option<Manifest>)>> {
    let loaded: Vec<anyhow::Result<(Candidate, Option<Manifest>)>> = futures::stream::iter(group_sets(prefix, objects))
        .map(|summary| {
            let store = store.clone();
            let mine = in_dir(objects, &summary.dir);
            async move {
                if !summary.complete {
                    return Ok((Candidate { summary, restorable: false }, None));
                }
                let id = summary.id();
                let manifest = read_manifest(store.as_ref(), &id.key(prefix, MANIFEST)).await?;
                let restorable = check_manifest(&id, prefix, &manifest, &mine).is_ok();
                Ok((Candidate { summary, restorable }, Some(manifest)))
            }
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    loaded.into_iter().collect()
}

/// The set directories that each kept set mirroring buckets references (its objects may live
/// in older sets).
async fn kept_references(
    store: &Arc<dyn Store>,
    config: &Config,
    loaded: &[(Candidate, Option<Manifest>)],
    decisions: &[Decision],
) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut references = BTreeMap::new();
    for (c, m) in loaded {
        let Some(m) = m else { continue };
        let kept = decisions.iter().any(|d| d.dir == c.summary.dir && d.action == Action::Keep);
        if kept && m.objects.iter().any(|o| o.kind == catalog::Kind::MirrorIndex) {
            let dirs = mirror::referenced_sets(store, m, config)
                .await
                .with_context(|| format!("reading what set {} references", c.summary.id()))?;
            references.insert(c.summary.dir.clone(), dirs);
        }
    }
    Ok(references)
}

/// What prune did, and what it could not do.
#[derive(Default)]
struct Outcome {
    deleted_sets: usize,
    deleted_bytes: u64,
    failures: Vec<String>,
    /// A failure was the store refusing these credentials.
    denied: bool,
}

impl Outcome {
    fn into_result(self) -> anyhow::Result<()> {
        let Some(first) = self.failures.first() else { return Ok(()) };
        Err(Failure::new(
            ErrClass::Storage,
            format!("prune failed for {} item(s); first: {first}", self.failures.len()),
        )
        .with_hint(if self.denied {
            "prune needs s3:DeleteObject and s3:AbortMultipartUpload, which the backup's credentials should not have: run it with the admin credentials (README, Minimal permissions)"
        } else {
            "a set whose manifest was deleted shows as INCOMPLETE in `list` and is pruned again next time"
        })
        .into())
    }
}

async fn delete_expired(store: &dyn Store, decisions: &[Decision], objects: &[ObjectInfo], outcome: &mut Outcome) {
    for d in decisions.iter().filter(|d| d.action == Action::Delete) {
        match delete_set(store, &d.dir, in_dir(objects, &d.dir)).await {
            Ok(()) => {
                outcome.deleted_sets += 1;
                outcome.deleted_bytes += d.bytes;
                tracing::info!(set = %d.set, bytes = d.bytes, "pruned: {}", d.why);
            }
            Err(e) => {
                tracing::error!(set = %d.set, error = %format!("{e:#}"), "could not prune the set");
                outcome.denied |=
                    e.chain().any(|c| matches!(c.downcast_ref::<StoreError>(), Some(StoreError::AccessDenied { .. })));
                outcome.failures.push(format!("set {}: {e:#}", d.set));
            }
        }
    }
}

async fn abort_stale(store: &dyn Store, stale: &[OpenUpload], outcome: &mut Outcome) {
    for u in stale {
        match store.abort_upload(u).await {
            Ok(()) => tracing::info!(key = %u.key, "aborted an upload left open for over a day"),
            Err(e) => {
                outcome.denied |= matches!(e, StoreError::AccessDenied { .. });
                outcome.failures.push(format!("aborting the upload of `{}`: {e}", u.key))
            }
        }
    }
}

/// Reads and parses the manifest at `key`. A read failure is a storage error, an unparsable
/// manifest an integrity error; both say that nothing was deleted.
async fn read_manifest(store: &dyn Store, key: &str) -> anyhow::Result<Manifest> {
    let bytes = store.get_object(key).await.map_err(|e| {
        Failure::new(ErrClass::Storage, format!("cannot read manifest `{key}`: {e}; prune deleted nothing"))
            .with_hint("prune decides by every set's manifest: run it again once the store answers")
    })?;
    Manifest::from_json(&bytes).map_err(|e| {
        Failure::new(ErrClass::Integrity, format!("manifest `{key}` cannot be parsed ({e}); prune deleted nothing"))
            .with_hint(
                "prune decides by every set's manifest: check the set with `seatable-backup verify`; a set whose manifest is damaged for good must be deleted by hand before prune runs again",
            )
            .into()
    })
}

/// A key inside a set (`<prefix>/<class>/<host>/<stamp>/...`).
fn is_set_key(prefix: &str, key: &str) -> bool {
    !group_sets(prefix, &[ObjectInfo { key: key.to_string(), size: 0, last_modified: None, etag: None }]).is_empty()
}

/// Deletes a set: its manifest first, then everything else under its directory.
async fn delete_set(store: &dyn Store, dir: &str, objects: Vec<ObjectInfo>) -> anyhow::Result<()> {
    let manifest = format!("{dir}{MANIFEST}");
    if objects.iter().any(|o| o.key == manifest) {
        store.delete(&manifest).await.with_context(|| format!("deleting `{manifest}`"))?;
    }
    let rest: Vec<String> = objects.into_iter().map(|o| o.key).filter(|k| *k != manifest).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(rest)
        .map(|k| async move { store.delete(&k).await.with_context(|| format!("deleting `{k}`")) })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect()
}

fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Prune of {} at {}{}",
        r.destination,
        r.now.format("%Y-%m-%d %H:%M:%S UTC"),
        if r.dry_run { " (dry run: nothing deleted)" } else { "" }
    );
    if r.sets.is_empty() {
        let _ = writeln!(s, "No sets.");
    }
    for d in &r.sets {
        let verb = match (d.action, r.dry_run) {
            (Action::Keep, _) => "keep",
            (Action::Delete, true) => "would delete",
            (Action::Delete, false) => "delete",
        };
        let _ = writeln!(
            s,
            "  {verb:<12} {:<48} {:>10}  expires {}  {}",
            d.set,
            human_bytes(d.bytes),
            d.expires_on.map(|e| e.to_string()).unwrap_or_else(|| "?".into()),
            d.why
        );
    }
    let to_delete: Vec<&Decision> = r.sets.iter().filter(|d| d.action == Action::Delete).collect();
    let bytes: u64 = to_delete.iter().map(|d| d.bytes).sum();
    if r.dry_run {
        let _ = writeln!(s, "Would delete {} set(s), {}.", to_delete.len(), human_bytes(bytes));
    } else {
        let _ = writeln!(s, "Deleted {} set(s), {}.", r.deleted_sets, human_bytes(r.deleted_bytes));
    }
    if !r.stale_uploads.is_empty() {
        let _ = writeln!(
            s,
            "{} {} upload(s) left open for over a day: {}",
            if r.dry_run { "Would abort" } else { "Aborted" },
            r.stale_uploads.len(),
            r.stale_uploads.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{parse_stamp, SetClass};

    fn config(keep_last: u32) -> Config {
        let mut c = Config::from_toml("", std::path::Path::new("/x.toml")).unwrap();
        c.retention.keep_last = keep_last;
        c
    }

    fn cand(class: SetClass, host: &str, stamp: &str, complete: bool) -> Candidate {
        Candidate {
            summary: SetSummary {
                class,
                host: host.into(),
                stamp: stamp.into(),
                complete,
                objects: 2,
                bytes: 10,
                created: parse_stamp(stamp),
                dir: format!("p/{class}/{host}/{stamp}/"),
            },
            restorable: complete,
        }
    }

    fn action_of<'a>(d: &'a [Decision], set: &str) -> &'a Decision {
        d.iter().find(|x| x.set == set).unwrap()
    }

    #[test]
    fn ages_follow_the_lifecycle_rules() {
        let now = parse_stamp("2026-12-20T030000Z").unwrap();
        let sets = [
            cand(SetClass::Monthly, "a", "2026-11-01T020000Z", true),
            cand(SetClass::Weekly, "a", "2026-11-09T020000Z", true), // expires 12-15
            cand(SetClass::Weekly, "a", "2026-11-16T020000Z", true), // expires 12-22
            cand(SetClass::Daily, "a", "2026-12-12T020000Z", true),  // expires 12-20: due today
            cand(SetClass::Daily, "a", "2026-12-13T020000Z", true),  // expires 12-21
            cand(SetClass::Daily, "a", "2026-12-01T020000Z", false),
            cand(SetClass::Daily, "a", "2026-12-19T020000Z", true),
        ];
        let d = decide(&sets, &config(0), now, &BTreeMap::new());
        assert_eq!(action_of(&d, "monthly/a/2026-11-01T020000Z").action, Action::Keep);
        assert_eq!(action_of(&d, "weekly/a/2026-11-09T020000Z").action, Action::Delete);
        assert_eq!(action_of(&d, "weekly/a/2026-11-16T020000Z").action, Action::Keep);
        assert_eq!(action_of(&d, "daily/a/2026-12-12T020000Z").action, Action::Delete);
        assert_eq!(action_of(&d, "daily/a/2026-12-13T020000Z").action, Action::Keep);
        let inc = action_of(&d, "daily/a/2026-12-01T020000Z");
        assert_eq!(inc.action, Action::Delete);
        assert!(inc.why.contains("incomplete"));
    }

    #[test]
    fn the_newest_complete_set_of_every_host_stays() {
        let now = parse_stamp("2027-06-01T000000Z").unwrap();
        let sets = [
            cand(SetClass::Daily, "a", "2026-12-01T020000Z", true),
            cand(SetClass::Daily, "a", "2026-12-02T020000Z", true),
            cand(SetClass::Daily, "a", "2026-12-03T020000Z", false),
            cand(SetClass::Daily, "b", "2026-10-01T020000Z", true),
        ];
        let d = decide(&sets, &config(0), now, &BTreeMap::new());
        assert_eq!(action_of(&d, "daily/a/2026-12-01T020000Z").action, Action::Delete);
        assert_eq!(action_of(&d, "daily/a/2026-12-02T020000Z").action, Action::Keep);
        assert_eq!(action_of(&d, "daily/a/2026-12-03T020000Z").action, Action::Delete);
        assert_eq!(action_of(&d, "daily/b/2026-10-01T020000Z").action, Action::Keep);
        let d = decide(&sets, &config(2), now, &BTreeMap::new());
        assert_eq!(action_of(&d, "daily/a/2026-12-01T020000Z").action, Action::Keep);
    }

    #[test]
    fn a_damaged_newest_set_does_not_protect_itself_alone() {
        let now = parse_stamp("2027-06-01T000000Z").unwrap();
        let mut damaged = cand(SetClass::Daily, "a", "2026-12-02T020000Z", true);
        damaged.restorable = false;
        let sets = [cand(SetClass::Daily, "a", "2026-12-01T020000Z", true), damaged];
        let d = decide(&sets, &config(0), now, &BTreeMap::new());
        assert_eq!(action_of(&d, "daily/a/2026-12-01T020000Z").action, Action::Keep);
        assert_eq!(action_of(&d, "daily/a/2026-12-02T020000Z").action, Action::Delete);
    }

    #[test]
    fn sets_referenced_by_kept_sets_stay() {
        let now = parse_stamp("2027-06-01T000000Z").unwrap();
        let sets = [
            cand(SetClass::Monthly, "a", "2026-01-01T020000Z", true),
            cand(SetClass::Daily, "a", "2026-01-02T020000Z", true),
        ];
        let refs = BTreeMap::from([(
            "p/daily/a/2026-01-02T020000Z/".to_string(),
            BTreeSet::from(["p/monthly/a/2026-01-01T020000Z/".to_string()]),
        )]);
        let d = decide(&sets, &config(0), now, &refs);
        let m = action_of(&d, "monthly/a/2026-01-01T020000Z");
        assert_eq!(m.action, Action::Keep);
        assert!(m.why.contains("references"), "{}", m.why);
    }

    /// The local store, with every deletion recorded, one key that cannot be deleted and one
    /// that cannot be read.
    struct FailingDeletes {
        inner: crate::store::local::LocalStore,
        stuck: String,
        unreadable: String,
        deleted: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Store for FailingDeletes {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        async fn preflight(&self) -> Result<(), crate::store::StoreError> {
            self.inner.preflight().await
        }
        async fn put_object(&self, key: &str, body: bytes::Bytes) -> Result<(), crate::store::StoreError> {
            self.inner.put_object(key, body).await
        }
        async fn create_upload(
            &self,
            key: &str,
        ) -> Result<Arc<dyn crate::store::MultipartUpload>, crate::store::StoreError> {
            self.inner.create_upload(key).await
        }
        async fn get_object(&self, key: &str) -> Result<bytes::Bytes, crate::store::StoreError> {
            if key == self.unreadable {
                return Err(crate::store::StoreError::Unreachable { target: key.into(), detail: "injected".into() });
            }
            self.inner.get_object(key).await
        }
        async fn get_stream(&self, key: &str) -> Result<crate::store::ByteReader, crate::store::StoreError> {
            self.inner.get_stream(key).await
        }
        async fn get_range(
            &self,
            key: &str,
            start: u64,
            len: u64,
        ) -> Result<Vec<bytes::Bytes>, crate::store::StoreError> {
            self.inner.get_range(key, start, len).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, crate::store::StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), crate::store::StoreError> {
            if key == self.stuck {
                return Err(crate::store::StoreError::AccessDenied { target: key.into(), detail: "injected".into() });
            }
            self.deleted.lock().unwrap().push(key.to_string());
            self.inner.delete(key).await
        }
        async fn list_open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, crate::store::StoreError> {
            self.inner.list_open_uploads(prefix).await
        }
        async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), crate::store::StoreError> {
            self.inner.abort_upload(upload).await
        }
    }

    #[tokio::test]
    async fn a_set_loses_its_manifest_first_so_a_cut_short_prune_leaves_it_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let set = "p/daily/h/2026-12-01T020000Z/";
        let store = FailingDeletes {
            inner: crate::store::local::LocalStore::new(dir.path().to_path_buf()),
            stuck: format!("{set}data/seatable.tar.zst"),
            unreadable: String::new(),
            deleted: Default::default(),
        };
        for name in ["db/a.sql.zst", "data/seatable.tar.zst", "manifest.json", "db/b.sql.zst"] {
            store.put_object(&format!("{set}{name}"), bytes::Bytes::from_static(b"x")).await.unwrap();
        }
        let objects = store.list(set).await.unwrap();
        let err = delete_set(&store, set, objects).await.unwrap_err();
        assert!(format!("{err:#}").contains("data/seatable.tar.zst"), "{err:#}");
        assert_eq!(store.deleted.lock().unwrap()[0], format!("{set}manifest.json"));
        let left = group_sets("p", &store.list("p/").await.unwrap());
        assert_eq!(left.len(), 1);
        assert!(!left[0].complete, "a half-pruned set must show as incomplete");
    }

    /// A complete set of host `h`: one object and a manifest that checks out against it.
    async fn put_set(store: &dyn Store, stamp: &str) -> String {
        use sha2::Digest;
        let id = catalog::SetId { class: SetClass::Daily, host: "h".into(), stamp: stamp.into() };
        let key = id.key("p", "db/ccnet_db.sql.zst");
        let body = bytes::Bytes::from(format!("dump of {stamp}"));
        store.put_object(&key, body.clone()).await.unwrap();
        let t = parse_stamp(stamp).unwrap();
        let manifest = Manifest {
            schema: catalog::SCHEMA_VERSION,
            tool: "seatable-backup".into(),
            tool_version: "test".into(),
            host: "h".into(),
            class: SetClass::Daily,
            stamp: stamp.into(),
            started_at: t,
            finished_at: t,
            layout: "custom".into(),
            source: Default::default(),
            objects: vec![catalog::ObjectEntry {
                component: "db/ccnet_db".into(),
                key,
                kind: catalog::Kind::MysqlDump,
                compression: "zstd".into(),
                compression_level: 3,
                stored_size: body.len() as u64,
                raw_size: body.len() as u64,
                sha256: hex::encode(sha2::Sha256::digest(&body)),
                parts: 1,
                database: Some("ccnet_db".into()),
                excluded_tables: vec![],
                only_tables: vec![],
                tar: None,
                mirror: None,
                chunk_size: 0,
                chunk_sha256: vec![],
            }],
            skipped: vec![],
            warnings: vec![],
            seatable: None,
            requires: vec![],
        };
        let key = id.key("p", MANIFEST);
        store.put_object(&key, manifest.to_json().into()).await.unwrap();
        key
    }

    #[tokio::test]
    async fn an_unreadable_manifest_stops_prune_before_it_deletes_anything() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FailingDeletes {
            inner: crate::store::local::LocalStore::new(dir.path().to_path_buf()),
            stuck: String::new(),
            unreadable: String::new(),
            deleted: Default::default(),
        };
        put_set(&store, "2025-01-01T020000Z").await;
        put_set(&store, "2025-01-02T020000Z").await;
        store.unreadable = put_set(&store, "2025-01-03T020000Z").await;
        let store = Arc::new(store);
        let before = store.list("p/").await.unwrap();
        let mut config = config(0);
        config.storage.prefix = "p".into();
        let err = run(&config, store.clone(), false, true).await.unwrap_err();
        assert_eq!(crate::exit::class_of(&err), ErrClass::Storage, "{err:#}");
        assert!(format!("{err:#}").contains(&store.unreadable), "{err:#}");
        assert!(store.deleted.lock().unwrap().is_empty(), "deleted {:?}", store.deleted.lock().unwrap());
        assert_eq!(store.list("p/").await.unwrap(), before);

        // Read, it is the newest complete set and the only one kept.
        let unreadable = store.unreadable.clone();
        let store = Arc::new(FailingDeletes {
            inner: crate::store::local::LocalStore::new(dir.path().to_path_buf()),
            stuck: String::new(),
            unreadable: String::new(),
            deleted: Default::default(),
        });
        run(&config, store.clone(), false, true).await.unwrap();
        let left = group_sets("p", &store.list("p/").await.unwrap());
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(unreadable.starts_with(&left[0].dir));
    }

    #[test]
    fn set_keys_are_recognised() {
        assert!(is_set_key("p", "p/daily/h/2026-12-01T020000Z/db/x.sql.zst"));
        assert!(!is_set_key("p", "p/other/thing"));
        assert!(!is_set_key("p", "q/daily/h/2026-12-01T020000Z/db/x.sql.zst"));
    }
}
