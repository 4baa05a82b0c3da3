//! One suite for the `Store` trait and the streaming uploader, run against the local-directory
//! store and against Garage (with both request-checksum settings), and one for the
//! `BucketAdmin` trait, run against Garage (Object Lock, which Garage lacks, is checked against
//! moto in `tests/retention.rs`). The Garage tests fail, never skip, when the test environment
//! is missing.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use seatable_backup::config::{RequestChecksums, UploadPolicy};
use seatable_backup::store::local::LocalStore;
use seatable_backup::store::s3::S3Store;
use seatable_backup::store::upload::{self, part_size_for};
use seatable_backup::store::{BucketFeatures, CopySource, LifecycleRule, Store, StoreError};
use sha2::Digest;
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;

fn data(len: usize, seed: u32) -> Vec<u8> {
    // Incompressible-ish, deterministic.
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn policy(part: usize, max_parts: u32, fixed: bool) -> UploadPolicy {
    UploadPolicy { part_size: part as u64, fixed, max_parts, parts_in_flight: 3, part_retries: 1 }
}

async fn read_all(store: &dyn Store, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.get_stream(key).await.expect("get_stream").read_to_end(&mut out).await.expect("read");
    out
}

/// A reader that yields `good` bytes and then fails, as a broken producer does.
struct Failing {
    data: std::io::Cursor<Vec<u8>>,
}

impl tokio::io::AsyncRead for Failing {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.data.position() as usize >= self.data.get_ref().len() {
            return std::task::Poll::Ready(Err(std::io::Error::other("producer died")));
        }
        std::pin::Pin::new(&mut self.data).poll_read(cx, buf)
    }
}

async fn suite(store: Arc<dyn Store>, prefix: &str) {
    store.preflight().await.expect("preflight");

    // Small objects: put, get, list, delete.
    let k1 = format!("{prefix}/a/one.txt");
    let k2 = format!("{prefix}/a/two.bin");
    store.put_object(&k1, Bytes::from_static(b"hello")).await.unwrap();
    store.put_object(&k2, Bytes::from(data(1000, 1))).await.unwrap();
    assert_eq!(store.get_object(&k1).await.unwrap(), Bytes::from_static(b"hello"));
    let listed = store.list(&format!("{prefix}/a/")).await.unwrap();
    assert_eq!(listed.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), vec![k1.as_str(), k2.as_str()]);
    assert_eq!(listed[1].size, 1000);
    assert!(store.list(&format!("{prefix}/nothing/")).await.unwrap().is_empty());
    store.delete(&k1).await.unwrap();
    assert!(matches!(store.get_object(&k1).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(store.get_stream(&k1).await, Err(StoreError::NotFound { .. })));

    // Bad keys never reach the store.
    for bad in ["", "/abs", "a/../b", "a//b", "dir/"] {
        assert!(matches!(store.put_object(bad, Bytes::new()).await, Err(StoreError::InvalidKey { .. })), "{bad:?}");
    }

    // A stream smaller than one part: a single put, visible only after commit.
    let small = data(100_000, 2);
    let key = format!("{prefix}/small.bin");
    let staged = upload::stage(
        &store,
        &key,
        std::io::Cursor::new(small.clone()),
        &policy(5 * MIB, 10_000, false),
        &upload::OpenUploads::default(),
    )
    .await
    .unwrap();
    assert_eq!(staged.stored.parts, 1);
    assert_eq!(staged.stored.sha256, <[u8; 32]>::from(sha2::Sha256::digest(&small)));
    assert!(store.list(&key).await.unwrap().is_empty(), "visible before commit");
    staged.commit().await.unwrap();
    assert_eq!(read_all(store.as_ref(), &key).await, small);

    // Multipart: 3 parts in flight, parts of 5 MiB, 23 MiB of data; also an exact multiple.
    for (len, name) in [(23 * MIB + 12_345, "multi.bin"), (10 * MIB, "exact.bin")] {
        let big = data(len, 3);
        let key = format!("{prefix}/{name}");
        let staged = upload::stage(
            &store,
            &key,
            std::io::Cursor::new(big.clone()),
            &policy(5 * MIB, 10_000, false),
            &upload::OpenUploads::default(),
        )
        .await
        .unwrap();
        assert_eq!(staged.stored.parts as usize, len.div_ceil(5 * MIB));
        assert_eq!(staged.stored.size, len as u64);
        assert!(store.list(&key).await.unwrap().is_empty(), "visible before commit");
        assert_eq!(store.list_open_uploads(&key).await.unwrap().len(), 1);
        staged.commit().await.unwrap();
        let back = read_all(store.as_ref(), &key).await;
        assert!(back == big, "{name}: content differs ({} vs {} bytes)", back.len(), big.len());
        assert!(store.list_open_uploads(&key).await.unwrap().is_empty());
    }

    // Abort after staging: nothing visible, nothing open.
    let key = format!("{prefix}/aborted.bin");
    let staged = upload::stage(
        &store,
        &key,
        std::io::Cursor::new(data(12 * MIB, 4)),
        &policy(5 * MIB, 10_000, false),
        &upload::OpenUploads::default(),
    )
    .await
    .unwrap();
    staged.abort().await;
    assert!(store.list(&key).await.unwrap().is_empty());
    assert!(store.list_open_uploads(&key).await.unwrap().is_empty());

    // An upload left open (its creator gone) is found by listing and aborted by its id.
    let key = format!("{prefix}/orphan.bin");
    let up = store.create_upload(&key).await.unwrap();
    up.put_part(1, 0, bytes::Bytes::from(data(5 * MIB, 6))).await.unwrap();
    drop(up);
    let open = store.list_open_uploads(&key).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    store.abort_upload(&open[0]).await.unwrap();
    assert!(store.list_open_uploads(&key).await.unwrap().is_empty());
    assert!(store.list(&key).await.unwrap().is_empty());

    // A producer that dies mid-stream: error, nothing visible, nothing open.
    let key = format!("{prefix}/broken.bin");
    let err = upload::stage(
        &store,
        &key,
        Failing { data: std::io::Cursor::new(data(11 * MIB, 5)) },
        &policy(5 * MIB, 10_000, false),
        &upload::OpenUploads::default(),
    )
    .await
    .err()
    .expect("a failing reader fails the upload");
    assert!(format!("{err:#}").contains("producer died"), "{err:#}");
    assert!(store.list(&key).await.unwrap().is_empty());
    assert!(store.list_open_uploads(&key).await.unwrap().is_empty());

    // Part-size growth with a small part-count limit: 20 parts of 5, 5, 10, 10, 20, ... MiB.
    let p = policy(5 * MIB, 20, false);
    let len = 75 * MIB;
    let big = data(len, 6);
    let key = format!("{prefix}/grown.bin");
    let staged = upload::stage(&store, &key, std::io::Cursor::new(big.clone()), &p, &upload::OpenUploads::default())
        .await
        .unwrap();
    let expected_parts = {
        let (mut n, mut total) = (0u32, 0u64);
        while total < len as u64 {
            n += 1;
            total += part_size_for(&p, n);
        }
        n
    };
    assert_eq!(staged.stored.parts, expected_parts);
    assert!(staged.stored.parts < 10, "growth keeps 75 MiB well within 20 parts ({} used)", staged.stored.parts);
    staged.commit().await.unwrap();
    assert!(read_all(store.as_ref(), &key).await == big, "grown upload content differs");

    // Fixed part size that cannot fit: a clear error, nothing left behind.
    let key = format!("{prefix}/too-big.bin");
    let err = upload::stage(
        &store,
        &key,
        std::io::Cursor::new(data(52 * MIB, 7)),
        &policy(5 * MIB, 10, true),
        &upload::OpenUploads::default(),
    )
    .await
    .err()
    .expect("10 fixed parts of 5 MiB cannot hold 52 MiB");
    let msg = format!("{err:#}");
    assert!(msg.contains("more than 10 parts") && msg.contains("storage.part_size"), "{msg}");
    assert!(store.list(&key).await.unwrap().is_empty());
    assert!(store.list_open_uploads(&key).await.unwrap().is_empty());
}

#[tokio::test]
async fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path().join("backups")));
    suite(store.clone(), "p").await;
    // No partial files are left anywhere.
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".partial-"), "partial file left: {}", e.path().display());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

#[tokio::test]
async fn garage_conforms_with_default_checksums() {
    let store = common::env().s3(RequestChecksums::WhenSupported).await;
    suite(store, &common::unique_prefix("conformance-default")).await;
}

#[tokio::test]
async fn garage_conforms_with_checksums_when_required() {
    let store = common::env().s3(RequestChecksums::WhenRequired).await;
    suite(store, &common::unique_prefix("conformance-required")).await;
}

#[tokio::test]
async fn local_preflight_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("not/yet/there");
    LocalStore::new(root.clone()).preflight().await.expect("a creatable root passes");
    assert!(!dir.path().join("not").exists(), "preflight created directories");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = LocalStore::new(file.join("sub")).preflight().await.unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// A source on `endpoint` for a server-side copy.
fn source(endpoint: Option<&str>, bucket: &str, key: &str, size: u64) -> CopySource {
    CopySource { endpoint: endpoint.map(str::to_string), bucket: bucket.into(), key: key.into(), size, sse_c: None }
}

/// What a directory has of a bucket's administration: nothing, said once, by name.
#[tokio::test]
async fn a_local_directory_has_no_bucket_administration() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().to_path_buf());
    assert!(store.admin().is_none());
    let err = store.require_admin("lifecycle rules").err().expect("no administration");
    let msg = err.to_string();
    assert!(msg.contains("keeps no bucket configuration") && msg.contains(&store.describe()), "{msg}");
    assert!(msg.contains("does not support lifecycle rules"), "{msg}");
    assert_eq!(seatable_backup::store::features(&store).await.unwrap(), BucketFeatures::default());
    store.put_object("a/b", Bytes::from_static(b"x")).await.unwrap();
    let copied = seatable_backup::store::copy_from(&store, &source(None, "b", "a/b", 1), "a/c").await.unwrap();
    assert!(!copied, "a directory never copies server-side");
}

/// Lifecycle rules round trip (ours and a rule that is not ours, each as it was written),
/// versioning and Object Lock are read, and objects are copied server-side on the same
/// endpoint and refused (for streaming) from another.
async fn admin_suite(store: &S3Store, bucket: &str) {
    let admin = store.admin().expect("an S3 store has bucket administration");
    assert_eq!(admin.features().await.unwrap(), BucketFeatures::default(), "Garage has neither");

    assert!(admin.lifecycle_rules().await.unwrap().is_empty());
    let foreign = LifecycleRule { expiration_days: Some(30), ..LifecycleRule::new("keep-logs".into(), "logs/".into()) };
    let ours = LifecycleRule {
        abort_incomplete_days: Some(1),
        ..LifecycleRule::new("seatable-backup:p:abort-incomplete-uploads".into(), "p/".into())
    };
    admin.put_lifecycle_rules(vec![foreign.clone(), ours.clone()]).await.unwrap();
    let read = admin.lifecycle_rules().await.unwrap();
    assert_eq!(read, vec![foreign.clone(), ours.clone()]);
    // Written back as read, nothing changes.
    admin.put_lifecycle_rules(read.clone()).await.unwrap();
    assert_eq!(admin.lifecycle_rules().await.unwrap(), read);
    // A changed rule that was read is written as changed.
    let mut changed = read.clone();
    changed[0].expiration_days = Some(3);
    admin.put_lifecycle_rules(changed.clone()).await.unwrap();
    assert_eq!(admin.lifecycle_rules().await.unwrap()[0].expiration_days, Some(3));
    admin.put_lifecycle_rules(Vec::new()).await.unwrap();
    assert!(admin.lifecycle_rules().await.unwrap().is_empty());

    let body = Bytes::from(data(100_000, 8));
    store.put_object("src/one.bin", body.clone()).await.unwrap();
    let endpoint = common::env().endpoint();
    let copied = admin.copy_from(&source(Some(endpoint), bucket, "src/one.bin", 100_000), "dst/one.bin").await.unwrap();
    assert!(copied, "same endpoint: a server-side copy");
    assert_eq!(store.get_object("dst/one.bin").await.unwrap(), body);
    let elsewhere = source(Some("http://elsewhere.invalid:3900"), bucket, "src/one.bin", 100_000);
    assert!(!admin.copy_from(&elsewhere, "dst/two.bin").await.unwrap(), "another endpoint: streamed");
    assert!(store.list("dst/two.bin").await.unwrap().is_empty());
}

#[tokio::test]
async fn garage_bucket_administration_conforms() {
    for (tag, checksums) in [("ws", RequestChecksums::WhenSupported), ("wr", RequestChecksums::WhenRequired)] {
        // Lifecycle rules are per bucket, and other tests share the main one.
        let bucket = format!("admin-{tag}-{}", std::process::id());
        common::garage_bucket(&bucket);
        let store = S3Store::new(&bucket, &common::env().s3_settings(checksums)).await.expect("S3 store");
        admin_suite(&store, &bucket).await;
    }
}
