//! Mirroring the S3 buckets SeaTable keeps its bases and files in (dtable-storage-server,
//! seafile, avatars) into the backup set, and putting them back.
//!
//! Each mirrored bucket has an index object in the set, `objects/<bucket>.index.jsonl.zst`:
//! one JSON line per object of the bucket (its key, size and ETag, and the key `at` which the
//! backup destination holds its bytes). The objects themselves go under
//! `<set>/objects/<bucket>/<key>`.
//!
//! Incremental: an object whose size and ETag are those the previous set's index recorded is
//! not copied again but referenced where that index says it is, PROVIDED the set holding it
//! outlives the new one under the retention rules (lifecycle rules expire each set's objects
//! on their own; a reference into a set that expires first would leave the new set damaged).
//! So daily sets reference the monthly and weekly sets before them, and a set copies what
//! changed since. Copies are server-side (`CopyObject`) when SeaTable's store and the backup
//! destination are the same endpoint and the credentials allow it, streamed otherwise; an
//! SSE-C key configured for SeaTable's bucket is sent with every read of it.
//!
//! Memory: the listing and the index are held in memory, about 150 bytes per object of the
//! bucket; object bodies are streamed within the upload budget.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::catalog::{self, Kind, Manifest, MirrorSummary, ObjectEntry, SetClass, SetId};
use crate::codec;
use crate::config::{Algorithm, CompressionConfig, Config, Destination, RequestChecksums, S3Settings};
use crate::error::{integrity, source, storage};
use crate::run::Written;
use crate::seatable::storage::{Backend, S3Credentials, S3Location, StorageBackends};
use crate::store::s3::{S3Store, SseC};
use crate::store::upload;
use crate::store::{check_key, copy_from, CopySource, ObjectInfo, Store};

/// One object of a mirrored bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexLine {
    /// Its key in SeaTable's bucket.
    pub key: String,
    pub size: u64,
    #[serde(default)]
    pub etag: String,
    /// Where the backup destination holds it (this set, or an earlier one).
    pub at: String,
}

/// One of SeaTable's buckets, with what is needed to read (or write) it.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub location: S3Location,
    pub credentials: Option<S3Credentials>,
    /// What SeaTable keeps there.
    pub users: Vec<String>,
}

/// SeaTable's S3 buckets, each once, with every use of it.
pub fn buckets_of(st: &StorageBackends) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    let mut add = |user: String, location: &S3Location, credentials: Option<&S3Credentials>| {
        if let Some(b) = out.iter_mut().find(|b| b.location.bucket == location.bucket) {
            b.users.push(user);
        } else {
            out.push(Bucket { location: location.clone(), credentials: credentials.cloned(), users: vec![user] });
        }
    };
    if let Backend::S3 { location, credentials } = &st.dtable_storage.value {
        add("dtable-storage-server".into(), location, credentials.as_ref());
    }
    for (kind, b) in &st.seafile {
        if let Backend::S3 { location, credentials } = &b.value {
            add(kind.user().to_string(), location, credentials.as_ref());
        }
    }
    if let Some(a) = &st.avatar {
        // The avatar bucket shares the `S3_*` settings of `.env` (6.2): take the credentials of
        // a backend that agrees with it on SSE-C (the conf files' may lack the `.env` key).
        let all: Vec<&S3Credentials> = std::iter::once(&st.dtable_storage)
            .chain(st.seafile.iter().map(|(_, b)| b))
            .filter_map(|b| b.value.credentials())
            .collect();
        let creds = all.iter().find(|c| c.sse_c_key.is_some() == a.value.sse_c).or(all.first()).map(|c| (*c).clone());
        add("avatars".into(), &a.value, creds.as_ref());
    }
    out
}

/// A store over one of SeaTable's buckets, with its own endpoint, credentials and SSE-C key.
pub async fn open_bucket(b: &Bucket, checksums: RequestChecksums) -> anyhow::Result<S3Store> {
    let settings = S3Settings {
        endpoint: b.location.endpoint(),
        region: b.location.region.clone().or_else(|| Some("us-east-1".into())),
        path_style: b.location.path_style,
        request_checksums: checksums,
        credentials: b.credentials.as_ref().map(|c| (c.key_id.clone(), c.secret.clone())),
    };
    let sse_c = match b.credentials.as_ref().and_then(|c| c.sse_c_key.as_ref()) {
        Some(k) => {
            Some(SseC::from_key(k).map_err(|e| source(format!("SSE-C key of bucket `{}`: {e}", b.location.bucket)))?)
        }
        None if b.location.sse_c => {
            return Err(source(format!(
                "bucket `{}` is SSE-C encrypted but no key is configured for it",
                b.location.bucket
            )))
        }
        None => None,
    };
    Ok(S3Store::new(&b.location.bucket, &settings).await?.with_sse_c(sse_c))
}

/// Where a set keeps an object of a mirrored bucket. Keys our stores cannot hold as they are
/// (empty segments, `..`, control characters) are kept under their SHA-256.
fn stored_key(id: &SetId, prefix: &str, bucket: &str, key: &str) -> String {
    let plain = id.key(prefix, &format!("objects/{bucket}/{key}"));
    if check_key(&plain).is_ok() && plain.len() <= 1000 {
        plain
    } else {
        use sha2::Digest;
        id.key(prefix, &format!("objects/{bucket}/~sha256/{}", hex::encode(sha2::Sha256::digest(key.as_bytes()))))
    }
}

/// The set a stored key belongs to.
fn holder_of(prefix: &str, at: &str) -> Option<(SetClass, String)> {
    let rest = if prefix.is_empty() { at } else { at.strip_prefix(prefix)?.strip_prefix('/')? };
    let mut it = rest.splitn(4, '/');
    let (class, _host, stamp) = (SetClass::parse(it.next()?)?, it.next()?, it.next()?);
    catalog::parse_stamp(stamp)?;
    Some((class, stamp.to_string()))
}

/// The newest complete earlier set of this host that mirrored `bucket`: its index, by key.
pub async fn previous_index(
    store: &Arc<dyn Store>,
    config: &Config,
    bucket: &str,
    before: &str,
) -> anyhow::Result<HashMap<String, IndexLine>> {
    let prefix = &config.storage.prefix;
    let mut sets: Vec<_> = catalog::host_sets(store.as_ref(), prefix, &config.host)
        .await?
        .into_iter()
        .filter(|s| s.complete && s.stamp.as_str() < before)
        .collect();
    sets.sort_by(|a, b| b.stamp.cmp(&a.stamp));
    for s in sets {
        let bytes = match store.get_object(&s.id().key(prefix, catalog::MANIFEST)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(set = %s.id(), error = %e, "cannot read the manifest of an earlier set; not used for references");
                continue;
            }
        };
        let Ok(m) = Manifest::from_json(&bytes) else { continue };
        if let Some(o) = m.objects.iter().find(|o| o.kind == Kind::MirrorIndex && mirrored_bucket(o) == Some(bucket)) {
            let lines =
                read_index(store, o, config).await.with_context(|| format!("reading the index of set {}", s.id()))?;
            return Ok(lines.into_iter().map(|l| (l.key.clone(), l)).collect());
        }
    }
    Ok(HashMap::new())
}

/// The directories (`<prefix>/<class>/<host>/<stamp>/`) of the other sets whose objects the
/// set of `manifest` references from its mirror indexes: they must outlive it.
pub async fn referenced_sets(
    store: &Arc<dyn Store>,
    manifest: &Manifest,
    config: &Config,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let prefix = &config.storage.prefix;
    let base = crate::catalog::prefix_dir(prefix);
    let mut dirs = std::collections::BTreeSet::new();
    for o in manifest.objects.iter().filter(|o| o.kind == Kind::MirrorIndex) {
        for line in read_index(store, o, config).await.with_context(|| format!("reading index `{}`", o.key))? {
            let Some(rest) = line.at.strip_prefix(&base) else { continue };
            let mut it = rest.splitn(4, '/');
            if let (Some(class), Some(host), Some(stamp), Some(_)) = (it.next(), it.next(), it.next(), it.next()) {
                if holder_of(prefix, &line.at).is_some() {
                    dirs.insert(format!("{base}{class}/{host}/{stamp}/"));
                }
            }
        }
    }
    Ok(dirs)
}

fn mirrored_bucket(o: &ObjectEntry) -> Option<&str> {
    o.mirror.as_ref().map(|m| m.bucket.as_str())
}

/// Reads an index object, checking its size and SHA-256.
pub async fn read_index(store: &Arc<dyn Store>, o: &ObjectEntry, config: &Config) -> anyhow::Result<Vec<IndexLine>> {
    use crate::store::download::{fetch_verified, DownloadPolicy};
    let policy = DownloadPolicy::from_upload(&config.storage.upload);
    let (chunks, state) = fetch_verified(store.clone(), &o.key, o.expected()?, policy);
    let mut reader =
        codec::decompress(tokio::io::BufReader::new(tokio_util::io::StreamReader::new(chunks)), Algorithm::Zstd);
    let mut text = Vec::new();
    if let Err(e) = reader.read_to_end(&mut text).await {
        return Err(state.failure().unwrap_or_else(|| integrity(format!("index `{}` is corrupt: {e}", o.key))));
    }
    state.verified(&o.key)?;
    let mut lines = Vec::new();
    for (n, line) in text.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
        lines.push(
            serde_json::from_slice::<IndexLine>(line)
                .map_err(|e| integrity(format!("index `{}` line {}: {e}", o.key, n + 1)))?,
        );
    }
    Ok(lines)
}

/// Copies one object into `dest` under `key`: server-side where possible, else streamed.
/// Returns the bytes stored and whether it was a server-side copy.
async fn copy_one(
    src: &S3Store,
    dest: &Arc<dyn Store>,
    obj: &ObjectInfo,
    key: &str,
    config: &Config,
    open: &upload::OpenUploads,
) -> anyhow::Result<(u64, bool)> {
    if copy_from(dest.as_ref(), &src.copy_source(&obj.key, obj.size), key).await? {
        return Ok((obj.size, true));
    }
    let reader = src.get_stream(&obj.key).await?;
    let staged = upload::stage(dest, key, tokio::io::BufReader::new(reader), &config.storage.upload, open).await?;
    let size = staged.stored.size;
    staged.commit().await?;
    Ok((size, false))
}

/// Mirrors one bucket into set `id`; returns the index object's manifest entry.
pub async fn backup_bucket(
    b: &Bucket,
    dest: &Arc<dyn Store>,
    config: &Config,
    id: &SetId,
    written: &Written,
) -> anyhow::Result<ObjectEntry> {
    let bucket = b.location.bucket.as_str();
    let prefix = &config.storage.prefix;
    let src = open_bucket(b, config.storage.s3.request_checksums).await?;
    let listing = src.list("").await.with_context(|| format!("listing SeaTable's bucket `{bucket}`"))?;
    for o in &listing {
        check_key(&o.key).map_err(|e| {
            storage(format!("object `{}` of SeaTable's bucket `{bucket}` cannot be mirrored: {e}", o.key))
        })?;
    }
    let previous = previous_index(dest, config, bucket, &id.stamp).await?;
    let now = catalog::parse_stamp(&id.stamp).unwrap_or_else(chrono::Utc::now);
    let new_expiry = catalog::expires_on(id.class, now, &config.retention);
    let outlives = |at: &str| {
        holder_of(prefix, at).is_some_and(|(class, stamp)| {
            catalog::parse_stamp(&stamp).is_some_and(|t| catalog::expires_on(class, t, &config.retention) >= new_expiry)
        })
    };

    let mut summary = MirrorSummary {
        bucket: bucket.to_string(),
        endpoint: b.location.endpoint(),
        users: b.users.clone(),
        sse_c: b.location.sse_c,
        ..Default::default()
    };
    let mut index: BTreeMap<String, IndexLine> = BTreeMap::new();
    let mut to_copy = Vec::new();
    for o in &listing {
        summary.objects += 1;
        summary.bytes += o.size;
        let etag = o.etag.clone().unwrap_or_default();
        match previous.get(&o.key) {
            Some(p) if p.size == o.size && !etag.is_empty() && p.etag == etag && outlives(&p.at) => {
                summary.referenced_objects += 1;
                summary.referenced_bytes += o.size;
                index.insert(o.key.clone(), p.clone());
            }
            _ => to_copy.push(o.clone()),
        }
    }
    tracing::info!(
        bucket,
        objects = summary.objects,
        to_copy = to_copy.len(),
        referenced = summary.referenced_objects,
        "mirroring SeaTable's bucket"
    );

    // Small objects several at a time (each fits one part); large ones one after the other,
    // each with the whole upload budget: memory stays within `part_size x parts_in_flight`.
    let part = config.storage.upload.part_size;
    let (small, large): (Vec<ObjectInfo>, Vec<ObjectInfo>) = to_copy.into_iter().partition(|o| o.size < part);
    let copy = |o: ObjectInfo| {
        let src = &src;
        async move {
            let key = stored_key(id, prefix, bucket, &o.key);
            let (size, server_side) = copy_one(src, dest, &o, &key, config, written.uploads())
                .await
                .with_context(|| format!("mirroring object `{}` of bucket `{bucket}`", o.key))?;
            written.push(&key);
            Ok::<_, anyhow::Error>((o, key, size, server_side))
        }
    };
    let mut done: Vec<(ObjectInfo, String, u64, bool)> = futures::stream::iter(small)
        .map(copy)
        .buffer_unordered(config.storage.upload.parts_in_flight.max(1))
        .try_collect()
        .await?;
    for o in large {
        done.push(copy(o).await?);
    }
    for (o, key, size, server_side) in done {
        if size != o.size {
            tracing::warn!(bucket, key = %o.key, listed = o.size, copied = size, "object changed while it was mirrored");
        }
        summary.copied_objects += 1;
        summary.copied_bytes += size;
        summary.server_side_copies += u64::from(server_side);
        index.insert(o.key.clone(), IndexLine { key: o.key, size, etag: o.etag.unwrap_or_default(), at: key });
    }

    write_index(dest, config, id, index, summary, written).await
}

/// Writes a mirrored bucket's index (sorted by key) into the set and commits it; returns its
/// manifest entry.
async fn write_index(
    dest: &Arc<dyn Store>,
    config: &Config,
    id: &SetId,
    index: BTreeMap<String, IndexLine>,
    summary: MirrorSummary,
    written: &Written,
) -> anyhow::Result<ObjectEntry> {
    let bucket = summary.bucket.clone();
    let mut text = Vec::new();
    for line in index.values() {
        text.extend_from_slice(&serde_json::to_vec(line)?);
        text.push(b'\n');
    }
    let raw = text.len() as u64;
    let zstd = CompressionConfig { algorithm: Algorithm::Zstd, ..config.compression };
    let reader = codec::compress(tokio::io::BufReader::new(std::io::Cursor::new(text)), &zstd);
    let key = id.key(&config.storage.prefix, &catalog::mirror_index_name(&bucket));
    let staged = upload::stage(dest, &key, reader, &config.storage.upload, written.uploads()).await?;
    let entry = ObjectEntry {
        mirror: Some(summary),
        ..ObjectEntry::from_stored(&staged.stored, format!("objects/{bucket}"), Kind::MirrorIndex, &zstd, raw)
    };
    staged.commit().await?;
    written.push(&key);
    if let Some(m) = &entry.mirror {
        tracing::info!(
            bucket,
            objects = m.objects,
            copied = m.copied_objects,
            copied_bytes = m.copied_bytes,
            server_side = m.server_side_copies,
            referenced = m.referenced_objects,
            "mirrored SeaTable's bucket"
        );
    }
    Ok(entry)
}

/// Checks that every object an index names is stored where it says, with its size.
/// Returns the number of objects and bytes.
pub async fn check_index(store: &Arc<dyn Store>, lines: &[IndexLine], index_key: &str) -> anyhow::Result<(u64, u64)> {
    // One listing per directory the objects are held in (this set, and the sets it references).
    let mut dirs: BTreeMap<String, HashMap<String, u64>> = BTreeMap::new();
    for l in lines {
        let dir = match l.at.find("/objects/") {
            Some(i) => l.at[..i + "/objects/".len()].to_string(),
            None => return Err(integrity(format!("index `{index_key}` stores `{}` outside a set", l.key))),
        };
        dirs.entry(dir).or_default();
    }
    for (dir, objs) in dirs.iter_mut() {
        *objs = store.list(dir).await?.into_iter().map(|o| (o.key, o.size)).collect();
    }
    let mut bytes = 0;
    for l in lines {
        let dir = &l.at[..l.at.find("/objects/").map(|i| i + "/objects/".len()).unwrap_or(0)];
        match dirs.get(dir).and_then(|d| d.get(&l.at)) {
            Some(size) if *size == l.size => bytes += l.size,
            Some(size) => {
                return Err(integrity(format!(
                    "mirrored object `{}` is {size} bytes, index `{index_key}` says {}",
                    l.at, l.size
                )))
            }
            None => {
                return Err(integrity(format!("mirrored object `{}` named by index `{index_key}` is missing", l.at)))
            }
        }
    }
    Ok((lines.len() as u64, bytes))
}

/// The backup destination's side of a server-side copy, when it is an S3 bucket.
fn destination_copy_source(config: &Config, key: &str, size: u64) -> Option<CopySource> {
    match &config.storage.destination {
        Destination::S3 { bucket } => Some(CopySource {
            endpoint: config.storage.s3.endpoint.clone(),
            bucket: bucket.clone(),
            key: key.to_string(),
            size,
            sse_c: None,
        }),
        Destination::Local { .. } => None,
    }
}

/// What putting a bucket back did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RestoreReport {
    pub objects: u64,
    pub bytes: u64,
    /// Already there with the same size: left alone.
    pub unchanged: u64,
    pub server_side: u64,
}

/// Puts the objects of an index back into `target` (SeaTable's bucket on this host). Objects
/// already there with the same size are left alone; nothing is deleted.
pub async fn restore_bucket(
    backup: &Arc<dyn Store>,
    lines: Vec<IndexLine>,
    target: &Arc<dyn Store>,
    config: &Config,
    open: &upload::OpenUploads,
) -> anyhow::Result<RestoreReport> {
    let there: HashMap<String, u64> = target.list("").await?.into_iter().map(|o| (o.key, o.size)).collect();
    let mut report = RestoreReport::default();
    let todo: Vec<IndexLine> = lines
        .into_iter()
        .filter(|l| {
            let same = there.get(&l.key) == Some(&l.size);
            report.unchanged += u64::from(same);
            !same
        })
        .collect();
    let results: Vec<(u64, bool)> = futures::stream::iter(todo)
        .map(|l| {
            let target = &target;
            async move {
                let put = async {
                    if let Some(src) = destination_copy_source(config, &l.at, l.size) {
                        if copy_from(target.as_ref(), &src, &l.key).await? {
                            return Ok::<_, anyhow::Error>((l.size, true));
                        }
                    }
                    let reader = backup.get_stream(&l.at).await?;
                    let staged =
                        upload::stage(target, &l.key, tokio::io::BufReader::new(reader), &config.storage.upload, open)
                            .await?;
                    let size = staged.stored.size;
                    if size != l.size {
                        staged.abort().await;
                        return Err(integrity(format!(
                            "mirrored object `{}` is {size} bytes, the index says {}",
                            l.at, l.size
                        )));
                    }
                    staged.commit().await?;
                    Ok((size, false))
                };
                put.await.with_context(|| format!("restoring object `{}`", l.key))
            }
        })
        .buffer_unordered(config.storage.upload.parts_in_flight.max(1))
        .try_collect()
        .await?;
    for (size, server_side) in results {
        report.objects += 1;
        report.bytes += size;
        report.server_side += u64::from(server_side);
    }
    Ok(report)
}
