//! The streaming downloader: an object is read as a sequence of ranged GETs, several in flight
//! and handed on in order, and checked against the manifest as the bytes pass: per chunk hash
//! (schema 3) before any byte of a chunk is handed on, and by its size and SHA-256 before the
//! stream ends (and, with chunk hashes, before its last chunk is handed on). Objects of older
//! sets, which have no chunk hashes, can be checked whole in a temporary file first
//! ([`open_verified`] with [`Legacy::Spool`]).
//!
//! Memory: at most `in_flight` ranges of `chunk_size` bytes (fetched or being fetched), plus
//! two of the manifest's chunks (one being gathered and checked, one verified and being
//! handed on).
//!
//! The consumer (a decompressor feeding `mariadb` or the untar) may fail for its own reasons
//! when the bytes were bad; [`FetchState`] keeps the download's own verdict so that the caller
//! can name the root cause (a hash mismatch) rather than its symptom (a zstd error).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};
use crate::config::UploadPolicy;

const MIB: u64 = 1024 * 1024;

/// The verified bytes of an object, in order; an error takes the place of the end when they
/// do not check out.
pub type Chunks = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// How an object is fetched. Retries are the store's (see `s3.rs`), not the downloader's.
#[derive(Debug, Clone, Copy)]
pub struct DownloadPolicy {
    /// Bytes per ranged GET.
    pub chunk_size: u64,
    /// Ranged GETs in flight.
    pub in_flight: usize,
}

impl DownloadPolicy {
    /// The upload settings also bound downloads: one part size per request, as many in flight.
    pub fn from_upload(p: &UploadPolicy) -> Self {
        DownloadPolicy { chunk_size: p.part_size.clamp(MIB, 64 * MIB), in_flight: p.parts_in_flight.max(1) }
    }
}

/// The chunk hashes of an object (manifest schema 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHashes {
    /// Bytes per chunk; the last chunk is shorter.
    pub size: u64,
    pub sha256: Vec<[u8; 32]>,
}

/// What the object must be, from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    /// SHA-256 of the stored bytes; `None` only for [`Expected::size_only`].
    pub sha256: Option<[u8; 32]>,
    /// Per-chunk hashes, when the manifest has them: each chunk is checked before it is handed on.
    pub chunks: Option<ChunkHashes>,
}

impl Expected {
    /// Only the size is known: an object of a set without manifest, restored with
    /// `--allow-incomplete`. The one case where no hash is checked.
    /// Without the whole object's SHA-256 when every chunk has one: the chunk hashes cover
    /// every byte (and the size is still checked), so a restore need not hash everything twice.
    /// `verify` keeps both, which also checks that the manifest agrees with itself.
    pub fn chunks_only(mut self) -> Expected {
        if self.chunks.is_some() {
            self.sha256 = None;
        }
        self
    }

    pub fn size_only(size: u64) -> Expected {
        Expected { size, sha256: None, chunks: None }
    }
}

/// The download's own verdict, filled in as it runs.
#[derive(Debug, Default)]
pub struct FetchState {
    bytes: AtomicU64,
    /// Time spent gathering and checking chunks (hashing each one), for the debug log.
    chunk_nanos: AtomicU64,
    /// `None` while running; `Some(Ok)` once the last byte passed and the hash matched.
    outcome: Mutex<Option<Result<(), StoreError>>>,
}

impl FetchState {
    /// Seconds spent checking chunks so far.
    pub fn chunk_seconds(&self) -> f64 {
        self.chunk_nanos.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Bytes handed on so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn set(&self, r: Result<(), StoreError>) {
        if let Ok(mut o) = self.outcome.lock() {
            if o.is_none() {
                *o = Some(r);
            }
        }
    }

    /// The failure the download saw, if any (a consumer's error is usually its symptom).
    pub fn failure(&self) -> Option<anyhow::Error> {
        match self.outcome.lock().ok()?.as_ref()? {
            Ok(()) => None,
            Err(e) => Some(e.clone().into()),
        }
    }

    /// Ok only if the whole object passed and matched the manifest.
    pub fn verified(&self, key: &str) -> anyhow::Result<()> {
        match self.outcome.lock().ok().and_then(|o| o.clone()) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(e.into()),
            None => Err(mismatch(key, "was not read to its end".into()).into()),
        }
    }
}

fn mismatch(key: &str, problem: String) -> StoreError {
    StoreError::Mismatch { key: key.to_string(), problem }
}

/// The bytes of `key` in order, fetched in ranges with several requests in flight.
pub fn ranged(
    store: Arc<dyn Store>,
    key: &str,
    size: u64,
    policy: DownloadPolicy,
) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
    let chunk = policy.chunk_size.max(1);
    let count = size.div_ceil(chunk);
    let key = key.to_string();
    futures::stream::iter(0..count)
        .map(move |i| {
            let (store, key) = (store.clone(), key.clone());
            async move {
                let start = i * chunk;
                store.get_range(&key, start, chunk.min(size - start)).await
            }
        })
        .buffered(policy.in_flight.max(1))
        .map_ok(|pieces| futures::stream::iter(pieces.into_iter().map(Ok)))
        .try_flatten()
}

/// Checks a stream of an object's bytes against [`Expected`] and hands on only what passed:
/// with chunk hashes, each chunk is gathered whole and checked before any byte of it is handed
/// on, and the last chunk is held until the whole object's size and SHA-256 are confirmed;
/// without them, bytes pass as they come and a mismatch takes the place of the stream's end.
///
/// Held: the verified bytes waiting for the consumer and the chunk being gathered, together
/// at most `hold` bytes (two chunks) plus one piece of a ranged GET; `inner` is not polled
/// while that is full.
struct Verifier<S> {
    inner: Pin<Box<S>>,
    key: String,
    expected: Expected,
    state: Arc<FetchState>,
    whole: Sha256,
    /// Bytes taken from `inner`.
    received: u64,
    /// The chunk being gathered: its hash so far, its index, its pieces and their total.
    chunk: Sha256,
    index: u64,
    gathering: Vec<Bytes>,
    gathered: u64,
    /// Verified bytes, in order, waiting for the consumer; and their total.
    ready: VecDeque<Bytes>,
    ready_bytes: u64,
    hold: u64,
    inner_done: bool,
    /// A failure to report once the verified bytes before it are handed on.
    failed: Option<String>,
    done: bool,
}

impl<S> Verifier<S>
where
    S: Stream<Item = Result<Bytes, StoreError>> + Send + 'static,
{
    fn new(inner: S, key: &str, expected: Expected, state: Arc<FetchState>, pass: u64) -> Self {
        let hold = match &expected.chunks {
            Some(c) => (2 * c.size).max(1),
            None => pass.max(1),
        };
        Verifier {
            inner: Box::pin(inner),
            key: key.to_string(),
            expected,
            state,
            whole: Sha256::new(),
            received: 0,
            chunk: Sha256::new(),
            index: 0,
            gathering: Vec::new(),
            gathered: 0,
            ready: VecDeque::new(),
            ready_bytes: 0,
            hold,
            inner_done: false,
            failed: None,
            done: false,
        }
    }

    fn push_ready(&mut self, b: Bytes) {
        self.ready_bytes += b.len() as u64;
        self.ready.push_back(b);
    }

    /// Takes one piece from the store.
    fn take(&mut self, mut b: Bytes) -> Result<(), StoreError> {
        let size = self.expected.size;
        if self.received + b.len() as u64 > size {
            return Err(mismatch(&self.key, format!("is longer than the manifest says ({size} bytes)")));
        }
        self.received += b.len() as u64;
        if self.expected.sha256.is_some() {
            self.whole.update(&b);
        }
        let Some(cs) = self.expected.chunks.as_ref().map(|c| c.size) else {
            self.push_ready(b);
            return Ok(());
        };
        if cs == 0 {
            return Err(mismatch(&self.key, "has chunk hashes with a chunk size of 0".into()));
        }
        let started = std::time::Instant::now();
        while !b.is_empty() {
            let chunk_len = cs.min(size - self.index * cs);
            let n = ((chunk_len - self.gathered) as usize).min(b.len());
            let piece = b.split_to(n);
            self.chunk.update(&piece);
            self.gathered += n as u64;
            self.gathering.push(piece);
            if self.gathered == chunk_len {
                self.close_chunk(cs, chunk_len)?;
            }
        }
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.state.chunk_nanos.fetch_add(spent, Ordering::Relaxed);
        Ok(())
    }

    /// Checks the chunk just gathered; it becomes ready unless it is the last one, which waits
    /// for the whole object's verdict in [`Verifier::finish`].
    fn close_chunk(&mut self, cs: u64, len: u64) -> Result<(), StoreError> {
        let got: [u8; 32] = self.chunk.finalize_reset().into();
        let i = self.index;
        let want = self.expected.chunks.as_ref().and_then(|c| c.sha256.get(i as usize));
        if want != Some(&got) {
            self.gathering.clear();
            return Err(mismatch(&self.key, format!(
                "does not match the manifest: chunk {i} (bytes {}..{}) has SHA-256 {}, expected {}; none of its bytes were used",
                i * cs,
                i * cs + len,
                hex::encode(got),
                want.map(hex::encode).unwrap_or_else(|| "no chunk".into())
            )));
        }
        self.index += 1;
        self.gathered = 0;
        if self.index * cs < self.expected.size {
            for piece in std::mem::take(&mut self.gathering) {
                self.push_ready(piece);
            }
        }
        Ok(())
    }

    /// The store's stream ended: the size and the whole SHA-256 decide; only then is the last
    /// chunk released.
    fn finish(&mut self) -> Result<(), StoreError> {
        let n = self.received;
        let got: [u8; 32] = self.whole.finalize_reset().into();
        let hash_ok = self.expected.sha256.is_none_or(|want| want == got);
        let chunks_ok =
            self.expected.chunks.as_ref().is_none_or(|c| self.gathered == 0 && self.index == c.sha256.len() as u64);
        if n != self.expected.size || !hash_ok || !chunks_ok {
            self.gathering.clear();
            return Err(mismatch(
                &self.key,
                format!(
                    "does not match the manifest: SHA-256 {} ({n} bytes), expected {} ({} bytes)",
                    hex::encode(got),
                    self.expected.sha256.map(hex::encode).unwrap_or_else(|| "any".into()),
                    self.expected.size
                ),
            ));
        }
        for piece in std::mem::take(&mut self.gathering) {
            self.push_ready(piece);
        }
        Ok(())
    }

    /// Records the download's verdict; the consumer gets the same message as an I/O error.
    fn fail(&mut self, e: StoreError) {
        // A missing object is the manifest's (the set's) problem, not the store's.
        let e = match e {
            StoreError::NotFound { key } => mismatch(&key, "named by the manifest is missing".into()),
            other => other,
        };
        self.failed = Some(e.to_string());
        self.state.set(Err(e));
        self.gathering.clear();
    }
}

impl<S> Stream for Verifier<S>
where
    S: Stream<Item = Result<Bytes, StoreError>> + Send + 'static,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        while !this.inner_done && this.failed.is_none() && this.ready_bytes + this.gathered < this.hold {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(b))) => {
                    if let Err(e) = this.take(b) {
                        this.fail(e);
                    }
                }
                Poll::Ready(Some(Err(e))) => this.fail(e),
                Poll::Ready(None) => {
                    this.inner_done = true;
                    if let Err(e) = this.finish() {
                        this.fail(e);
                    }
                }
            }
        }
        if let Some(b) = this.ready.pop_front() {
            this.ready_bytes -= b.len() as u64;
            this.state.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
            return Poll::Ready(Some(Ok(b)));
        }
        if let Some(msg) = this.failed.take() {
            this.done = true;
            return Poll::Ready(Some(Err(std::io::Error::other(msg))));
        }
        if this.inner_done {
            this.done = true;
            this.state.set(Ok(()));
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// Downloads `key` and checks it against `expected` on the way. The stream yields an error
/// instead of its end when the object does not match: a consumer never sees a clean end of
/// bad data. With chunk hashes (schema 3) it also never sees a byte of a chunk that does not
/// match, nor the last chunk before the whole object matched. Check [`FetchState::verified`]
/// after the consumer finished.
pub fn fetch_verified(
    store: Arc<dyn Store>,
    key: &str,
    expected: Expected,
    policy: DownloadPolicy,
) -> (Chunks, Arc<FetchState>) {
    let state = Arc::new(FetchState::default());
    let inner = ranged(store, key, expected.size, policy);
    let verifier = Verifier::new(inner, key, expected, state.clone(), policy.chunk_size);
    (Box::pin(verifier), state)
}

/// What [`open_verified`] does with an object without chunk hashes (schema 1 and 2 sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// Download it whole into a private temporary file, check it, then hand it on: for what
    /// must not be used before it is verified (SQL for a server).
    Spool,
    /// Hand it on as it passes; the verdict comes at the end. Only for consumers whose output
    /// is discarded unless the verdict is good (a tar unpacked into a staging directory).
    Stream,
}

/// The verified bytes of `key`. Objects with chunk hashes stream chunk by chunk (see
/// [`fetch_verified`]); objects without follow `legacy`. With [`Legacy::Spool`] this returns
/// only once the whole object is in a private unlinked temporary file (in `TMPDIR`, mode 0600)
/// and matched its size and SHA-256; a mismatch is an error naming the key, and nothing is
/// handed on.
pub async fn open_verified(
    store: Arc<dyn Store>,
    key: &str,
    expected: Expected,
    policy: DownloadPolicy,
    legacy: Legacy,
) -> anyhow::Result<(Chunks, Arc<FetchState>)> {
    if expected.chunks.is_some() || legacy == Legacy::Stream {
        return Ok(fetch_verified(store, key, expected, policy));
    }
    spool(store, key, expected, policy).await
}

/// A failure of this host (the temporary directory), not of the store or the data: it carries
/// no class of its own.
fn spool_failed(key: &str, what: &str, e: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context(format!(
        "{what} a temporary file in `{}` for checking `{key}` before use (a set made before chunk hashes is checked whole before use: TMPDIR needs room for its largest dump)",
        std::env::temp_dir().display()
    ))
}

async fn spool(
    store: Arc<dyn Store>,
    key: &str,
    expected: Expected,
    policy: DownloadPolicy,
) -> anyhow::Result<(Chunks, Arc<FetchState>)> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let size = expected.size;
    let file = tokio::task::spawn_blocking(tempfile::tempfile)
        .await
        .map_err(|e| anyhow::anyhow!("temporary file thread failed: {e}"))?
        .map_err(|e| spool_failed(key, "creating", e))?;
    let mut file = tokio::fs::File::from_std(file);
    let (mut chunks, state) = fetch_verified(store, key, expected, policy);
    while let Some(piece) = chunks.next().await {
        match piece {
            Ok(b) => file.write_all(&b).await.map_err(|e| spool_failed(key, "writing", e))?,
            Err(e) => {
                return Err(state.failure().unwrap_or_else(|| mismatch(key, format!("could not be read: {e}")).into()));
            }
        }
    }
    state.verified(key)?;
    file.flush().await.map_err(|e| spool_failed(key, "writing", e))?;
    file.seek(std::io::SeekFrom::Start(0)).await.map_err(|e| spool_failed(key, "reading", e))?;
    let path = format!("temporary copy of {key}");
    let inner = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map_err(move |source| StoreError::Io {
        op: "reading",
        path: path.clone(),
        source: Arc::new(source),
    });
    // The copy matched; the size is checked again as it is read back.
    let state = Arc::new(FetchState::default());
    let verifier = Verifier::new(inner, key, Expected::size_only(size), state.clone(), 256 * 1024);
    Ok((Box::pin(verifier), state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ObjectEntry;
    use crate::store::local::LocalStore;
    use proptest::prelude::*;

    const KEY: &str = "p/daily/h/2026-12-01T010000Z/db/x.sql.zst";

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

    fn expected(bytes: &[u8], cs: u64) -> Expected {
        Expected {
            size: bytes.len() as u64,
            sha256: Some(Sha256::digest(bytes).into()),
            chunks: Some(ChunkHashes {
                size: cs,
                sha256: bytes.chunks(cs as usize).map(|c| Sha256::digest(c).into()).collect(),
            }),
        }
    }

    /// What a consumer receives: the bytes, then the error that ended the stream, if any.
    async fn consume(mut s: Chunks) -> (Vec<u8>, Option<String>) {
        let mut got = Vec::new();
        while let Some(piece) = s.next().await {
            match piece {
                Ok(b) => got.extend_from_slice(&b),
                Err(e) => return (got, Some(e.to_string())),
            }
        }
        (got, None)
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    /// `bytes` split at `cuts` (positions, any order), as a store's pieces.
    fn pieces(bytes: &[u8], cuts: &[usize]) -> impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static {
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        at.push(0);
        at.push(bytes.len());
        at.sort_unstable();
        let all = Bytes::copy_from_slice(bytes);
        let v: Vec<_> = at.windows(2).map(|w| Ok(all.slice(w[0]..w[1]))).collect();
        futures::stream::iter(v)
    }

    fn verify_pieces(stored: &[u8], cuts: &[usize], want: Expected) -> (Vec<u8>, Option<String>, Arc<FetchState>) {
        let state = Arc::new(FetchState::default());
        let v = Verifier::new(pieces(stored, cuts), KEY, want, state.clone(), 4096);
        let (got, err) = run(consume(Box::pin(v)));
        (got, err, state)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn good_objects_pass_whole(len in 0usize..20_000, cs in 1u64..3000, cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
            let bytes = data(len, len as u64 + cs);
            let (got, err, state) = verify_pieces(&bytes, &cuts, expected(&bytes, cs));
            prop_assert_eq!(err, None);
            prop_assert!(got == bytes);
            prop_assert!(state.verified(KEY).is_ok());
            prop_assert_eq!(state.bytes(), len as u64);
        }

        #[test]
        fn a_bad_chunk_is_never_handed_on(len in 1usize..20_000, cs in 1u64..3000, at in any::<usize>(),
                                         cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
            let bytes = data(len, len as u64 ^ cs);
            let want = expected(&bytes, cs);
            let mut bad = bytes.clone();
            let at = at % len;
            bad[at] ^= 0x20;
            let k = at as u64 / cs;
            let (got, err, state) = verify_pieces(&bad, &cuts, want);
            // Exactly the chunks before the bad one, then an error naming it.
            prop_assert!(got == bytes[..(k * cs) as usize]);
            let err = err.expect("an error");
            let chunk_k = format!("chunk {k} (bytes {}..", k * cs);
            prop_assert!(err.contains(&chunk_k), "{}", err);
            prop_assert!(err.contains(KEY));
            let failure = state.failure().expect("a verdict");
            prop_assert_eq!(crate::exit::class_of(&failure), crate::error::Class::Integrity);
            prop_assert!(state.verified(KEY).is_err());
        }
    }

    #[test]
    fn the_last_chunk_waits_for_the_whole_hash() {
        let bytes = data(10_000, 7);
        // Every chunk hash matches, the whole-object hash does not (a forged manifest).
        let mut want = expected(&bytes, 3000);
        want.sha256 = Some([0u8; 32]);
        let (got, err, _) = verify_pieces(&bytes, &[], want);
        assert_eq!(got, bytes[..9000]);
        assert!(err.unwrap().contains("does not match the manifest: SHA-256"));
        // A short object: the last chunk is never complete, nothing of it is handed on.
        let want = expected(&bytes, 3000);
        let (got, err, _) = verify_pieces(&bytes[..9500], &[9100], want);
        assert_eq!(got, bytes[..9000]);
        assert!(err.unwrap().contains("(9500 bytes)"));
        // A longer one.
        let mut longer = bytes.clone();
        longer.push(0);
        let (got, err, _) = verify_pieces(&longer, &[], expected(&bytes, 3000));
        assert!(got.len() <= 9000);
        assert!(err.unwrap().contains("longer than the manifest"));
    }

    #[test]
    fn chunk_hashes_alone_check_every_byte() {
        let bytes = data(10_000, 9);
        let want = expected(&bytes, 3000).chunks_only();
        assert!(want.sha256.is_none());
        let (got, err, _) = verify_pieces(&bytes, &[1234, 5000], want);
        assert_eq!((got, err), (bytes.clone(), None));
        for at in [0, 2999, 3000, 9999] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            let (got, err, _) = verify_pieces(&bad, &[4321], expected(&bytes, 3000).chunks_only());
            assert_eq!(got, bytes[..(at / 3000 * 3000)], "byte {at}");
            assert!(err.unwrap().contains(&format!("chunk {}", at / 3000)), "byte {at}");
        }
        // Without chunk hashes the whole-object hash stays.
        let mut legacy = expected(&bytes, 3000);
        legacy.chunks = None;
        assert!(legacy.chunks_only().sha256.is_some());
    }

    #[test]
    fn a_zero_chunk_size_is_an_error_not_a_hang() {
        let bytes = data(100, 1);
        let mut want = expected(&bytes, 10);
        want.chunks.as_mut().unwrap().size = 0;
        let (got, err, _) = verify_pieces(&bytes, &[], want);
        assert!(got.is_empty() && err.unwrap().contains("chunk size of 0"));
    }

    #[test]
    fn without_chunk_hashes_the_verdict_replaces_the_end() {
        let bytes = data(5000, 3);
        let mut want = expected(&bytes, 1000);
        want.chunks = None;
        let mut bad = bytes.clone();
        bad[4999] ^= 1;
        let (got, err, state) = verify_pieces(&bad, &[100, 2000], want.clone());
        assert_eq!(got, bad);
        assert!(err.unwrap().contains("does not match the manifest"));
        assert!(state.verified(KEY).is_err());
        // Only the size, for a set without manifest.
        let (got, err, state) = verify_pieces(&bad, &[], Expected::size_only(5000));
        assert_eq!((got, err), (bad.clone(), None));
        assert!(state.verified(KEY).is_ok());
        let (_, err, _) = verify_pieces(&bad[..4000], &[], Expected::size_only(5000));
        assert!(err.is_some());
    }

    fn local() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path().to_path_buf()));
        (dir, store)
    }

    fn policy(range: u64) -> DownloadPolicy {
        DownloadPolicy { chunk_size: range, in_flight: 3 }
    }

    #[test]
    fn ranged_downloads_are_checked_per_chunk() {
        let (_dir, store) = local();
        let bytes = data(300_000, 11);
        let want = expected(&bytes, 65_536);
        let mut bad = bytes.clone();
        bad[150_000] ^= 0xff; // chunk 2
        run(async {
            store.put_object(KEY, Bytes::from(bytes.clone())).await.unwrap();
            // Ranges of other sizes than the chunks.
            for range in [10_000, 65_536, 100_000, 1 << 20] {
                let (s, state) = fetch_verified(store.clone(), KEY, want.clone(), policy(range));
                assert_eq!(consume(s).await, (bytes.clone(), None));
                assert!(state.verified(KEY).is_ok());
            }
            store.put_object(KEY, Bytes::from(bad)).await.unwrap();
            for range in [10_000, 1 << 20] {
                let (s, state) = fetch_verified(store.clone(), KEY, want.clone(), policy(range));
                let (got, err) = consume(s).await;
                assert_eq!(got, bytes[..131_072]);
                assert!(err.unwrap().contains("chunk 2 (bytes 131072..196608)"));
                assert!(state.failure().unwrap().to_string().contains("chunk 2"));
            }
        });
    }

    #[test]
    fn legacy_objects_are_spooled_and_checked_before_use() {
        let (_dir, store) = local();
        let bytes = data(200_000, 5);
        let mut want = expected(&bytes, 65_536);
        want.chunks = None;
        run(async {
            store.put_object(KEY, Bytes::from(bytes.clone())).await.unwrap();
            let (s, state) =
                open_verified(store.clone(), KEY, want.clone(), policy(50_000), Legacy::Spool).await.unwrap();
            assert_eq!(consume(s).await, (bytes.clone(), None));
            assert!(state.verified(KEY).is_ok());
            assert_eq!(state.bytes(), 200_000);

            let mut bad = bytes.clone();
            bad[10] ^= 1;
            store.put_object(KEY, Bytes::from(bad)).await.unwrap();
            // Nothing is handed on: the error comes before any stream exists.
            let e = open_verified(store.clone(), KEY, want.clone(), policy(50_000), Legacy::Spool).await.err().unwrap();
            assert_eq!(crate::exit::class_of(&e), crate::error::Class::Integrity);
            assert!(e.to_string().contains(KEY), "{e}");
            // A missing object, the same.
            store.delete(KEY).await.unwrap();
            let e = open_verified(store.clone(), KEY, want.clone(), policy(50_000), Legacy::Spool).await.err().unwrap();
            assert!(e.to_string().contains("missing"), "{e}");
            // Streaming stays what it was: the bytes pass, the verdict comes at the end.
            store.put_object(KEY, Bytes::from(bytes.clone())).await.unwrap();
            let (s, _) = open_verified(store.clone(), KEY, want, policy(50_000), Legacy::Stream).await.unwrap();
            assert_eq!(consume(s).await, (bytes.clone(), None));
        });
    }

    #[test]
    fn expected_comes_from_the_manifest_entry() {
        let bytes = data(9 * 1024 * 1024, 1);
        let e = expected(&bytes, crate::catalog::CHUNK_SIZE);
        let entry = ObjectEntry {
            component: "db/x".into(),
            key: KEY.into(),
            kind: crate::catalog::Kind::MysqlDump,
            compression: "zstd".into(),
            compression_level: 3,
            stored_size: bytes.len() as u64,
            raw_size: 0,
            sha256: hex::encode(e.sha256.unwrap()),
            chunk_size: crate::catalog::CHUNK_SIZE,
            chunk_sha256: e.chunks.as_ref().unwrap().sha256.iter().map(hex::encode).collect(),
            parts: 1,
            database: Some("x".into()),
            excluded_tables: vec![],
            only_tables: vec![],
            tar: None,
            mirror: None,
        };
        assert_eq!(entry.expected().unwrap(), e);
        let legacy = ObjectEntry { chunk_size: 0, chunk_sha256: vec![], ..entry.clone() };
        assert_eq!(legacy.expected().unwrap().chunks, None);
        // Malformed hashes never mean "no check".
        assert!(ObjectEntry { sha256: String::new(), ..entry.clone() }.expected().is_err());
        let mut short = entry.clone();
        short.chunk_sha256.pop();
        assert!(short.expected().is_err());
        assert!(ObjectEntry { chunk_size: 1, ..entry.clone() }.expected().is_err());
        assert!(ObjectEntry { chunk_sha256: vec![], ..entry }.expected().is_err());
    }
}
