//! `seatable.mirror_object_storage`: SeaTable 6.2 keeping its bases and files in S3 buckets of
//! a real Garage; the backup copies those buckets into the set, the next backup copies only
//! what changed (counted in bytes), `verify` checks every mirrored object, and a restore puts
//! them into the (empty) buckets of another host.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::fixtures::{self, Fixture, S3Fixture};
use common::{assert_exit, env, stderr, stdout, unique_prefix, Run};
use seatable_backup::catalog::{Kind, Manifest, MirrorSummary, SetClass};
use seatable_backup::config::RequestChecksums;
use seatable_backup::store::s3::S3Store;
use seatable_backup::store::Store;

/// Five fresh buckets (storage, commit, fs, block, avatar) the test key may use.
fn buckets(tag: &str) -> [String; 5] {
    let names = ["storage", "commit", "fs", "block", "avatar"].map(|b| format!("mir-{tag}-{}-{b}", std::process::id()));
    for b in &names {
        common::garage_bucket(b);
    }
    names
}

fn s3_fixture(endpoint: &str, names: &[String; 5]) -> S3Fixture {
    let e = env();
    S3Fixture::new(
        endpoint,
        e.get("SEATABLE_BACKUP_TEST_S3_REGION"),
        e.get("SEATABLE_BACKUP_TEST_ACCESS_KEY_ID"),
        e.get("SEATABLE_BACKUP_TEST_SECRET_ACCESS_KEY"),
        [&names[0], &names[1], &names[2], &names[3], &names[4]],
    )
}

async fn bucket(name: &str) -> Arc<dyn Store> {
    let settings = env().s3_settings(RequestChecksums::WhenSupported);
    Arc::new(S3Store::new(name, &settings).await.expect("bucket store"))
}

/// Every object of a bucket with its content.
async fn contents(store: &Arc<dyn Store>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for o in store.list("").await.unwrap() {
        out.insert(o.key.clone(), store.get_object(&o.key).await.unwrap().to_vec());
    }
    out
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    fixtures::pseudo_random(len, seed)
}

async fn manifests(prefix: &str) -> Vec<Manifest> {
    let store = env().s3(RequestChecksums::WhenSupported).await;
    let mut out = Vec::new();
    for k in common::keys_ending(store.as_ref(), prefix, "/manifest.json").await {
        out.push(Manifest::from_json(&store.get_object(&k).await.unwrap()).unwrap());
    }
    out.sort_by(|a, b| a.stamp.cmp(&b.stamp));
    out
}

fn mirrors(m: &Manifest) -> BTreeMap<String, MirrorSummary> {
    m.objects
        .iter()
        .filter(|o| o.kind == Kind::MirrorIndex)
        .map(|o| {
            let s = o.mirror.clone().expect("mirror summary");
            (s.bucket.clone(), s)
        })
        .collect()
}

#[tokio::test]
async fn buckets_are_mirrored_incrementally_verified_and_restored_into_empty_buckets() {
    let _lock = fixtures::lock(); // no app container of another test may answer
    let e = env();
    let names = buckets("src");
    let s3 = s3_fixture(e.endpoint(), &names);
    let (storage, block, avatar) = (bucket(&names[0]).await, bucket(&names[3]).await, bucket(&names[4]).await);
    for i in 0..12u64 {
        storage
            .put_object(&format!("files/{i:02}/content.json"), bytes(i, 2_000 + 500 * i as usize).into())
            .await
            .unwrap();
    }
    for i in 0..6u64 {
        block.put_object(&format!("4f7c-repo/{i:040}"), bytes(100 + i, 40_000).into()).await.unwrap();
    }
    // Larger than one part: copied on its own, multipart when streamed.
    block.put_object("4f7c-repo/big-block", bytes(7, 9 * 1024 * 1024).into()).await.unwrap();
    avatar.put_object("avatars/a/b/c.png", bytes(9, 1234).into()).await.unwrap();

    let db_names = fixtures::unique_db_names("mirror");
    let f = Fixture::v62(&s3, db_names);
    let prefix = unique_prefix("mirror");
    let run = |args: &[&str]| {
        Run::garage(args, &prefix)
            .env_remove("SEATABLE_BACKUP_DB_CONTAINER")
            .env("SEATABLE_BACKUP_SEATABLE_ROOT", f.root())
            .env("SEATABLE_BACKUP_MIRROR_OBJECT_STORAGE", "true")
    };

    let out = run(&["plan", "--json", "--db-enabled=false"]).output();
    assert_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = plan["checks"].to_string();
    assert!(checks.contains(&format!("SeaTable's bucket `{}` readable", names[3])), "{checks}");
    let included = plan["included"].to_string();
    assert!(
        included.contains(&format!("S3 bucket `{}`", names[0])) && included.contains("mirrored into the set"),
        "{included}"
    );

    // First set: everything is copied, server-side (same endpoint, same credentials).
    let out = run(&["backup", "--only", "data"]).output();
    assert_exit(&out, 0);
    let first = manifests(&prefix).await.pop().unwrap();
    let m1 = mirrors(&first);
    assert_eq!(m1.len(), 5, "every bucket SeaTable uses, the empty ones too: {m1:?}");
    assert_eq!(first.class, SetClass::Monthly, "the first set of a month");
    assert_eq!(m1[&names[1]].objects, 0);
    let s1 = &m1[&names[0]];
    assert_eq!((s1.objects, s1.copied_objects, s1.referenced_objects), (12, 12, 0));
    assert_eq!(s1.server_side_copies, 12);
    let b1 = &m1[&names[3]];
    assert_eq!(b1.copied_bytes, 6 * 40_000 + 9 * 1024 * 1024);
    assert!(first.seatable.as_ref().unwrap().storage.iter().all(|s| s.in_backup), "{:?}", first.seatable);

    // Change one object, add one, delete one: the next set copies only the two.
    let changed = bytes(1000, 7_777);
    storage.put_object("files/03/content.json", changed.clone().into()).await.unwrap();
    storage.put_object("files/new/content.json", bytes(1001, 3_333).into()).await.unwrap();
    storage.delete("files/05/content.json").await.unwrap();
    let out = run(&["backup", "--only", "data"]).output();
    assert_exit(&out, 0);
    let all = manifests(&prefix).await;
    assert_eq!(all.len(), 2);
    let second = &all[1];
    let m2 = mirrors(second);
    let s2 = &m2[&names[0]];
    assert_eq!((s2.objects, s2.copied_objects, s2.referenced_objects), (12, 2, 10), "{s2:?}");
    assert_eq!(s2.copied_bytes, 7_777 + 3_333, "only the changed and the new object are copied");
    let b2 = &m2[&names[3]];
    assert_eq!((b2.copied_objects, b2.copied_bytes, b2.referenced_objects), (0, 0, 7), "{b2:?}");

    // verify reads each index and finds every object it names (in this set and the first).
    let out = run(&["verify"]).output();
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("every one present"), "{}", stdout(&out));

    // A removed referenced object makes the set fail verification.
    let store = e.s3(RequestChecksums::WhenSupported).await;
    let held = common::keys_ending(store.as_ref(), &prefix, "files/00/content.json").await;
    assert_eq!(held.len(), 1, "one copy, referenced by the second set: {held:?}");

    // Restore into another host's empty buckets, reached under another name (streamed).
    let target_names = buckets("dst");
    let port = e.endpoint().rsplit(':').next().unwrap().to_string();
    let target_s3 = s3_fixture(&format!("http://localhost:{port}"), &target_names);
    let target = Fixture::v62(&target_s3, fixtures::unique_db_names("mirror-dst"));
    let out = Run::garage(&["restore", "--only", "objects"], &prefix)
        .env_remove("SEATABLE_BACKUP_DB_CONTAINER")
        .env("SEATABLE_BACKUP_SEATABLE_ROOT", target.root())
        .output();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains(&format!("bucket `{}` (from `{}`)", target_names[0], names[0])), "{text}");
    assert!(text.contains("0 server-side"), "{text}");
    for i in [0, 3, 4] {
        let want = contents(&bucket(&names[i]).await).await;
        let got = contents(&bucket(&target_names[i]).await).await;
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "bucket {}", names[i]);
        assert!(got == want, "contents of {} differ after the restore", target_names[i]);
    }
    // A second restore finds everything in place.
    let out = Run::garage(&["restore", "--only", "objects"], &prefix)
        .env_remove("SEATABLE_BACKUP_DB_CONTAINER")
        .env("SEATABLE_BACKUP_SEATABLE_ROOT", target.root())
        .output();
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("0 objects put back"), "{}", stdout(&out));

    // Deleting an object a later set references is caught by verify.
    store.delete(&held[0]).await.unwrap();
    let out = run(&["verify"]).output();
    assert_exit(&out, 5);
    assert!(stderr(&out).contains("files/00/content.json") && stderr(&out).contains("missing"), "{}", stderr(&out));
}

/// A bucket SeaTable encrypts with a customer key (SSE-C): the key from `.env` is sent with
/// every read; without it the mirror fails naming the bucket instead of copying nothing.
#[tokio::test]
async fn an_sse_c_bucket_is_read_with_its_key() {
    use seatable_backup::config::Secret;
    use seatable_backup::store::s3::SseC;
    let _lock = fixtures::lock();
    let e = env();
    let names = buckets("ssec");
    let key = "0123456789abcdef0123456789abcdef";
    let settings = e.s3_settings(RequestChecksums::WhenSupported);
    let sse = SseC::from_key(&Secret::new(key)).unwrap();
    let encrypted = S3Store::new(&names[0], &settings).await.unwrap().with_sse_c(Some(sse));
    encrypted.put_object("files/secret.json", bytes(42, 5_000).into()).await.expect("SSE-C put");
    // Without the key the object cannot be read.
    assert!(bucket(&names[0]).await.get_object("files/secret.json").await.is_err());

    let s3 = s3_fixture(e.endpoint(), &names);
    let f = Fixture::v62(&s3, fixtures::unique_db_names("ssec"));
    let env_file = f.compose_dir().join(".env");
    let prefix = unique_prefix("mirror-ssec");
    let run = || {
        Run::garage(&["backup", "--only", "data"], &prefix)
            .env_remove("SEATABLE_BACKUP_DB_CONTAINER")
            .env("SEATABLE_BACKUP_SEATABLE_ROOT", f.root())
            .env("SEATABLE_BACKUP_MIRROR_OBJECT_STORAGE", "true")
            .output()
    };
    let out = run();
    assert_exit(&out, 4);
    assert!(stderr(&out).contains(&names[0]), "{}", stderr(&out));

    let mut text = std::fs::read_to_string(&env_file).unwrap();
    text.push_str(&format!("S3_SSE_C_KEY={key}\n"));
    std::fs::write(&env_file, text).unwrap();
    let out = run();
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(key));
    let m = manifests(&prefix).await.pop().unwrap();
    let s = &mirrors(&m)[&names[0]];
    assert_eq!((s.objects, s.copied_objects), (1, 1));
    assert!(s.sse_c);
    let raw = serde_json::to_string(&m).unwrap();
    assert!(!raw.contains(key), "the manifest holds the SSE-C key");
    // The copy in the set is readable (plain) and equal to the source.
    let store = e.s3(RequestChecksums::WhenSupported).await;
    let copies = common::keys_ending(store.as_ref(), &prefix, "files/secret.json").await;
    assert_eq!(store.get_object(&copies[0]).await.unwrap().to_vec(), bytes(42, 5_000));
}
