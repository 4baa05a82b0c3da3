//! End-to-end: per-chunk hashes (manifest schema 3) against Garage and the MariaDB container.
//! A backup records one SHA-256 per 4 MiB of each stored object; `verify` (and `--deep`, which
//! loads dumps into a throw-away database) refuses an object with a tampered chunk, naming the
//! chunk. Sets of the older schema (no chunk hashes) are still verified, whole.

mod common;

use common::{assert_exit, env, stderr, stdout, unique_prefix, Run};
use seatable_backup::catalog::{Kind, Manifest, CHUNK_SIZE};
use seatable_backup::config::RequestChecksums;
use seatable_backup::store::Store;

/// A database whose dump is larger than two chunks even compressed: random hex strings
/// (about 20 MiB of SQL, 10 MiB or more after zstd).
fn big_random_db(name: &str) {
    let e = env();
    e.sql(&format!("DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4"));
    // seq_1_to_N (the SEQUENCE engine) needs a current database.
    e.sql_in(
        name,
        "CREATE TABLE a_rows (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; \
         INSERT INTO a_rows SELECT seq, CONCAT(SHA2(RAND(), 512), SHA2(RAND(), 512), SHA2(RAND(), 512), SHA2(RAND(), 512)) FROM seq_1_to_40000; \
         CREATE TABLE z_after (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO z_after VALUES (1);",
    );
}

struct Set {
    db: String,
    prefix: String,
    manifest_key: String,
    manifest: Manifest,
    store: std::sync::Arc<dyn Store>,
}

impl Set {
    async fn backed_up(name: &str) -> Set {
        let db = format!("{name}_{}", std::process::id());
        big_random_db(&db);
        let prefix = unique_prefix(name);
        let out = Run::garage(&["backup", "--only", "db"], &prefix).env("SEATABLE_BACKUP_DATABASES", &db).output();
        assert_exit(&out, 0);
        let store = env().s3(RequestChecksums::WhenSupported).await;
        let keys = common::keys_ending(store.as_ref(), &prefix, "/manifest.json").await;
        assert_eq!(keys.len(), 1, "{keys:?}");
        let manifest = Manifest::from_json(&store.get_object(&keys[0]).await.unwrap()).unwrap();
        Set { db, prefix, manifest_key: keys[0].clone(), manifest, store }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Run::garage(args, &self.prefix).output()
    }

    fn dump(&self) -> &seatable_backup::catalog::ObjectEntry {
        self.manifest.objects.iter().find(|o| o.kind == Kind::MysqlDump).expect("a dump")
    }

    /// Flips one byte of the dump at `at`: same key, same size, through the store's API.
    async fn tamper(&self, at: u64) {
        let key = &self.dump().key;
        let mut bytes = self.store.get_object(key).await.unwrap().to_vec();
        bytes[at as usize] ^= 0x01;
        self.store.put_object(key, bytes.into()).await.unwrap();
    }

    /// No throw-away database of `verify --deep` is left.
    fn assert_no_scratch(&self) {
        let left = env().sql(&format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{}\\_\\_sb\\_%'",
            self.db
        ));
        assert_eq!(left.trim(), "", "throw-away databases left");
    }

    fn drop_db(&self) {
        env().sql(&format!("DROP DATABASE IF EXISTS `{}`", self.db));
    }
}

#[tokio::test]
async fn a_tampered_chunk_is_named_and_refused() {
    let set = Set::backed_up("chk").await;
    let m = &set.manifest;
    assert_eq!(m.schema, 3);
    assert!(m.requires.is_empty());
    let dump = set.dump().clone();
    assert!(dump.stored_size > CHUNK_SIZE + 4096, "the dump must span two chunks: {} bytes", dump.stored_size);
    assert_eq!(dump.chunk_size, CHUNK_SIZE);
    assert_eq!(dump.chunk_sha256.len() as u64, dump.stored_size.div_ceil(CHUNK_SIZE));
    assert!(dump.chunk_sha256.iter().all(|h| h.len() == 64));
    // The manifest on the wire names the fields (and no `requires` while it is empty).
    let raw = String::from_utf8(set.store.get_object(&set.manifest_key).await.unwrap().to_vec()).unwrap();
    assert!(raw.contains("\"chunk_size\": 4194304") && !raw.contains("requires"), "{raw}");

    let out = set.run(&["verify"]);
    assert_exit(&out, 0);
    let out = set.run(&["verify", "--deep"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("loads: 2 tables"), "{}", stdout(&out));

    // One byte changed in the second chunk.
    set.tamper(CHUNK_SIZE + 1000).await;
    let chunk = format!("chunk 1 (bytes {}..{})", CHUNK_SIZE, 2 * CHUNK_SIZE);
    for args in [&["verify"][..], &["verify", "--deep"][..]] {
        let out = set.run(args);
        assert_exit(&out, 5);
        let err = stderr(&out);
        assert!(err.contains(&dump.key) && err.contains(&chunk), "{args:?}: {err}");
    }
    set.assert_no_scratch();
    set.drop_db();
}

/// A set of schema 2 (no chunk hashes): verified whole; `--deep` checks the dump in a temporary
/// file before any of it is loaded.
#[tokio::test]
async fn sets_without_chunk_hashes_are_verified_whole() {
    let set = Set::backed_up("chklegacy").await;
    let mut v: serde_json::Value = serde_json::to_value(&set.manifest).unwrap();
    v["schema"] = 2.into();
    for o in v["objects"].as_array_mut().unwrap() {
        let o = o.as_object_mut().unwrap();
        o.remove("chunk_size");
        o.remove("chunk_sha256");
    }
    let legacy = serde_json::to_vec_pretty(&v).unwrap();
    assert!(!String::from_utf8_lossy(&legacy).contains("chunk_sha256"));
    set.store.put_object(&set.manifest_key, legacy.into()).await.unwrap();

    let out = set.run(&["verify", "--deep"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("loads: 2 tables"), "{}", stdout(&out));

    set.tamper(CHUNK_SIZE + 1000).await;
    for args in [&["verify"][..], &["verify", "--deep"][..]] {
        let out = set.run(args);
        assert_exit(&out, 5);
        let err = stderr(&out);
        assert!(err.contains(&set.dump().key) && err.contains("does not match the manifest"), "{args:?}: {err}");
    }
    set.assert_no_scratch();
    set.drop_db();
}

/// A forged manifest whose dump names an option-like database, or whose hash is empty, is refused
/// before anything is read.
#[tokio::test]
async fn forged_manifests_are_refused() {
    let set = Set::backed_up("chkforged").await;
    let stamp = set.manifest.stamp.clone();
    type Forgery = Box<dyn Fn(&mut Manifest)>;
    let cases: [(&str, Forgery); 3] = [
        ("not a plain identifier", Box::new(|m| m.objects[0].database = Some("--execute=DROP DATABASE x".into()))),
        ("malformed `sha256`", Box::new(|m| m.objects[0].sha256 = String::new())),
        (
            "entries in `chunk_sha256`",
            Box::new(|m| {
                m.objects[0].chunk_sha256.pop();
            }),
        ),
    ];
    for (want, change) in cases {
        let mut m = set.manifest.clone();
        change(&mut m);
        set.store.put_object(&set.manifest_key, m.to_json().into()).await.unwrap();
        let out = set.run(&["verify", &stamp]);
        assert_exit(&out, 5);
        assert!(stderr(&out).contains(want), "{want}: {}", stderr(&out));
    }
    set.drop_db();
}
