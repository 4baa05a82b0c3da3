//! `prune` deletes nothing when a manifest it decides by cannot be parsed: a newest set whose
//! manifest is garbage (forged, or cut short by a broken write) must not lose its protection and
//! let the sets before it go. Checked on the local-directory store and on the real Garage.

mod common;

use std::sync::Arc;

use common::{assert_exit, env, stderr, unique_prefix, Run};
use seatable_backup::catalog::{self, Kind, Manifest, ObjectEntry, SetClass, SetId, SourceInfo};
use seatable_backup::config::RequestChecksums;
use seatable_backup::store::local::LocalStore;
use seatable_backup::store::Store;

/// Writes a complete set of host `h`: one small dump object and a manifest that checks out.
async fn complete_set(store: &dyn Store, prefix: &str, stamp: &str) -> SetId {
    use sha2::Digest;
    let id = SetId { class: SetClass::Daily, host: "h".into(), stamp: stamp.into() };
    let key = id.key(prefix, "db/ccnet_db.sql.zst");
    let body = bytes::Bytes::from(format!("dump of {stamp}"));
    store.put_object(&key, body.clone()).await.unwrap();
    let t = catalog::parse_stamp(stamp).unwrap();
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
        source: SourceInfo::default(),
        objects: vec![ObjectEntry {
            component: "db/ccnet_db".into(),
            key,
            kind: Kind::MysqlDump,
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
    store.put_object(&id.key(prefix, catalog::MANIFEST), manifest.to_json().into()).await.unwrap();
    id
}

/// Every key under the prefix with its size.
async fn listing(store: &dyn Store, prefix: &str) -> Vec<(String, u64)> {
    store.list(&format!("{prefix}/")).await.unwrap().into_iter().map(|o| (o.key, o.size)).collect()
}

/// Three old daily sets of one host, all due long ago; the newest one's manifest is replaced by
/// garbage. prune must exit 5 naming that manifest and leave every object in place; once the
/// manifest is valid again, prune runs and keeps the newest set.
async fn garbage_manifest_scenario(store: Arc<dyn Store>, prefix: &str, run: impl Fn(&[&str]) -> std::process::Output) {
    for stamp in ["2025-01-01T020000Z", "2025-01-02T020000Z"] {
        complete_set(store.as_ref(), prefix, stamp).await;
    }
    let newest = complete_set(store.as_ref(), prefix, "2025-01-03T020000Z").await;
    let manifest_key = newest.key(prefix, catalog::MANIFEST);
    let good = store.get_object(&manifest_key).await.unwrap();
    for garbage in [&b"{\"schema\": 1, \"objects\": [tr"[..], b"\x00\xff not json", b"{\"schema\": 99}"] {
        store.put_object(&manifest_key, bytes::Bytes::copy_from_slice(garbage)).await.unwrap();
        let before = listing(store.as_ref(), prefix).await;
        for args in [&["prune"][..], &["prune", "--json"]] {
            let out = run(args);
            assert_exit(&out, 5);
            let err = stderr(&out);
            assert!(err.contains(&manifest_key) && err.contains("deleted nothing"), "{err}");
            assert_eq!(listing(store.as_ref(), prefix).await, before, "prune deleted something");
        }
    }

    // Repaired: the newest set stays, the two before it go.
    store.put_object(&manifest_key, good).await.unwrap();
    let out = run(&["prune"]);
    assert_exit(&out, 0);
    let left: Vec<String> =
        catalog::list_sets(store.as_ref(), prefix).await.unwrap().iter().map(|s| s.id().to_string()).collect();
    assert_eq!(left, ["daily/h/2025-01-03T020000Z"]);
}

#[tokio::test]
async fn a_garbage_newest_manifest_stops_prune_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path().to_path_buf()));
    let dest = format!("file://{}", dir.path().display());
    garbage_manifest_scenario(store, "backups", |args| {
        Run::new(args)
            .env("SEATABLE_BACKUP_DESTINATION", &dest)
            .env("SEATABLE_BACKUP_PREFIX", "backups")
            .env("SEATABLE_BACKUP_NOW", "2026-06-01T00:00:00Z")
            .output()
    })
    .await;
}

#[tokio::test]
async fn a_garbage_newest_manifest_stops_prune_on_garage() {
    let prefix = unique_prefix("prune-garbage");
    let store = env().s3(RequestChecksums::WhenSupported).await;
    garbage_manifest_scenario(store, &prefix, |args| {
        Run::garage(args, &prefix).env("SEATABLE_BACKUP_NOW", "2026-06-01T00:00:00Z").output()
    })
    .await;
}
