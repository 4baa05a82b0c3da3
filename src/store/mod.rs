//! Object storage, shaped like `object_store`: the [`Store`] trait (objects and multipart
//! uploads, which every store has), the [`BucketAdmin`] trait (lifecycle rules, versioning and
//! Object Lock, server-side copies, which only a bucket has), their S3 and local-directory
//! backends, and the streaming uploader and downloader that work over any store.
//!
//! A store knows objects and multipart uploads; it knows nothing of backup sets (see
//! `catalog.rs`). Keys are `/`-separated and never start with `/`. No type of the AWS SDK
//! appears here: `s3.rs` converts.

pub mod download;
pub mod local;
pub mod s3;
pub mod upload;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncRead;

pub use crate::config::LockMode;
use crate::config::{Config, Destination};

/// Errors a caller can branch on; every message names the bucket, key or path.
///
/// Retries happen below these: the S3 store's requests are retried by the SDK (see `s3.rs`),
/// so an error a caller sees is final unless [`StoreError::is_transient`] says otherwise.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("bucket `{bucket}` does not exist")]
    NoSuchBucket { bucket: String },
    #[error("credentials rejected by {target}: {detail}")]
    AccessDenied { target: String, detail: String },
    #[error("object `{key}` not found")]
    NotFound { key: String },
    #[error("cannot reach {target}: {detail}")]
    Unreachable { target: String, detail: String },
    #[error("{op} `{target}` failed: {detail}")]
    Service { op: &'static str, target: String, detail: String },
    #[error("{op} `{path}`: {source}")]
    Io { op: &'static str, path: String, source: Arc<std::io::Error> },
    /// A response body broke off after the store had answered (which no SDK retry covers).
    #[error("{op} `{target}` broke off: {detail}")]
    Interrupted { op: &'static str, target: String, detail: String },
    #[error("object `{key}` is shorter than expected: asked for bytes {start}..{end}, got {got}")]
    Short { key: String, start: u64, end: u64, got: u64 },
    /// The bytes read are not what the caller expected of them (their size or hashes), or the
    /// object it expected is missing.
    #[error("object `{key}` {problem}")]
    Mismatch { key: String, problem: String },
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error(
        "`{key}` needs more than {max_parts} parts (last part size {last_part_mib} MiB); raise `storage.part_size`{}",
        if *.fixed { " or unset `storage.fixed_part_size`" } else { "" }
    )]
    TooManyParts { key: String, max_parts: u32, last_part_mib: u64, fixed: bool },
    /// The bucket has no such feature (it answers NotImplemented).
    #[error("{store} does not support {what}: {detail}")]
    Unsupported { store: String, what: &'static str, detail: String },
    /// The store is no bucket (a local directory): no lifecycle rules, versioning or Object Lock.
    #[error("the destination {store} keeps no bucket configuration: it does not support {what}")]
    NoBucket { store: String, what: &'static str },
}

impl StoreError {
    /// A new attempt of the same request may succeed: the connection failed, not the request.
    /// The SDK has already retried S3 requests by the time an error reaches us, so only a body
    /// that broke off mid-way is retried above it (by `s3.rs`, within the same attempt
    /// budget). The local store's errors are never transient: a full disk, a permission or an
    /// I/O error of a mount does not heal within a retry's wait (a hard NFS mount retries in
    /// the kernel).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. } | StoreError::Interrupted { .. })
    }

    /// The data is wrong (shorter than expected, hashes that do not match, an object named by a
    /// manifest missing), not the store.
    pub fn is_integrity(&self) -> bool {
        matches!(self, StoreError::Short { .. } | StoreError::Mismatch { .. })
    }
}

impl crate::error::Classify for StoreError {
    fn class(&self) -> crate::error::Class {
        if self.is_integrity() {
            crate::error::Class::Integrity
        } else {
            crate::error::Class::Storage
        }
    }
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
    /// The store's ETag, without quotes (S3; `None` for the local store).
    pub etag: Option<String>,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
    /// When it was started, where the store says.
    pub initiated: Option<DateTime<Utc>>,
}

/// What a bucket does besides storing objects, as far as retention cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketFeatures {
    /// Versioning is (or was) enabled: an expired object leaves noncurrent versions behind.
    pub versioning: bool,
    /// Object Lock is enabled on the bucket.
    pub object_lock: bool,
}

/// An Object Lock retention to put on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until: DateTime<Utc>,
}

/// One lifecycle rule of a bucket, reduced to what this tool reads and writes.
///
/// A rule read from a store also carries the store's own copy of it ([`Kept`]), so that a rule
/// this tool does not own (a transition, a tag filter, ...) is written back exactly as it was
/// read, not rebuilt from these fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LifecycleRule {
    pub id: String,
    pub enabled: bool,
    /// The filter's key prefix (`""`: the whole bucket).
    pub prefix: String,
    pub expiration_days: Option<i32>,
    pub expired_object_delete_marker: bool,
    pub abort_incomplete_days: Option<i32>,
    pub noncurrent_days: Option<i32>,
    /// What else the rule holds, which this tool never writes (transitions, tag or size
    /// filters, a fixed date, ...), in words.
    pub other: Vec<String>,
    #[serde(skip)]
    pub kept: Kept,
}

/// The store's own copy of a rule it returned (opaque to everyone but that store). It takes
/// no part in comparisons: two rules are equal when what this tool reads of them is.
#[derive(Clone, Default)]
pub struct Kept(Option<Arc<dyn std::any::Any + Send + Sync>>);

impl Kept {
    pub fn new<T: std::any::Any + Send + Sync>(original: T) -> Self {
        Kept(Some(Arc::new(original)))
    }

    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.as_ref()?.downcast_ref()
    }
}

impl PartialEq for Kept {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Kept {}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Kept(..)" } else { "Kept(none)" })
    }
}

impl LifecycleRule {
    /// A rule with this ID and filter, enabled, with no action yet.
    pub fn new(id: String, prefix: String) -> Self {
        LifecycleRule {
            id,
            enabled: true,
            prefix,
            expiration_days: None,
            expired_object_delete_marker: false,
            abort_incomplete_days: None,
            noncurrent_days: None,
            other: Vec::new(),
            kept: Kept::default(),
        }
    }

    /// `prefix seatable/daily/: expire after 7 days`.
    pub fn describe(&self) -> String {
        let days = |d: i32| format!("{d} day{}", if d == 1 { "" } else { "s" });
        let mut actions = Vec::new();
        if let Some(d) = self.expiration_days {
            actions.push(format!("expire after {}", days(d)));
        }
        if self.expired_object_delete_marker {
            actions.push("remove expired delete markers".into());
        }
        if let Some(d) = self.noncurrent_days {
            actions.push(format!("remove noncurrent versions after {}", days(d)));
        }
        if let Some(d) = self.abort_incomplete_days {
            actions.push(format!("abort incomplete uploads after {}", days(d)));
        }
        actions.extend(self.other.iter().cloned());
        let filter =
            if self.prefix.is_empty() { "whole bucket".to_string() } else { format!("prefix {}", self.prefix) };
        format!(
            "{filter}: {}{}",
            if actions.is_empty() { "no action".to_string() } else { actions.join(", ") },
            if self.enabled { "" } else { " (DISABLED)" }
        )
    }
}

/// An object to copy server-side (see [`BucketAdmin::copy_from`]): where it is and how to
/// read it.
#[derive(Debug, Clone)]
pub struct CopySource {
    /// The source's endpoint URL (`None`: AWS).
    pub endpoint: Option<String>,
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// The customer key the source was written with, if any.
    pub sse_c: Option<s3::SseC>,
}

/// What the store answered for one uploaded part; handed back at completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReceipt {
    pub number: u32,
    pub etag: String,
}

pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;

/// Objects and multipart uploads: what every store does.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `s3://bucket` or `file:///path`, for messages.
    fn describe(&self) -> String;
    /// Checks that the destination is reachable with these credentials. Writes nothing.
    async fn preflight(&self) -> Result<(), StoreError>;
    /// Writes a small object in one request (replacing any object of that key).
    async fn put_object(&self, key: &str, body: Bytes) -> Result<(), StoreError>;
    /// Starts a multipart upload; nothing is visible under `key` until it completes.
    async fn create_upload(&self, key: &str) -> Result<Arc<dyn MultipartUpload>, StoreError>;
    /// Reads a whole (small) object.
    async fn get_object(&self, key: &str) -> Result<Bytes, StoreError>;
    /// Streams an object.
    async fn get_stream(&self, key: &str) -> Result<ByteReader, StoreError>;
    /// Reads `len` bytes of an object from byte `start`, in the pieces they arrived in (not
    /// copied into one buffer); fewer bytes (a shorter object) is an error, never a silent
    /// short read.
    async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<Bytes>, StoreError>;
    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Multipart uploads under `prefix` that are still open.
    async fn list_open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError>;
    /// Drops an open multipart upload found by [`Store::list_open_uploads`].
    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError>;
    /// The bucket's administration, where the store is a bucket (`None`: a local directory).
    fn admin(&self) -> Option<&dyn BucketAdmin> {
        None
    }
    /// [`Store::admin`], or the error that says this store has none (for `what`).
    fn require_admin(&self, what: &'static str) -> Result<&dyn BucketAdmin, StoreError> {
        self.admin().ok_or_else(|| StoreError::NoBucket { store: self.describe(), what })
    }
}

/// What a bucket has besides objects: lifecycle rules, versioning and Object Lock, and copies
/// that never pass through us. Only a store that is a bucket has it (see [`Store::admin`]).
#[async_trait]
pub trait BucketAdmin: Send + Sync {
    /// The bucket's lifecycle rules (empty when it has none).
    async fn lifecycle_rules(&self) -> Result<Vec<LifecycleRule>, StoreError>;
    /// Replaces the bucket's lifecycle rules with `rules` (all of them: the caller merges).
    async fn put_lifecycle_rules(&self, rules: Vec<LifecycleRule>) -> Result<(), StoreError>;
    /// Versioning and Object Lock of the bucket.
    async fn features(&self) -> Result<BucketFeatures, StoreError>;
    /// Puts an Object Lock retention on an object.
    async fn lock_object(&self, key: &str, retention: Retention) -> Result<(), StoreError>;
    /// Copies `src` into `key` without the bytes passing through us, where the bucket can (on
    /// the same endpoint, with credentials that read the source). `Ok(false)`: it cannot; the
    /// caller streams the object instead.
    async fn copy_from(&self, src: &CopySource, key: &str) -> Result<bool, StoreError>;
}

/// Versioning and Object Lock of `store`'s bucket; a store that is no bucket has neither.
pub async fn features(store: &dyn Store) -> Result<BucketFeatures, StoreError> {
    match store.admin() {
        Some(admin) => admin.features().await,
        None => Ok(BucketFeatures::default()),
    }
}

/// Copies `src` into `key` of `store` server-side where it can; `Ok(false)`: the caller
/// streams the object instead (always, for a store that is no bucket).
pub async fn copy_from(store: &dyn Store, src: &CopySource, key: &str) -> Result<bool, StoreError> {
    match store.admin() {
        Some(admin) => admin.copy_from(src, key).await,
        None => Ok(false),
    }
}

#[async_trait]
pub trait MultipartUpload: Send + Sync {
    fn key(&self) -> &str;
    /// Uploads part `number` (from 1), which starts at byte `offset` of the object.
    async fn put_part(&self, number: u32, offset: u64, body: Bytes) -> Result<PartReceipt, StoreError>;
    /// Makes the object visible, made of `parts` in order.
    async fn complete(&self, parts: Vec<PartReceipt>) -> Result<(), StoreError>;
    /// Drops every uploaded part; the key stays as it was.
    async fn abort(&self) -> Result<(), StoreError>;
}

/// Opens the configured destination.
pub async fn open(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match &config.storage.destination {
        Destination::S3 { bucket } => Ok(Arc::new(
            s3::S3Store::new(bucket, &config.storage.s3).await?.with_retries(config.storage.upload.part_retries),
        )),
        Destination::Local { root } => Ok(Arc::new(local::LocalStore::new(root.clone()))),
    }
}

/// Rejects keys that could escape a directory or confuse listings.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason| Err(StoreError::InvalidKey { key: key.to_string(), reason });
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return bad("starts or ends with `/`");
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("has an empty, `.` or `..` segment");
    }
    if key.bytes().any(|b| b < 0x20 || b == b'\\') {
        return bad("has a control character or backslash");
    }
    Ok(())
}
