//! Object storage: the [`Store`] trait, its S3 and local-directory backends, and the streaming
//! multipart uploader that both share.
//!
//! A store knows objects and multipart uploads; it knows nothing of backup sets (see
//! `catalog.rs`). Keys are `/`-separated and never start with `/`.

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
#[derive(Debug, thiserror::Error)]
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
    Io { op: &'static str, path: String, source: std::io::Error },
    #[error("object `{key}` is shorter than expected: asked for bytes {start}..{end}, got {got}")]
    Short { key: String, start: u64, end: u64, got: u64 },
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The store has no such feature (lifecycle rules on a local directory, or a store that
    /// answers NotImplemented).
    #[error("{store} does not support {what}: {detail}")]
    Unsupported { store: String, what: &'static str, detail: String },
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

/// A bucket's lifecycle rules, as the S3 API has them (rules this tool does not write are
/// kept as they are).
pub type LifecycleRule = aws_sdk_s3::types::LifecycleRule;

/// What the store answered for one uploaded part; handed back at completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReceipt {
    pub number: u32,
    pub etag: String,
}

pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;

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
    /// Copies `src` into `key` without the bytes passing through us, where the store can (an
    /// S3 store on the same endpoint, with credentials that read the source). `Ok(false)`:
    /// it cannot; the caller streams the object instead.
    async fn copy_from(&self, _src: &s3::CopySource, _key: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// The bucket's lifecycle rules (empty when it has none).
    async fn lifecycle_rules(&self) -> Result<Vec<LifecycleRule>, StoreError> {
        Err(self.unsupported("lifecycle rules"))
    }
    /// Replaces the bucket's lifecycle rules with `rules` (all of them: the caller merges).
    async fn put_lifecycle_rules(&self, _rules: Vec<LifecycleRule>) -> Result<(), StoreError> {
        Err(self.unsupported("lifecycle rules"))
    }
    /// Versioning and Object Lock of the bucket (a store without them has neither).
    async fn features(&self) -> Result<BucketFeatures, StoreError> {
        Ok(BucketFeatures::default())
    }
    /// Puts an Object Lock retention on an object.
    async fn lock_object(&self, _key: &str, _retention: Retention) -> Result<(), StoreError> {
        Err(self.unsupported("Object Lock"))
    }
    fn unsupported(&self, what: &'static str) -> StoreError {
        StoreError::Unsupported {
            store: self.describe(),
            what,
            detail: "a local directory keeps no bucket configuration".into(),
        }
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
        Destination::S3 { bucket } => Ok(Arc::new(s3::S3Store::new(bucket, &config.storage.s3).await?)),
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
