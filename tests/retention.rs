//! Retention against the real Garage: lifecycle rules (`retention show/apply`, merged with a
//! rule that is not ours, applied twice without change), the class of a run placed on chosen
//! days by the settable clock (`SEATABLE_BACKUP_NOW`), and `prune` on synthetic sets with
//! chosen stamps, on Garage and on the local-directory store (which refuses lifecycle rules and
//! points to prune). Object Lock, which Garage does not have, is checked against moto's S3
//! server (`SEATABLE_BACKUP_TEST_LOCK_S3_ENDPOINT`, started by `scripts/testenv`).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{assert_exit, env, stderr, stdout, unique_prefix, Run};
use seatable_backup::catalog::{self, Kind, Manifest, ObjectEntry, SetClass, SetId, SourceInfo};
use seatable_backup::config::RequestChecksums;
use seatable_backup::store::local::LocalStore;
use seatable_backup::store::s3::S3Store;
use seatable_backup::store::{BucketAdmin, LifecycleRule, Store};

/// A bucket of its own: lifecycle rules are per bucket, and other tests share the main one.
fn own_bucket(tag: &str) -> String {
    let name = format!("ret-{tag}-{}", std::process::id());
    common::garage_bucket(&name);
    name
}

async fn store_of(bucket: &str, checksums: RequestChecksums) -> Arc<S3Store> {
    Arc::new(S3Store::new(bucket, &env().s3_settings(checksums)).await.expect("S3 store"))
}

fn foreign_rule() -> LifecycleRule {
    LifecycleRule { expiration_days: Some(30), ..LifecycleRule::new("keep-logs-30-days".into(), "logs/".into()) }
}

fn ids(rules: &[LifecycleRule]) -> Vec<String> {
    rules.iter().map(|r| r.id.clone()).collect()
}

#[tokio::test]
async fn lifecycle_rules_round_trip_on_garage() {
    for (tag, checksums, flag) in [
        ("ws", RequestChecksums::WhenSupported, "when_supported"),
        ("wr", RequestChecksums::WhenRequired, "when_required"),
    ] {
        let bucket = own_bucket(tag);
        let store = store_of(&bucket, checksums).await;
        // A user's rule is there first.
        store.put_lifecycle_rules(vec![foreign_rule()]).await.unwrap();
        let run = |args: &[&str]| {
            Run::garage(args, "backups")
                .env("SEATABLE_BACKUP_DESTINATION", format!("s3://{bucket}"))
                .env("SEATABLE_BACKUP_S3_REQUEST_CHECKSUMS", flag)
                .output()
        };

        let out = run(&["retention", "show"]);
        assert_exit(&out, 0);
        let text = stdout(&out);
        assert!(text.contains("keep-logs-30-days") && text.contains("not ours, kept"), "{text}");
        assert!(text.contains("seatable-backup:backups:daily") && text.contains("[MISSING]"), "{text}");
        assert!(text.contains("do NOT match"), "{text}");

        let out = run(&["retention", "apply", "--dry-run"]);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("Dry run: nothing written"), "{}", stdout(&out));
        assert_eq!(ids(&store.lifecycle_rules().await.unwrap()), ["keep-logs-30-days"]);

        let out = run(&["retention", "apply"]);
        assert_exit(&out, 0);
        let rules = store.lifecycle_rules().await.unwrap();
        assert_eq!(
            ids(&rules),
            [
                "keep-logs-30-days",
                "seatable-backup:backups:daily",
                "seatable-backup:backups:weekly",
                "seatable-backup:backups:monthly",
                "seatable-backup:backups:abort-incomplete-uploads"
            ]
        );
        // The foreign rule is untouched; ours are what the defaults say.
        assert_eq!(rules[0], foreign_rule());
        let specs = rules[1..].to_vec();
        assert_eq!(
            specs,
            seatable_backup::retention::wanted_rules(
                "backups",
                &seatable_backup::config::RetentionConfig::default(),
                false
            )
        );
        assert_eq!(specs[0].prefix, "backups/daily/");
        assert_eq!(specs[0].expiration_days, Some(7));
        assert_eq!(specs[3].abort_incomplete_days, Some(1));

        let out = run(&["retention", "show", "--json"]);
        assert_exit(&out, 0);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["lifecycle"]["matches"], true, "{v}");
        let out = run(&["retention", "show"]);
        assert!(stdout(&out).contains("are the ones this configuration expects"), "{}", stdout(&out));

        // Twice is a no-op: nothing written.
        let out = run(&["retention", "apply"]);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("nothing to change"), "{}", stdout(&out));
        assert_eq!(store.lifecycle_rules().await.unwrap(), rules);

        // New keep days: our daily rule is rewritten, the rest stays.
        let out = Run::garage(&["retention", "apply", "--keep-daily", "3"], "backups")
            .env("SEATABLE_BACKUP_DESTINATION", format!("s3://{bucket}"))
            .env("SEATABLE_BACKUP_S3_REQUEST_CHECKSUMS", flag)
            .output();
        assert_exit(&out, 0);
        let after = store.lifecycle_rules().await.unwrap();
        assert_eq!(ids(&after), ids(&rules));
        assert_eq!(after[0], foreign_rule());
        assert_eq!(after[1].expiration_days, Some(3));
        let out = run(&["retention", "show"]);
        assert!(stdout(&out).contains("DIFFERS"), "{}", stdout(&out));

        // Another configuration (prefix) sharing the bucket leaves our rules alone.
        let out = Run::garage(&["retention", "apply"], "other")
            .env("SEATABLE_BACKUP_DESTINATION", format!("s3://{bucket}"))
            .env("SEATABLE_BACKUP_S3_REQUEST_CHECKSUMS", flag)
            .output();
        assert_exit(&out, 0);
        let both = store.lifecycle_rules().await.unwrap();
        assert_eq!(both.len(), 9, "{:?}", ids(&both));
        assert_eq!(&both[..5], &after[..]);
    }
}

/// A key that may only read `bucket` (like the restore role), as (key id, secret).
fn read_only_key(bucket: &str) -> (String, String) {
    let e = env();
    let name = format!("ro-{bucket}");
    let out = std::process::Command::new(e.get("SEATABLE_BACKUP_TEST_GARAGE_BIN"))
        .args(["-c", e.get("SEATABLE_BACKUP_TEST_GARAGE_CONFIG"), "key", "create", &name])
        .output()
        .expect("garage key create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no `{label}` in: {text}"))
    };
    let (id, secret) = (field("Key ID:"), field("Secret key:"));
    common::garage_cli(&["bucket", "allow", "--read", bucket, "--key", &id]);
    (id, secret)
}

/// Credentials without the rights: a clear cause and a hint to use the admin credentials, and
/// nothing changed.
#[tokio::test]
async fn without_the_rights_retention_and_prune_say_which_credentials_to_use() {
    let bucket = own_bucket("ro");
    let store = store_of(&bucket, RequestChecksums::WhenSupported).await;
    synthetic_set(store.as_ref(), "p", SetClass::Daily, "h", "2026-01-01T020000Z").await;
    synthetic_set(store.as_ref(), "p", SetClass::Daily, "h", "2026-01-02T020000Z").await;
    let (id, secret) = read_only_key(&bucket);
    let run = |args: &[&str]| {
        Run::garage(args, "p")
            .env("SEATABLE_BACKUP_DESTINATION", format!("s3://{bucket}"))
            .env("AWS_ACCESS_KEY_ID", &id)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env("SEATABLE_BACKUP_NOW", "2027-06-01T00:00:00Z")
            .output()
    };
    let out = run(&["retention", "apply"]);
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("lifecycle rules of s3://") && err.contains("admin credentials"), "{err}");
    assert!(!err.contains(&secret), "{err}");
    assert!(store.lifecycle_rules().await.unwrap().is_empty());

    let out = run(&["prune"]);
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("prune failed") && err.contains("admin credentials"), "{err}");
    // Its manifest could not be deleted, so nothing of the set was.
    assert_eq!(sets_of(store.as_ref(), "p").await, ["daily/h/2026-01-01T020000Z", "daily/h/2026-01-02T020000Z"]);
}

#[test]
fn a_store_without_lifecycle_rules_points_to_prune() {
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("file://{}", dir.path().display());
    let out = Run::new(&["retention", "apply"]).env("SEATABLE_BACKUP_DESTINATION", &dest).output();
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("does not support lifecycle rules"), "{err}");
    assert!(err.contains("hint:") && err.contains("seatable-backup prune"), "{err}");
    let out = Run::new(&["retention", "show"]).env("SEATABLE_BACKUP_DESTINATION", &dest).output();
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("seatable-backup prune"), "{}", stdout(&out));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "retention wrote into the store");
}

/// Writes a complete synthetic set: one small dump object and its manifest.
async fn synthetic_set(store: &dyn Store, prefix: &str, class: SetClass, host: &str, stamp: &str) -> String {
    let id = SetId { class, host: host.into(), stamp: stamp.into() };
    let key = id.key(prefix, "db/ccnet_db.sql.zst");
    let body = bytes::Bytes::from(format!("dump of {stamp}"));
    store.put_object(&key, body.clone()).await.unwrap();
    use sha2::Digest;
    let t = catalog::parse_stamp(stamp).unwrap();
    let manifest = Manifest {
        schema: catalog::SCHEMA_VERSION,
        tool: "seatable-backup".into(),
        tool_version: "test".into(),
        host: host.into(),
        class,
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
            chunk_size: 0,
            chunk_sha256: vec![],
            parts: 1,
            database: Some("ccnet_db".into()),
            excluded_tables: vec![],
            only_tables: vec![],
            tar: None,
            mirror: None,
        }],
        skipped: vec![],
        warnings: vec![],
        seatable: None,
        requires: vec![],
    };
    store.put_object(&id.key(prefix, catalog::MANIFEST), manifest.to_json().into()).await.unwrap();
    id.dir(prefix)
}

async fn sets_of(store: &dyn Store, prefix: &str) -> Vec<String> {
    catalog::list_sets(store, prefix)
        .await
        .unwrap()
        .iter()
        .map(|s| format!("{}{}", s.id(), if s.complete { "" } else { " (incomplete)" }))
        .collect()
}

/// A run placed on chosen days by the clock gets its class from what the bucket holds.
#[tokio::test]
async fn class_follows_the_sets_in_the_bucket_on_a_set_clock() {
    let prefix = unique_prefix("class");
    let store = env().s3(RequestChecksums::WhenSupported).await;
    let data = tempfile::tempdir().unwrap();
    common::demo_data(data.path(), 1);
    // December's monthly set exists already (written by an "earlier run").
    synthetic_set(store.as_ref(), &prefix, SetClass::Monthly, "testhost", "2026-12-01T020000Z").await;
    let backup_at = |now: &str| {
        let out = Run::garage(&["backup", "--only", "data"], &prefix)
            .env("SEATABLE_BACKUP_DATA_DIR", data.path())
            .env("SEATABLE_BACKUP_NOW", now)
            .output();
        assert_exit(&out, 0);
    };
    // Wed 2026-12-02: same month and ISO week (49) -> daily.
    backup_at("2026-12-02T02:00:00Z");
    // Mon 2026-12-07: a new ISO week -> weekly; later that week -> daily again.
    backup_at("2026-12-07T02:00:00Z");
    backup_at("2026-12-08T02:00:00Z");
    // 2027-01-01 (a Friday, ISO week 53 of 2026): a new month -> monthly.
    backup_at("2027-01-01T02:00:00Z");
    assert_eq!(
        sets_of(store.as_ref(), &prefix).await,
        [
            "monthly/testhost/2026-12-01T020000Z",
            "daily/testhost/2026-12-02T020000Z",
            "weekly/testhost/2026-12-07T020000Z",
            "daily/testhost/2026-12-08T020000Z",
            "monthly/testhost/2027-01-01T020000Z",
        ]
    );
    let out = Run::garage(&["backup", "--only", "data"], &prefix).env("SEATABLE_BACKUP_NOW", "yesterday").output();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("SEATABLE_BACKUP_NOW"), "{}", stderr(&out));
}

async fn prune_scenario(store: Arc<dyn Store>, prefix: &str, run: impl Fn(&[&str], &str) -> std::process::Output) {
    let p = prefix;
    for (class, host, stamp) in [
        (SetClass::Monthly, "a", "2026-10-01T020000Z"), // expires 2027-10-02
        (SetClass::Weekly, "a", "2026-10-05T020000Z"),  // expires 2026-11-10
        (SetClass::Daily, "a", "2026-10-06T020000Z"),   // expires 2026-10-14
        (SetClass::Weekly, "a", "2026-11-30T020000Z"),  // expires 2027-01-05
        (SetClass::Daily, "a", "2026-12-01T020000Z"),   // expires 2026-12-09
        (SetClass::Daily, "a", "2026-12-02T020000Z"),   // expires 2026-12-10
        (SetClass::Monthly, "b", "2026-06-01T020000Z"), // expires 2027-06-02
        (SetClass::Daily, "b", "2026-06-02T020000Z"),   // expired long ago, but b's newest
    ] {
        synthetic_set(store.as_ref(), p, class, host, stamp).await;
    }
    // A run that died: objects without manifest.
    store
        .put_object(
            &format!("{p}/daily/a/2026-12-03T020000Z/db/ccnet_db.sql.zst"),
            bytes::Bytes::from_static(b"partial"),
        )
        .await
        .unwrap();
    // On 2026-12-09 (real time now is earlier than the clock): the daily of 12-01 is due.
    let now = "2026-12-09T12:00:00Z";
    let before = sets_of(store.as_ref(), p).await;
    let out = run(&["prune", "--dry-run"], now);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("would delete daily/a/2026-12-01T020000Z"), "{text}");
    assert!(text.contains("would delete daily/a/2026-10-06T020000Z"), "{text}");
    assert!(text.contains("would delete weekly/a/2026-10-05T020000Z"), "{text}");
    assert!(text.contains("keep         daily/b/2026-06-02T020000Z"), "{text}");
    assert_eq!(sets_of(store.as_ref(), p).await, before, "a dry run deleted something");

    let out = run(&["prune", "--json"], now);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["deleted_sets"], 3, "{v}");
    assert_eq!(
        sets_of(store.as_ref(), p).await,
        [
            "monthly/a/2026-10-01T020000Z",
            "weekly/a/2026-11-30T020000Z",
            "daily/a/2026-12-02T020000Z",
            "daily/a/2026-12-03T020000Z (incomplete)",
            "monthly/b/2026-06-01T020000Z",
            "daily/b/2026-06-02T020000Z",
        ]
    );
    // An upload of this tool left open: not a day old by the real clock, so kept; two days on,
    // it would be aborted.
    let open = store.create_upload(&format!("{p}/daily/a/2026-12-03T020000Z/data/seatable.tar.zst")).await.unwrap();
    open.put_part(1, 0, bytes::Bytes::from(vec![7u8; 1024])).await.unwrap();
    let real = chrono::Utc::now();
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stale = |now: &str| {
        let out = run(&["prune", "--dry-run", "--json"], now);
        assert_exit(&out, 0);
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["stale_uploads"].as_array().unwrap().len()
    };
    assert_eq!(stale(&at(real + chrono::Duration::hours(1))), 0);
    assert_eq!(stale(&at(real + chrono::Duration::days(2))), 1);
    assert_eq!(store.list_open_uploads(&format!("{p}/")).await.unwrap().len(), 1);

    // Years on: only each host's newest complete set survives; the incomplete set goes, and
    // the upload left open is aborted.
    let later = at(real + chrono::Duration::days(1500));
    let out = run(&["prune"], &later);
    assert_exit(&out, 0);
    assert_eq!(sets_of(store.as_ref(), p).await, ["daily/a/2026-12-02T020000Z", "daily/b/2026-06-02T020000Z"]);
    assert!(stdout(&out).contains("Aborted 1 upload(s)"), "{}", stdout(&out));
    assert!(store.list_open_uploads(&format!("{p}/")).await.unwrap().is_empty());

    // keep_last holds more.
    synthetic_set(store.as_ref(), p, SetClass::Daily, "a", "2026-12-04T020000Z").await;
    let out = run(&["prune", "--keep-last", "2"], &later);
    assert_exit(&out, 0);
    assert_eq!(
        sets_of(store.as_ref(), p).await,
        ["daily/a/2026-12-02T020000Z", "daily/a/2026-12-04T020000Z", "daily/b/2026-06-02T020000Z"]
    );
    // A newest set that lost an object (expired by a rule, say) is DAMAGED in `list`, does not
    // protect itself, and the restorable one before it is kept instead.
    store.delete(&format!("{p}/daily/a/2026-12-04T020000Z/db/ccnet_db.sql.zst")).await.unwrap();
    let out = run(&["list"], &later);
    assert!(stdout(&out).contains("DAMAGED"), "{}", stdout(&out));
    let out = run(&["verify", "2026-12-04T020000Z", "--from-host", "a"], &later);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains("db/ccnet_db.sql.zst") && stderr(&out).contains("incomplete"), "{}", stderr(&out));
    let out = run(&["prune"], &later);
    assert_exit(&out, 0);
    assert_eq!(sets_of(store.as_ref(), p).await, ["daily/a/2026-12-02T020000Z", "daily/b/2026-06-02T020000Z"]);
}

#[tokio::test]
async fn prune_on_garage_keeps_what_it_must() {
    let prefix = unique_prefix("prune");
    let store = env().s3(RequestChecksums::WhenSupported).await;
    prune_scenario(store, &prefix, |args, now| Run::garage(args, &prefix).env("SEATABLE_BACKUP_NOW", now).output())
        .await;
}

#[tokio::test]
async fn prune_on_a_local_directory_keeps_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path().to_path_buf()));
    let dest = format!("file://{}", dir.path().display());
    prune_scenario(store, "backups", |args, now| {
        Run::new(args)
            .env("SEATABLE_BACKUP_DESTINATION", &dest)
            .env("SEATABLE_BACKUP_PREFIX", "backups")
            .env("SEATABLE_BACKUP_NOW", now)
            .output()
    })
    .await;
}

/// A client of the Object Lock store (moto's S3 server: Garage has no Object Lock).
async fn lock_client() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(env().get("SEATABLE_BACKUP_TEST_LOCK_S3_ENDPOINT"))
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The binary against bucket `bucket` of the Object Lock store.
fn lock_run(bucket: &str, data: &Path, prefix: &str, extra: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut r = Run::new(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("SEATABLE_BACKUP_DESTINATION", format!("s3://{bucket}"))
        .env("SEATABLE_BACKUP_S3_ENDPOINT", env().get("SEATABLE_BACKUP_TEST_LOCK_S3_ENDPOINT"))
        .env("SEATABLE_BACKUP_S3_REGION", "us-east-1")
        .env("SEATABLE_BACKUP_S3_PATH_STYLE", "true")
        .env("SEATABLE_BACKUP_PREFIX", prefix)
        .env("SEATABLE_BACKUP_DATA_DIR", data)
        .env("SEATABLE_BACKUP_BIG_DATA_BACKUP", "false")
        .env("SEATABLE_BACKUP_HOST_NAME", "locked");
    for (k, v) in extra {
        r = r.env(k, v);
    }
    r.output()
}

/// (key, lock mode, retain-until in days from now, version) of every object version under `prefix`.
async fn locks(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, Option<String>, Option<f64>, String)> {
    let now = chrono::Utc::now().timestamp();
    let versions = client.list_object_versions().bucket(bucket).prefix(prefix).send().await.unwrap();
    let mut out = Vec::new();
    for v in versions.versions() {
        let (key, version) = (v.key().unwrap().to_string(), v.version_id().unwrap().to_string());
        let head = client.head_object().bucket(bucket).key(&key).version_id(&version).send().await.unwrap();
        let days = head.object_lock_retain_until_date().map(|d| (d.secs() - now) as f64 / 86_400.0);
        out.push((key, head.object_lock_mode().map(|m| m.as_str().to_string()), days, version));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_are_locked_on_a_bucket_with_object_lock() {
    let client = lock_client().await;
    let bucket = format!("locked-{}", std::process::id());
    client.create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(true).send().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    common::demo_data(data.path(), 1);

    // Default: governance mode, for the class's keep days (the first set is monthly: 365).
    let out = lock_run(&bucket, data.path(), "a", &[], &["backup", "--only", "data"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("set locked"), "{}", stderr(&out));
    let a = locks(&client, &bucket, "a/").await;
    assert_eq!(a.len(), 2, "{a:?}"); // the archive and the manifest
    for (key, mode, days, _) in &a {
        assert_eq!(mode.as_deref(), Some("GOVERNANCE"), "{key}");
        assert!((364.9..365.1).contains(&days.unwrap()), "{key}: locked for {days:?} days");
    }
    // The lock holds: a version cannot be deleted, not even by the credentials that wrote it.
    let (key, _, _, version) = &a[0];
    let err = client.delete_object().bucket(&bucket).key(key).version_id(version).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("AccessDenied"), "{err:?}");

    // Compliance mode for 3 days, as configured.
    let lock3 = [("SEATABLE_BACKUP_OBJECT_LOCK_MODE", "compliance"), ("SEATABLE_BACKUP_OBJECT_LOCK_DAYS", "3")];
    let out = lock_run(&bucket, data.path(), "b", &lock3, &["backup", "--only", "data"]);
    assert_exit(&out, 0);
    for (key, mode, days, _) in locks(&client, &bucket, "b/").await {
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{key}");
        assert!((2.9..3.1).contains(&days.unwrap()), "{key}: locked for {days:?} days");
    }

    // Turned off: nothing is locked.
    let off = [("SEATABLE_BACKUP_OBJECT_LOCK", "off")];
    let out = lock_run(&bucket, data.path(), "c", &off, &["backup", "--only", "data"]);
    assert_exit(&out, 0);
    let c = locks(&client, &bucket, "c/").await;
    assert!(!c.is_empty() && c.iter().all(|(_, mode, _, _)| mode.is_none()), "{c:?}");

    // The bucket is versioned (Object Lock needs it): `retention apply` adds the rule that
    // removes noncurrent versions once they may go, and `show` confirms the rules.
    let out = lock_run(&bucket, data.path(), "a", &[], &["retention", "apply"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("seatable-backup:a:noncurrent-versions"), "{}", stdout(&out));
    let out = lock_run(&bucket, data.path(), "a", &[], &["retention", "show", "--json"]);
    assert_exit(&out, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["lifecycle"]["matches"], true, "{v}");
    assert_eq!(v["object_lock"], true, "{v}");
}
