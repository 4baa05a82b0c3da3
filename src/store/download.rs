//! The streaming downloader: an object is read as a sequence of ranged GETs, several in flight
//! and handed on in order, and its SHA-256 and size are checked against the manifest as the
//! bytes pass.
//!
//! Memory: at most `in_flight` chunks of `chunk_size` bytes are held (fetched or being fetched).
//!
//! The consumer (a decompressor feeding `mariadb` or the untar) may fail for its own reasons
//! when the bytes were bad; [`FetchState`] keeps the download's own verdict so that the caller
//! can name the root cause (a hash mismatch) rather than its symptom (a zstd error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};
use crate::config::UploadPolicy;
use crate::error::{integrity, Class, Failure};
use crate::source::Chunks;

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct DownloadPolicy {
    /// Bytes per ranged GET.
    pub chunk_size: u64,
    /// Ranged GETs in flight.
    pub in_flight: usize,
    /// Retries of one ranged GET after a transient failure.
    pub retries: u32,
}

impl DownloadPolicy {
    /// The upload settings also bound downloads: one part size per request, as many in flight.
    pub fn from_upload(p: &UploadPolicy) -> Self {
        DownloadPolicy {
            chunk_size: p.part_size.clamp(MIB, 64 * MIB),
            in_flight: p.parts_in_flight.max(1),
            retries: p.part_retries,
        }
    }
}

/// What the object must be, from the manifest.
#[derive(Debug, Clone)]
pub struct Expected {
    pub size: u64,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: String,
}

/// The download's own verdict, filled in as it runs.
#[derive(Debug, Default)]
pub struct FetchState {
    bytes: AtomicU64,
    /// `None` while running; `Some(Ok)` once the last byte passed and the hash matched.
    outcome: Mutex<Option<Result<(), (Class, String)>>>,
}

impl FetchState {
    /// Bytes handed on so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn set(&self, r: Result<(), (Class, String)>) {
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
            Err((class, msg)) => Some(Failure::new(*class, msg.clone()).into()),
        }
    }

    /// Ok only if the whole object passed and matched the manifest.
    pub fn verified(&self, key: &str) -> anyhow::Result<()> {
        match self.outcome.lock().ok().and_then(|o| o.clone()) {
            Some(Ok(())) => Ok(()),
            Some(Err((class, msg))) => Err(Failure::new(class, msg).into()),
            None => Err(integrity(format!("object `{key}` was not read to its end"))),
        }
    }
}

fn transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Unreachable { .. } | StoreError::Service { .. } | StoreError::Io { .. })
}

async fn fetch(store: &dyn Store, key: &str, start: u64, len: u64, retries: u32) -> Result<Vec<Bytes>, StoreError> {
    let mut attempt = 0;
    loop {
        match store.get_range(key, start, len).await {
            Ok(b) => return Ok(b),
            Err(e) if transient(&e) && attempt < retries => {
                attempt += 1;
                tracing::warn!(key, start, attempt, error = %e, "ranged GET failed, retrying");
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(6))).await;
            }
            Err(e) => return Err(e),
        }
    }
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
                fetch(&*store, &key, start, chunk.min(size - start), policy.retries).await
            }
        })
        .buffered(policy.in_flight.max(1))
        .map_ok(|pieces| futures::stream::iter(pieces.into_iter().map(Ok)))
        .try_flatten()
}

/// Downloads `key` and checks it against `expected` on the way. The stream yields an error
/// instead of its end when the object does not match: a consumer never sees a clean end of
/// bad data. Check [`FetchState::verified`] after the consumer finished.
pub fn fetch_verified(
    store: Arc<dyn Store>,
    key: &str,
    expected: Expected,
    policy: DownloadPolicy,
) -> (Chunks, Arc<FetchState>) {
    let state = Arc::new(FetchState::default());
    let st = state.clone();
    let key_owned = key.to_string();
    let inner = ranged(store, key, expected.size, policy);
    let mut hasher = Some(Sha256::new());
    let mut inner = Box::pin(inner);
    let mut done = false;
    let stream = futures::stream::poll_fn(move |cx| {
        if done {
            return std::task::Poll::Ready(None);
        }
        match inner.as_mut().poll_next(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(Some(Ok(b))) => {
                if let Some(h) = hasher.as_mut() {
                    h.update(&b);
                }
                st.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                std::task::Poll::Ready(Some(Ok(b)))
            }
            std::task::Poll::Ready(Some(Err(e))) => {
                done = true;
                let class = match e {
                    StoreError::Short { .. } | StoreError::NotFound { .. } => Class::Integrity,
                    _ => Class::Storage,
                };
                let msg = match &e {
                    StoreError::NotFound { key } => format!("object `{key}` named by the manifest is missing"),
                    other => other.to_string(),
                };
                st.set(Err((class, msg.clone())));
                std::task::Poll::Ready(Some(Err(std::io::Error::other(msg))))
            }
            std::task::Poll::Ready(None) => {
                done = true;
                let got = hex::encode(hasher.take().map(|h| h.finalize().to_vec()).unwrap_or_default());
                let n = st.bytes();
                // An empty expected hash: a set without manifest, where only the size is known.
                let hash_ok = expected.sha256.is_empty() || got.eq_ignore_ascii_case(&expected.sha256);
                if n != expected.size || !hash_ok {
                    let msg = format!(
                        "object `{key_owned}` does not match the manifest: SHA-256 {got} ({n} bytes), expected {} ({} bytes)",
                        expected.sha256, expected.size
                    );
                    st.set(Err((Class::Integrity, msg.clone())));
                    return std::task::Poll::Ready(Some(Err(std::io::Error::other(msg))));
                }
                st.set(Ok(()));
                std::task::Poll::Ready(None)
            }
        }
    });
    (Box::pin(stream), state)
}
