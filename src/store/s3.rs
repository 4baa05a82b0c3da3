//! S3-compatible object storage through aws-sdk-s3 (AWS, MinIO, Garage, Ceph, R2, B2, ...).
//!
//! Credentials come from aws-config's default chain (environment, profile, web identity,
//! instance metadata) unless the config file holds a key pair. Part checksums: with the SDK's
//! default (`when_supported`) every part carries a CRC32 and completion echoes only the ETags,
//! which Garage, MinIO and AWS all accept; `when_required` sends no checksums at all.
//!
//! Retries: one policy, the SDK's standard retry mode (exponential backoff with jitter, for
//! timeouts, broken connections, 5xx and throttling answers), configured here once with
//! `storage.part_retries + 1` attempts per request ([`S3Store::with_retries`]). Nothing above
//! retries a request again; the one thing the SDK does not cover, a ranged GET whose body
//! breaks off after the answer, is repeated by [`S3Store::get_range`] within the same budget.
//! The SDK's types stay in this file: lifecycle rules and copy sources are converted here.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{
    check_key, BucketAdmin, BucketFeatures, ByteReader, CopySource, Kept, LifecycleRule, LockMode, MultipartUpload,
    ObjectInfo, OpenUpload, PartReceipt, Retention, Store, StoreError,
};
use crate::config::{RequestChecksums, S3Settings};

pub struct S3Store {
    client: Client,
    /// Skip SigV4 payload hashing of part bodies (see `new`).
    unsigned_parts: bool,
    bucket: String,
    /// For messages: the endpoint (or "AWS S3").
    endpoint: String,
    /// The configured endpoint URL (`None`: AWS), to tell whether a server-side copy can work.
    endpoint_url: Option<String>,
    /// A customer key that every read and write of this bucket carries (SSE-C).
    sse_c: Option<SseC>,
    /// Attempts per request, as the SDK has them (see [`S3Store::with_retries`]).
    attempts: u32,
}

/// The one retry policy: `retries` more attempts of each request after the first.
fn retry_config(retries: u32) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(retries.saturating_add(1))
}

/// Retries of a store opened without [`S3Store::with_retries`]: `storage.part_retries`' default.
const DEFAULT_RETRIES: u32 = 3;

/// An SSE-C customer key (AES-256), as the S3 API wants it: base64 of the 32 key bytes and of
/// their MD5. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SseC {
    key_b64: String,
    md5_b64: String,
}

impl std::fmt::Debug for SseC {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SseC(***)")
    }
}

impl SseC {
    /// From SeaTable's `sse_c_key` / `S3_SSE_C_KEY`: 32 characters taken as the key's bytes, or
    /// the base64 of 32 bytes.
    pub fn from_key(key: &crate::config::Secret) -> Result<SseC, String> {
        let k = key.expose().trim();
        let bytes = if k.len() == 32 {
            k.as_bytes().to_vec()
        } else {
            match aws_smithy_types::base64::decode(k) {
                Ok(b) if b.len() == 32 => b,
                _ => return Err("an SSE-C key must be 32 characters, or the base64 of 32 bytes".into()),
            }
        };
        use md5::Digest;
        Ok(SseC {
            key_b64: aws_smithy_types::base64::encode(&bytes),
            md5_b64: aws_smithy_types::base64::encode(md5::Md5::digest(&bytes)),
        })
    }
}

/// Sets the SSE-C headers (customer key, or with `copy_source_`, the copy source's) on a request.
macro_rules! with_sse_c {
    ($req:expr, $sse:expr) => {
        match $sse {
            Some(k) => {
                $req.sse_customer_algorithm("AES256").sse_customer_key(&k.key_b64).sse_customer_key_md5(&k.md5_b64)
            }
            None => $req,
        }
    };
}

/// CopyObject's limit; larger objects are streamed.
const MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;

fn same_endpoint(a: Option<&str>, b: Option<&str>) -> bool {
    let norm = |e: Option<&str>| e.map(|e| e.trim_end_matches('/').to_ascii_lowercase());
    norm(a) == norm(b)
}

/// `bucket/key` for `x-amz-copy-source`, the key percent-encoded (but its slashes).
fn copy_source_header(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl S3Store {
    pub async fn new(bucket: &str, s: &S3Settings) -> Result<Self, StoreError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &s.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(ep) = &s.endpoint {
            loader = loader.endpoint_url(ep.clone());
        }
        if let Some((id, secret)) = &s.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.expose().to_string(),
                None,
                None,
                "config-file",
            ));
        }
        let sdk = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(s.path_style);
        if sdk.region().is_none() {
            if s.endpoint.is_some() {
                // Most S3-compatible stores ignore the region; AWS needs one.
                b = b.region(Region::new("us-east-1"));
            } else {
                return Err(StoreError::Service {
                    op: "configure",
                    target: format!("s3://{bucket}"),
                    detail: "no region: set `storage.region` (or AWS_REGION)".into(),
                });
            }
        }
        if s.request_checksums == RequestChecksums::WhenRequired {
            b = b
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        // The SigV4 payload hash costs a full SHA-256 pass over every part, on our side and the
        // store's. It is redundant where the body is already protected: by TLS, or by the CRC32
        // checksum the SDK sends by default. Over plain HTTP without checksums, keep it.
        let unsigned_parts = s.endpoint.as_deref().is_none_or(|e| e.starts_with("https://"))
            || s.request_checksums == RequestChecksums::WhenSupported;
        b = b.retry_config(retry_config(DEFAULT_RETRIES));
        Ok(S3Store {
            client: Client::from_conf(b.build()),
            unsigned_parts,
            bucket: bucket.to_string(),
            endpoint: s.endpoint.clone().unwrap_or_else(|| "AWS S3".to_string()),
            endpoint_url: s.endpoint.clone(),
            sse_c: None,
            attempts: DEFAULT_RETRIES + 1,
        })
    }

    /// Every request of this store is tried up to `retries + 1` times (`storage.part_retries`).
    pub fn with_retries(mut self, retries: u32) -> Self {
        let conf = self.client.config().to_builder().retry_config(retry_config(retries)).build();
        self.client = Client::from_conf(conf);
        self.attempts = retries.saturating_add(1);
        self
    }

    /// Every read and write of this store carries this SSE-C key.
    pub fn with_sse_c(mut self, key: Option<SseC>) -> Self {
        self.sse_c = key;
        self
    }

    /// This store's side of a server-side copy: its endpoint, bucket and key.
    pub fn copy_source(&self, key: &str, size: u64) -> CopySource {
        CopySource {
            endpoint: self.endpoint_url.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            size,
            sse_c: self.sse_c.clone(),
        }
    }

    fn target(&self, key: &str) -> String {
        if key.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{key}", self.bucket)
        }
    }

    fn map<E, R>(&self, op: &'static str, key: &str, err: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        SdkError<E, R>: std::error::Error,
    {
        map_sdk_error(op, &self.bucket, &self.endpoint, &self.target(key), err)
    }

    /// A response body of `key` that broke off after the answer.
    fn interrupted(&self, key: &str, e: aws_sdk_s3::primitives::ByteStreamError) -> StoreError {
        StoreError::Interrupted {
            op: "read",
            target: self.target(key),
            detail: one_line(&DisplayErrorContext(&e).to_string()),
        }
    }

    /// Sends a ranged GET (bytes `start..end`); the SDK retries it up to its answer.
    async fn send_range(&self, key: &str, start: u64, end: u64) -> Result<ByteStream, StoreError> {
        let req = self.client.get_object().bucket(&self.bucket).key(key);
        let out =
            with_sse_c!(req, &self.sse_c).range(format!("bytes={start}-{}", end - 1)).send().await.map_err(|e| {
                match self.map("get", key, e) {
                    // A range that starts past the end: the object is shorter than the manifest says.
                    StoreError::Service { detail, .. } if detail.starts_with("InvalidRange") => {
                        StoreError::Short { key: key.to_string(), start, end, got: 0 }
                    }
                    other => other,
                }
            })?;
        Ok(out.body)
    }
}

fn map_sdk_error<E, R>(op: &'static str, bucket: &str, endpoint: &str, target: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    SdkError<E, R>: std::error::Error,
{
    if matches!(err, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) {
        return StoreError::Unreachable {
            target: format!("endpoint {endpoint}"),
            detail: one_line(&DisplayErrorContext(&err).to_string()),
        };
    }
    let code = err.code().map(str::to_string);
    let message = err.message().map(str::to_string);
    let detail = match (&code, &message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => one_line(&DisplayErrorContext(&err).to_string()),
    };
    match code.as_deref() {
        Some("NoSuchBucket") => StoreError::NoSuchBucket { bucket: bucket.to_string() },
        Some("NoSuchKey") | Some("NotFound") => StoreError::NotFound { key: target.to_string() },
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "AccessDenied"
            | "InvalidToken"
            | "ExpiredToken"
            | "InvalidSecurity",
        ) => StoreError::AccessDenied { target: target.to_string(), detail },
        Some("AuthorizationHeaderMalformed" | "InvalidRegion" | "IllegalLocationConstraintException") => {
            StoreError::Service {
                op,
                target: target.to_string(),
                detail: format!("{detail} (wrong `storage.region`?)"),
            }
        }
        _ => StoreError::Service { op, target: target.to_string(), detail },
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn to_utc(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
}

#[async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn preflight(&self) -> Result<(), StoreError> {
        // A listing names the failure (NoSuchBucket, InvalidAccessKeyId, ...) where HeadBucket
        // answers only a bare status; and it writes nothing.
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.map("list", "", e))?;
        Ok(())
    }

    async fn put_object(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        check_key(key)?;
        let req = self.client.put_object().bucket(&self.bucket).key(key);
        with_sse_c!(req, &self.sse_c)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.map("put", key, e))?;
        Ok(())
    }

    async fn create_upload(&self, key: &str) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        check_key(key)?;
        let req = self.client.create_multipart_upload().bucket(&self.bucket).key(key);
        let out =
            with_sse_c!(req, &self.sse_c).send().await.map_err(|e| self.map("create multipart upload", key, e))?;
        let upload_id = out.upload_id().ok_or_else(|| StoreError::Service {
            op: "create multipart upload",
            target: self.target(key),
            detail: "the store answered without an UploadId".into(),
        })?;
        Ok(Arc::new(S3Upload {
            client: self.client.clone(),
            unsigned_parts: self.unsigned_parts,
            bucket: self.bucket.clone(),
            endpoint: self.endpoint.clone(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            sse_c: self.sse_c.clone(),
        }))
    }

    async fn get_object(&self, key: &str) -> Result<Bytes, StoreError> {
        check_key(key)?;
        let req = self.client.get_object().bucket(&self.bucket).key(key);
        let out = with_sse_c!(req, &self.sse_c).send().await.map_err(|e| self.map("get", key, e))?;
        let data = out.body.collect().await.map_err(|e| self.interrupted(key, e))?;
        Ok(data.into_bytes())
    }

    async fn get_stream(&self, key: &str) -> Result<ByteReader, StoreError> {
        check_key(key)?;
        let req = self.client.get_object().bucket(&self.bucket).key(key);
        let out = with_sse_c!(req, &self.sse_c).send().await.map_err(|e| self.map("get", key, e))?;
        Ok(Box::pin(out.body.into_async_read()))
    }

    async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<Bytes>, StoreError> {
        check_key(key)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let end = start + len; // exclusive
        let mut attempt = 1;
        let data = loop {
            // A failed request is final here (the SDK retried it); a body that broke off after
            // the answer is not retried by anyone else, so it is repeated within the budget.
            match self.send_range(key, start, end).await?.collect().await.map_err(|e| self.interrupted(key, e)) {
                Ok(data) => break data,
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    tracing::warn!(key, start, attempt, error = %e, "ranged GET broke off, repeating it");
                    tokio::time::sleep(std::time::Duration::from_millis(250 << attempt.min(6))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        // The body's frames as they came (into_bytes would copy them into one new buffer).
        let pieces: Vec<Bytes> = data.into_segments().collect();
        let got: u64 = pieces.iter().map(|b| b.len() as u64).sum();
        if got != len {
            return Err(StoreError::Short { key: key.to_string(), start, end, got });
        }
        Ok(pieces)
    }

    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError> {
        check_key(&upload.key)?;
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
            .map_err(|e| self.map("abort multipart upload", &upload.key, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map("list", prefix, e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectInfo {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: to_utc(o.last_modified()),
                    etag: o.e_tag().map(|e| e.trim_matches('"').to_string()),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.map("delete", key, e))?;
        Ok(())
    }

    async fn list_open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| self.map("list multipart uploads", prefix, e))?;
            for u in page.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    out.push(OpenUpload {
                        key: k.to_string(),
                        upload_id: id.to_string(),
                        initiated: to_utc(u.initiated()),
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            let next_key = page.next_key_marker().map(str::to_string);
            let next_id = page.next_upload_id_marker().map(str::to_string);
            if next_key.is_none() && next_id.is_none() {
                break;
            }
            (key_marker, id_marker) = (next_key, next_id);
        }
        Ok(out)
    }

    fn admin(&self) -> Option<&dyn BucketAdmin> {
        Some(self)
    }
}

#[async_trait]
impl BucketAdmin for S3Store {
    async fn lifecycle_rules(&self) -> Result<Vec<LifecycleRule>, StoreError> {
        match self.client.get_bucket_lifecycle_configuration().bucket(&self.bucket).send().await {
            Ok(out) => Ok(out.rules().iter().map(rule_from_sdk).collect()),
            // Garage answers 204 with no body when a bucket has no rules.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 204) => Ok(Vec::new()),
            Err(e) => match self.map_bucket_op("get lifecycle configuration", "lifecycle rules", e) {
                StoreError::Service { detail, .. } if detail.starts_with("NoSuchLifecycleConfiguration") => {
                    Ok(Vec::new())
                }
                other => Err(other),
            },
        }
    }

    async fn put_lifecycle_rules(&self, rules: Vec<LifecycleRule>) -> Result<(), StoreError> {
        if rules.is_empty() {
            // S3 wants at least one rule in a configuration; none is a deletion.
            self.client
                .delete_bucket_lifecycle()
                .bucket(&self.bucket)
                .send()
                .await
                .map_err(|e| self.map_bucket_op("delete lifecycle configuration", "lifecycle rules", e))?;
            return Ok(());
        }
        let invalid = |e: aws_sdk_s3::error::BuildError| StoreError::Service {
            op: "put lifecycle configuration",
            target: self.target(""),
            detail: e.to_string(),
        };
        let rules = rules.iter().map(rule_to_sdk).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        let conf = aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(invalid)?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(conf)
            .send()
            .await
            .map_err(|e| self.map_bucket_op("put lifecycle configuration", "lifecycle rules", e))?;
        Ok(())
    }

    async fn features(&self) -> Result<BucketFeatures, StoreError> {
        use aws_sdk_s3::types::{BucketVersioningStatus, ObjectLockEnabled};
        let object_lock = match self.client.get_object_lock_configuration().bucket(&self.bucket).send().await {
            Ok(out) => out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| *e == ObjectLockEnabled::Enabled),
            Err(e) => match self.map_bucket_op("get object lock configuration", "Object Lock", e) {
                StoreError::Unsupported { .. } => false,
                StoreError::Service { detail, .. } if detail.starts_with("ObjectLockConfigurationNotFound") => false,
                other => return Err(other),
            },
        };
        // Object Lock cannot be had without versioning: no need to ask.
        if object_lock {
            return Ok(BucketFeatures { versioning: true, object_lock });
        }
        let versioning = match self.client.get_bucket_versioning().bucket(&self.bucket).send().await {
            Ok(out) => out
                .status()
                .is_some_and(|s| matches!(s, BucketVersioningStatus::Enabled | BucketVersioningStatus::Suspended)),
            Err(e) => match self.map_bucket_op("get versioning", "versioning", e) {
                StoreError::Unsupported { .. } => false,
                other => return Err(other),
            },
        };
        Ok(BucketFeatures { versioning, object_lock })
    }

    async fn lock_object(&self, key: &str, retention: Retention) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
        check_key(key)?;
        let mode = match retention.mode {
            LockMode::Governance => ObjectLockRetentionMode::Governance,
            LockMode::Compliance => ObjectLockRetentionMode::Compliance,
        };
        let until = aws_sdk_s3::primitives::DateTime::from_secs(retention.until.timestamp());
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .retention(ObjectLockRetention::builder().mode(mode).retain_until_date(until).build())
            .send()
            .await
            .map_err(|e| self.map("put object retention", key, e))?;
        Ok(())
    }

    async fn copy_from(&self, src: &CopySource, key: &str) -> Result<bool, StoreError> {
        check_key(key)?;
        if !same_endpoint(src.endpoint.as_deref(), self.endpoint_url.as_deref()) || src.size > MAX_COPY_SIZE {
            return Ok(false);
        }
        let req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(copy_source_header(&src.bucket, &src.key));
        let req = with_sse_c!(req, &self.sse_c);
        let req = match &src.sse_c {
            Some(k) => req
                .copy_source_sse_customer_algorithm("AES256")
                .copy_source_sse_customer_key(&k.key_b64)
                .copy_source_sse_customer_key_md5(&k.md5_b64),
            None => req,
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => match self.map("copy", key, e) {
                // These credentials may not read the source: the caller streams it instead.
                StoreError::AccessDenied { .. } => Ok(false),
                other => Err(other),
            },
        }
    }
}

impl S3Store {
    /// Like `map`, but a store that does not implement the call says so (`Unsupported`).
    fn map_bucket_op<E>(
        &self,
        op: &'static str,
        what: &'static str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let not_implemented = err.raw_response().is_some_and(|r| r.status().as_u16() == 501);
        match self.map(op, "", err) {
            StoreError::Service { detail, .. }
                if not_implemented
                    || detail.starts_with("NotImplemented")
                    || detail.starts_with("MethodNotAllowed") =>
            {
                StoreError::Unsupported { store: self.describe(), what, detail }
            }
            other => other,
        }
    }
}

/// A lifecycle rule as this tool reads it; the SDK's rule is kept to be written back as it is.
fn rule_from_sdk(rule: &aws_sdk_s3::types::LifecycleRule) -> LifecycleRule {
    use aws_sdk_s3::types::ExpirationStatus;
    let mut other = Vec::new();
    #[allow(deprecated)]
    let legacy_prefix = rule.prefix().map(str::to_string);
    let prefix = match rule.filter() {
        Some(f) => {
            if f.tag().is_some() {
                other.push("tag filter".to_string());
            }
            if f.object_size_greater_than().is_some() || f.object_size_less_than().is_some() {
                other.push("size filter".to_string());
            }
            if let Some(and) = f.and() {
                other.push("AND filter".to_string());
                and.prefix().map(str::to_string)
            } else {
                f.prefix().map(str::to_string)
            }
        }
        None => legacy_prefix,
    }
    .unwrap_or_default();
    let exp = rule.expiration();
    if exp.and_then(|e| e.date()).is_some() {
        other.push("expiration at a fixed date".to_string());
    }
    if !rule.transitions().is_empty() {
        other.push(format!("{} transition(s)", rule.transitions().len()));
    }
    if !rule.noncurrent_version_transitions().is_empty() {
        other.push("noncurrent version transition(s)".to_string());
    }
    let noncurrent = rule.noncurrent_version_expiration();
    if noncurrent.and_then(|n| n.newer_noncurrent_versions()).is_some() {
        other.push("newer noncurrent versions kept".to_string());
    }
    LifecycleRule {
        id: rule.id().unwrap_or_default().to_string(),
        enabled: *rule.status() == ExpirationStatus::Enabled,
        prefix,
        expiration_days: exp.and_then(|e| e.days()),
        expired_object_delete_marker: exp.and_then(|e| e.expired_object_delete_marker()).unwrap_or(false),
        abort_incomplete_days: rule.abort_incomplete_multipart_upload().and_then(|a| a.days_after_initiation()),
        noncurrent_days: noncurrent.and_then(|n| n.noncurrent_days()),
        other,
        kept: Kept::new(rule.clone()),
    }
}

/// The SDK's rule for `rule`: the one it was read as while its fields are unchanged (so that
/// what this tool does not model stays), else one built from the fields.
fn rule_to_sdk(rule: &LifecycleRule) -> Result<aws_sdk_s3::types::LifecycleRule, aws_sdk_s3::error::BuildError> {
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRuleFilter,
        NoncurrentVersionExpiration,
    };
    if let Some(original) = rule.kept.get::<aws_sdk_s3::types::LifecycleRule>() {
        if rule_from_sdk(original) == *rule {
            return Ok(original.clone());
        }
    }
    let mut b = aws_sdk_s3::types::LifecycleRule::builder()
        .id(&rule.id)
        .status(if rule.enabled { ExpirationStatus::Enabled } else { ExpirationStatus::Disabled })
        .filter(LifecycleRuleFilter::builder().prefix(&rule.prefix).build());
    if rule.expiration_days.is_some() || rule.expired_object_delete_marker {
        let mut e = LifecycleExpiration::builder();
        if let Some(d) = rule.expiration_days {
            e = e.days(d);
        }
        if rule.expired_object_delete_marker {
            e = e.expired_object_delete_marker(true);
        }
        b = b.expiration(e.build());
    }
    if let Some(d) = rule.abort_incomplete_days {
        b = b.abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder().days_after_initiation(d).build(),
        );
    }
    if let Some(d) = rule.noncurrent_days {
        b = b.noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(d).build());
    }
    b.build()
}

struct S3Upload {
    client: Client,
    unsigned_parts: bool,
    bucket: String,
    endpoint: String,
    key: String,
    upload_id: String,
    sse_c: Option<SseC>,
}

impl S3Upload {
    fn target(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

#[async_trait]
impl MultipartUpload for S3Upload {
    fn key(&self) -> &str {
        &self.key
    }

    async fn put_part(&self, number: u32, _offset: u64, body: Bytes) -> Result<PartReceipt, StoreError> {
        let req = self.client.upload_part().bucket(&self.bucket).key(&self.key);
        let request = with_sse_c!(req, &self.sse_c)
            .upload_id(&self.upload_id)
            .part_number(number as i32)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body));
        let sent = if self.unsigned_parts {
            request.customize().disable_payload_signing().send().await
        } else {
            request.send().await
        };
        let out = sent.map_err(|e| {
            map_sdk_error("upload part", &self.bucket, &self.endpoint, &format!("{} (part {number})", self.target()), e)
        })?;
        let etag = out.e_tag().ok_or_else(|| StoreError::Service {
            op: "upload part",
            target: self.target(),
            detail: format!("the store answered part {number} without an ETag"),
        })?;
        Ok(PartReceipt { number, etag: etag.to_string() })
    }

    async fn complete(&self, parts: Vec<PartReceipt>) -> Result<(), StoreError> {
        let parts = parts
            .into_iter()
            .map(|p| CompletedPart::builder().part_number(p.number as i32).e_tag(p.etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| map_sdk_error("complete multipart upload", &self.bucket, &self.endpoint, &self.target(), e))?;
        Ok(())
    }

    async fn abort(&self) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .map_err(|e| map_sdk_error("abort multipart upload", &self.bucket, &self.endpoint, &self.target(), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::types::{
        ExpirationStatus, LifecycleExpiration, LifecycleRuleFilter, Transition, TransitionStorageClass,
    };

    fn ours(days: i32) -> LifecycleRule {
        LifecycleRule {
            expiration_days: Some(days),
            expired_object_delete_marker: true,
            noncurrent_days: Some(1),
            ..LifecycleRule::new("seatable-backup:p:daily".into(), "p/daily/".into())
        }
    }

    #[test]
    fn rules_round_trip_through_the_sdk_types() {
        let rule = ours(7);
        assert_eq!(rule_from_sdk(&rule_to_sdk(&rule).unwrap()), rule);
    }

    /// What this tool does not model (a transition) survives a read and a write unchanged, as
    /// long as the rule's fields were not changed.
    #[test]
    fn a_foreign_rule_is_written_back_as_it_was_read() {
        let sdk = aws_sdk_s3::types::LifecycleRule::builder()
            .id("archive")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
            .expiration(LifecycleExpiration::builder().days(400).build())
            .transitions(Transition::builder().days(30).storage_class(TransitionStorageClass::Glacier).build())
            .build()
            .unwrap();
        let read = rule_from_sdk(&sdk);
        assert_eq!(read.other, ["1 transition(s)"]);
        assert_eq!(rule_to_sdk(&read).unwrap(), sdk);
        assert_eq!(rule_to_sdk(&read.clone()).unwrap(), sdk, "clones keep it too");
        let mut changed = read;
        changed.expiration_days = Some(10);
        let rebuilt = rule_to_sdk(&changed).unwrap();
        assert_eq!(rebuilt.expiration().and_then(|e| e.days()), Some(10));
        assert!(rebuilt.transitions().is_empty(), "a changed rule is built from its fields");
    }

    /// A server that answers every GET of `bytes=0-9` with `0123456789`, except that the first
    /// answer breaks off after five bytes; returns its URL and how many requests it saw.
    async fn flaky_server() -> (String, Arc<std::sync::atomic::AtomicU32>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => request.extend_from_slice(&buf[..k]),
                    }
                }
                let head = "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nContent-Range: bytes 0-9/10\r\n\r\n";
                let body: &[u8] = if n == 0 { b"01234" } else { b"0123456789" };
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body).await;
                let _ = conn.shutdown().await;
            }
        });
        (url, seen)
    }

    /// The SDK does not retry a body that breaks off after the answer; the store repeats the
    /// GET within its attempts, and with none left, says the body broke off (transient).
    #[tokio::test]
    async fn a_ranged_get_that_breaks_off_is_repeated() {
        let settings = |endpoint: String| S3Settings {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            path_style: true,
            request_checksums: RequestChecksums::WhenSupported,
            credentials: Some(("id".into(), crate::config::Secret::new("secret"))),
        };
        let (url, seen) = flaky_server().await;
        let store = S3Store::new("b", &settings(url)).await.unwrap().with_retries(1);
        let got: Vec<u8> = store.get_range("k", 0, 10).await.unwrap().concat();
        assert_eq!(got, b"0123456789");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);

        let (url, seen) = flaky_server().await;
        let store = S3Store::new("b", &settings(url)).await.unwrap().with_retries(0);
        let err = store.get_range("k", 0, 10).await.unwrap_err();
        assert!(matches!(err, StoreError::Interrupted { .. }) && err.is_transient(), "{err}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1, "no retries: one request");
    }

    #[test]
    fn retries_are_attempts_after_the_first() {
        assert_eq!(retry_config(0).max_attempts(), 1);
        assert_eq!(retry_config(3).max_attempts(), 4);
        assert_eq!(retry_config(3).mode(), aws_sdk_s3::config::retry::RetryMode::Standard);
    }
}
