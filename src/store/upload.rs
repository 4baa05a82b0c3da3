//! The streaming uploader: reads a byte stream of unknown length into in-memory parts, hashes
//! the bytes as they pass, and uploads the parts with a bounded number in flight.
//!
//! Nothing becomes visible until [`Staged::commit`]: the caller first checks that the producer
//! of the stream succeeded (dump exit code, tar errors) and only then commits; otherwise it
//! calls [`Staged::abort`]. Any error while staging aborts the upload before returning.
//!
//! Memory: the part being filled plus at most `part_size * parts_in_flight` bytes of parts in
//! flight (a semaphore counted in MiB is the backpressure: no part is read before there is room
//! for it). When the part size grows past that budget, one part is in flight at a time.
//!
//! Part size: S3 allows 10,000 parts, so a stream of unknown length cannot use one size for all.
//! The size doubles every `max_parts / 10` parts (the default 8 MiB parts reach 8 TiB, past S3's
//! 5 TiB object limit);
//! `fixed` keeps one size for stores that need equal parts, and fails clearly when it runs out.
//!
//! Hashes: the SHA-256 of the whole object and one per [`CHUNK_SIZE`] range of it (see
//! [`ChunkHasher`]) are computed from the same borrowed bytes as each part is read, so chunk
//! boundaries do not depend on part boundaries, and a single PutObject and a multipart upload
//! of the same bytes get the same hashes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{MultipartUpload, PartReceipt, Store, StoreError};
use crate::config::{UploadPolicy, MAX_PART_SIZE};

const MIB: u64 = 1024 * 1024;

/// Bytes per chunk hash of a staged object (the manifest's `chunk_size`, see `catalog.rs`): a
/// restore holds one chunk (plus the ranged GETs in flight) before it hands any of it on, so
/// this bounds memory and the delay before the first byte, while keeping the manifest small
/// (a 10 GiB dump has 2,560 hashes).
pub const CHUNK_SIZE: u64 = 4 * 1024 * 1024;

/// The producer's stream broke (a Docker connection, a pipe): the source failed, not the store.
#[derive(Debug, thiserror::Error)]
#[error("reading the stream for `{key}`: {source}")]
pub struct ReadError {
    pub key: String,
    pub source: std::io::Error,
}

impl crate::error::Classify for ReadError {
    fn class(&self) -> crate::error::Class {
        crate::error::Class::Source
    }
}

/// The size of part `number` (from 1) under `policy`.
pub fn part_size_for(policy: &UploadPolicy, number: u32) -> u64 {
    if policy.fixed {
        return policy.part_size;
    }
    let tier_len = (policy.max_parts / 10).max(1);
    let tier = ((number.saturating_sub(1)) / tier_len).min(40);
    policy.part_size.saturating_mul(1u64 << tier).min(MAX_PART_SIZE)
}

/// The largest stream `policy` can store.
pub fn capacity(policy: &UploadPolicy) -> u64 {
    (1..=policy.max_parts).map(|n| part_size_for(policy, n)).sum()
}

// ---------------------------------------------------------------------------------------------
// Uploads in progress, so that a cancelled run can abort them.

/// The multipart uploads a run has open. The run owns it (`run::Written` holds one) and hands
/// it to every [`stage`]; a cancelled run aborts what is still open with [`OpenUploads::abort_all`].
#[derive(Clone, Default)]
pub struct OpenUploads {
    next: Arc<AtomicU64>,
    open: Arc<Mutex<HashMap<u64, Arc<dyn MultipartUpload>>>>,
}

impl std::fmt::Debug for OpenUploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.open.lock().map(|o| o.len()).unwrap_or(0);
        write!(f, "OpenUploads({n} open)")
    }
}

impl OpenUploads {
    fn register(&self, upload: Arc<dyn MultipartUpload>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, upload);
        }
        id
    }

    fn unregister(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    /// Aborts every upload still open (the run was cancelled). Returns how many.
    pub async fn abort_all(&self) -> usize {
        let uploads: Vec<_> = match self.open.lock() {
            Ok(mut open) => open.drain().map(|(_, u)| u).collect(),
            Err(_) => Vec::new(),
        };
        let n = uploads.len();
        for u in uploads {
            match u.abort().await {
                Ok(()) => tracing::warn!(key = %u.key(), "aborted the upload"),
                Err(e) => {
                    tracing::error!(key = %u.key(), error = %e, "could not abort the upload; the bucket's AbortIncompleteMultipartUpload rule will remove it")
                }
            }
        }
        n
    }
}

// ---------------------------------------------------------------------------------------------

/// The SHA-256 of a byte stream and of each consecutive `chunk_size` range of it, fed in pieces
/// of any size (each byte is read once per hash; nothing is copied).
pub struct ChunkHasher {
    chunk_size: u64,
    whole: Sha256,
    chunk: Sha256,
    /// Bytes in the current chunk so far.
    filled: u64,
    done: Vec<[u8; 32]>,
}

impl ChunkHasher {
    pub fn new(chunk_size: u64) -> Self {
        ChunkHasher {
            chunk_size: chunk_size.max(1),
            whole: Sha256::new(),
            chunk: Sha256::new(),
            filled: 0,
            done: Vec::new(),
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.whole.update(bytes);
        while !bytes.is_empty() {
            let n = ((self.chunk_size - self.filled) as usize).min(bytes.len());
            self.chunk.update(&bytes[..n]);
            self.filled += n as u64;
            bytes = &bytes[n..];
            if self.filled == self.chunk_size {
                self.done.push(self.chunk.finalize_reset().into());
                self.filled = 0;
            }
        }
    }

    /// The whole stream's SHA-256 and its chunks' (none for an empty stream).
    pub fn finish(mut self) -> ([u8; 32], Vec<[u8; 32]>) {
        if self.filled > 0 {
            self.done.push(self.chunk.finalize().into());
        }
        (self.whole.finalize().into(), self.done)
    }
}

/// What the store holds (or will hold, once committed) of an object: the uploader's result,
/// from which `catalog` makes the manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    /// Bytes stored (after compression).
    pub size: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: [u8; 32],
    /// Bytes per entry of `chunk_sha256` ([`CHUNK_SIZE`]).
    pub chunk_size: u64,
    /// SHA-256 of each `chunk_size` range of the stored bytes, the last one shorter.
    pub chunk_sha256: Vec<[u8; 32]>,
    /// Parts used (1 for a single PutObject).
    pub parts: u32,
}

/// An object whose bytes are all uploaded but not yet visible.
pub struct Staged {
    store: Arc<dyn Store>,
    state: State,
    pub stored: Stored,
}

enum State {
    Single(Bytes),
    Multipart { upload: Arc<dyn MultipartUpload>, receipts: Vec<PartReceipt>, open: OpenUploads, id: u64 },
}

impl Staged {
    pub fn key(&self) -> &str {
        &self.stored.key
    }

    /// Makes the object visible under its key.
    pub async fn commit(self) -> Result<(), StoreError> {
        let key = &self.stored.key;
        match self.state {
            State::Single(body) => self.store.put_object(key, body).await,
            State::Multipart { upload, receipts, open, id } => {
                let result = upload.complete(receipts).await;
                if result.is_err() {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(key = %key, error = %e, "could not abort the upload after a failed completion");
                    }
                }
                open.unregister(id);
                result
            }
        }
    }

    /// Drops the uploaded parts; nothing appears under the key.
    pub async fn abort(self) {
        if let State::Multipart { upload, open, id, .. } = self.state {
            if let Err(e) = upload.abort().await {
                tracing::error!(key = %self.stored.key, error = %e, "could not abort the upload; the bucket's AbortIncompleteMultipartUpload rule will remove it");
            }
            open.unregister(id);
        }
    }
}

/// Part buffers of one upload, recycled: a fresh mapping of 8 MiB costs 2,048 page faults, and
/// an upload of a large stream needs thousands of parts. At most `cap` idle buffers are kept.
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    cap: usize,
}

impl BufferPool {
    fn new(cap: usize) -> Self {
        BufferPool { free: Mutex::new(Vec::new()), cap }
    }

    /// A zeroed buffer of `size` bytes, recycled when one is big enough.
    fn take(&self, size: usize) -> Vec<u8> {
        let recycled = self.free.lock().ok().and_then(|mut f| {
            let i = f.iter().position(|b| b.capacity() >= size)?;
            Some(f.swap_remove(i))
        });
        let mut buf = recycled.unwrap_or_default();
        buf.clear();
        buf.resize(size, 0);
        buf
    }

    /// Takes a part's bytes back once nothing else holds them.
    fn give(&self, body: Bytes) {
        if let Ok(m) = body.try_into_mut() {
            let v: Vec<u8> = m.into();
            if let Ok(mut f) = self.free.lock() {
                if f.len() < self.cap {
                    f.push(v);
                }
            }
        }
    }
}

/// Reads up to `size` bytes; fewer only at the end of the stream.
async fn read_part<R: AsyncRead + Unpin>(reader: &mut R, size: u64, pool: &BufferPool) -> std::io::Result<Bytes> {
    let mut buf = pool.take(size as usize);
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

fn read_failed(key: &str, source: std::io::Error) -> anyhow::Error {
    ReadError { key: key.to_string(), source }.into()
}

/// Reads `reader` to its end into the store under `key`, without making it visible; the
/// multipart upload is registered in `open` until it is committed or aborted.
///
/// `reader` errors (the producer failed) and store errors abort the upload and are returned.
pub async fn stage<R: AsyncRead + Unpin + Send>(
    store: &Arc<dyn Store>,
    key: &str,
    mut reader: R,
    policy: &UploadPolicy,
    open: &OpenUploads,
) -> anyhow::Result<Staged> {
    let mut hasher = ChunkHasher::new(CHUNK_SIZE);
    let pool = Arc::new(BufferPool::new(policy.parts_in_flight + 1));
    let first = read_part(&mut reader, part_size_for(policy, 1), &pool).await.map_err(|e| read_failed(key, e))?;
    hasher.update(&first);
    if (first.len() as u64) < part_size_for(policy, 1) {
        let size = first.len() as u64;
        let (sha256, chunk_sha256) = hasher.finish();
        return Ok(Staged {
            store: store.clone(),
            state: State::Single(first),
            stored: Stored { key: key.to_string(), size, sha256, chunk_size: CHUNK_SIZE, chunk_sha256, parts: 1 },
        });
    }

    let upload = store.create_upload(key).await?;
    let id = open.register(upload.clone());
    match stage_parts(upload.clone(), key, &mut reader, policy, first, &mut hasher, &pool).await {
        Ok((receipts, size)) => {
            let parts = receipts.len() as u32;
            let (sha256, chunk_sha256) = hasher.finish();
            Ok(Staged {
                store: store.clone(),
                state: State::Multipart { upload, receipts, open: open.clone(), id },
                stored: Stored { key: key.to_string(), size, sha256, chunk_size: CHUNK_SIZE, chunk_sha256, parts },
            })
        }
        Err(e) => {
            if let Err(abort_err) = upload.abort().await {
                tracing::error!(key, error = %abort_err, "could not abort the upload; the bucket's AbortIncompleteMultipartUpload rule will remove it");
            }
            open.unregister(id);
            Err(e)
        }
    }
}

async fn stage_parts<R: AsyncRead + Unpin + Send>(
    upload: Arc<dyn MultipartUpload>,
    key: &str,
    reader: &mut R,
    policy: &UploadPolicy,
    first: Bytes,
    hasher: &mut ChunkHasher,
    pool: &Arc<BufferPool>,
) -> anyhow::Result<(Vec<PartReceipt>, u64)> {
    let budget = (policy.part_size * policy.parts_in_flight as u64).div_ceil(MIB).max(1) as u32;
    let room = Arc::new(Semaphore::new(budget as usize));
    let mut in_flight: JoinSet<Result<PartReceipt, StoreError>> = JoinSet::new();
    let mut receipts = Vec::new();
    let mut offset = 0u64;
    let mut number = 1u32;
    // The first part was read (and hashed) before the upload existed.
    let mut first = Some(first);

    loop {
        let size = part_size_for(policy, number);
        // Wait for room before reading the next part, collecting finished parts meanwhile.
        let units = (size.div_ceil(MIB) as u32).min(budget);
        let permit = loop {
            tokio::select! {
                p = room.clone().acquire_many_owned(units) => break p.context("upload semaphore closed")?,
                Some(done) = in_flight.join_next() => receipts.push(done.context("part upload task failed")??),
            }
        };
        let body = match first.take() {
            Some(b) => b,
            None => {
                let b = read_part(reader, size, pool).await.map_err(|e| read_failed(key, e))?;
                hasher.update(&b);
                b
            }
        };
        if body.is_empty() {
            break;
        }
        if number > policy.max_parts {
            anyhow::bail!(StoreError::TooManyParts {
                key: key.to_string(),
                max_parts: policy.max_parts,
                last_part_mib: size / MIB,
                fixed: policy.fixed,
            });
        }
        let len = body.len() as u64;
        let up = upload.clone();
        let pool = pool.clone();
        in_flight.spawn(async move {
            // Retried by the store where it can be (the SDK's policy, see `s3.rs`).
            let r = up.put_part(number, offset, body.clone()).await;
            pool.give(body);
            drop(permit);
            r
        });
        offset += len;
        number += 1;
        if len < size {
            break;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        receipts.push(done.context("part upload task failed")??);
    }
    receipts.sort_by_key(|r| r.number);
    tracing::debug!(key, parts = receipts.len(), bytes = offset, "all parts uploaded");
    Ok((receipts, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(part: u64, max_parts: u32, fixed: bool) -> UploadPolicy {
        UploadPolicy { part_size: part, fixed, max_parts, parts_in_flight: 4, part_retries: 0 }
    }

    use proptest::prelude::*;

    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn at_once(bytes: &[u8], cs: usize) -> ([u8; 32], Vec<[u8; 32]>) {
        (Sha256::digest(bytes).into(), bytes.chunks(cs).map(|c| Sha256::digest(c).into()).collect())
    }

    proptest! {
        #[test]
        fn chunk_hashes_do_not_depend_on_the_pieces(len in 0usize..20_000, cs in 1u64..4000,
                                                   cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
            let bytes = data(len, len as u64);
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
            at.extend([0, len]);
            at.sort_unstable();
            let mut h = ChunkHasher::new(cs);
            for w in at.windows(2) {
                h.update(&bytes[w[0]..w[1]]);
            }
            prop_assert_eq!(h.finish(), at_once(&bytes, cs as usize));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]

        /// A staged object's hashes are those of the stored bytes, whatever the part sizes, for a
        /// single PutObject and a multipart upload alike.
        #[test]
        fn staged_objects_carry_their_chunk_hashes(len in 0usize..(11 * MIB as usize), part_kib in 64u64..5000) {
            let bytes = data(len, len as u64 ^ part_kib);
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(crate::store::local::LocalStore::new(dir.path().to_path_buf()));
            let p = UploadPolicy { part_size: part_kib * 1024, ..policy(0, 10_000, false) };
            let key = "p/daily/h/2026-12-01T010000Z/db/x.sql.zst";
            let zstd = crate::config::CompressionConfig {
                algorithm: crate::config::Algorithm::Zstd,
                level: 3,
                threads: 1,
                dump_threads: 1,
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (staged_hashes, entry, stored) = rt.block_on(async {
                let staged = stage(&store, key, std::io::Cursor::new(bytes.clone()), &p, &OpenUploads::default()).await.unwrap();
                let hashes = (staged.stored.sha256, staged.stored.chunk_sha256.clone());
                let entry =
                    crate::catalog::ObjectEntry::from_stored(&staged.stored, "db/x", crate::catalog::Kind::MysqlDump, &zstd, 0);
                staged.commit().await.unwrap();
                (hashes, entry, store.get_object(key).await.unwrap())
            });
            prop_assert!(stored[..] == bytes[..]);
            let want = at_once(&stored, CHUNK_SIZE as usize);
            prop_assert_eq!(&staged_hashes, &want);
            prop_assert_eq!(entry.chunk_size, CHUNK_SIZE);
            prop_assert_eq!(entry.chunk_sha256.len() as u64, (len as u64).div_ceil(CHUNK_SIZE));
            prop_assert_eq!(entry.sha256, hex::encode(want.0));
            prop_assert_eq!(entry.chunk_sha256, want.1.iter().map(hex::encode).collect::<Vec<_>>());
        }
    }

    #[test]
    fn part_size_grows_by_tiers() {
        let p = policy(5 * MIB, 10_000, false);
        assert_eq!(part_size_for(&p, 1), 5 * MIB);
        assert_eq!(part_size_for(&p, 1000), 5 * MIB);
        assert_eq!(part_size_for(&p, 1001), 10 * MIB);
        assert_eq!(part_size_for(&p, 10_000), 5 * MIB * 512);
        // 5 MiB parts reach 4.9 TiB within 10,000 parts; the default 8 MiB passes S3's 5 TiB limit.
        assert!(capacity(&p) > 4900 * 1024 * MIB, "{}", capacity(&p));
        let default = UploadPolicy::default();
        assert!(capacity(&default) >= 5 * 1024 * 1024 * MIB, "{}", capacity(&default));
        // Never beyond S3's largest part.
        let big = policy(1024 * MIB, 10_000, false);
        assert_eq!(part_size_for(&big, 10_000), MAX_PART_SIZE);
    }

    #[test]
    fn fixed_part_size_stays() {
        let p = policy(8 * MIB, 10_000, true);
        assert_eq!(part_size_for(&p, 9_999), 8 * MIB);
        assert_eq!(capacity(&p), 10_000 * 8 * MIB);
    }

    #[test]
    fn small_part_limits_still_grow() {
        let p = policy(5 * MIB, 20, false);
        let sizes: Vec<u64> = (1..=20).map(|n| part_size_for(&p, n) / MIB).collect();
        assert_eq!(sizes[..4], [5, 5, 10, 10]);
        assert_eq!(sizes[19], 5 * 512);
    }
}
