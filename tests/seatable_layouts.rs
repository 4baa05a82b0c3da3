//! The tool reads the install it protects (SEATABLE.md): each fixture is a host root laid out
//! as one of SeaTable's versions lays it out, with its containers named as SeaTable names them
//! on the Podman API. `plan` must describe it correctly, and `backup` must include and skip
//! exactly what SEATABLE.md says. Real Garage, real MariaDB containers, real app-container
//! stand-ins whose `seatable.sh backup-all` writes into `storage-data`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use common::fixtures::{self, AppContainer, BackupAll, Fixture, S3Fixture};
use common::{assert_exit, env, fetch_decompressed, stderr, stdout, unique_prefix, Run};
use seatable_backup::catalog::Manifest;
use seatable_backup::config::{Algorithm, RequestChecksums};
use serde_json::Value;

/// The binary against the test Garage, with SeaTable's paths under the fixture's root and
/// nothing about the database or the data directory configured: everything is detected.
fn run_in(f: &Fixture, args: &[&str], prefix: &str) -> Run {
    Run::garage(args, prefix).env_remove("SEATABLE_BACKUP_DB_CONTAINER").env("SEATABLE_BACKUP_SEATABLE_ROOT", f.root())
}

fn plan_of(f: &Fixture, prefix: &str) -> Value {
    let out = run_in(f, &["plan", "--json"], prefix).output();
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("plan --json: {e}: {}", stdout(&out)))
}

fn text_plan_of(f: &Fixture, prefix: &str) -> String {
    let out = run_in(f, &["plan"], prefix).output();
    assert_exit(&out, 0);
    stdout(&out)
}

async fn manifest_of(prefix: &str) -> (Manifest, String) {
    let store = env().s3(RequestChecksums::WhenSupported).await;
    let keys = common::keys_ending(store.as_ref(), prefix, "/manifest.json").await;
    assert_eq!(keys.len(), 1, "one set expected: {keys:?}");
    let bytes = store.get_object(&keys[0]).await.expect("manifest");
    (Manifest::from_json(&bytes).expect("manifest parses"), String::from_utf8_lossy(&bytes).into_owned())
}

/// Entry names and modes of a stored tar object.
async fn tar_entries(key: &str) -> BTreeMap<String, u32> {
    let store = env().s3(RequestChecksums::WhenSupported).await;
    let bytes = fetch_decompressed(store.as_ref(), key, Algorithm::Zstd).await;
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut out = BTreeMap::new();
    for e in archive.entries().expect("tar") {
        let e = e.expect("tar entry");
        let name = e.path().expect("path").to_string_lossy().trim_end_matches('/').to_string();
        out.insert(name, e.header().mode().unwrap_or(0));
    }
    out
}

/// The text of one file in a stored tar object.
async fn tar_file(key: &str, name: &str) -> String {
    let store = env().s3(RequestChecksums::WhenSupported).await;
    let bytes = fetch_decompressed(store.as_ref(), key, Algorithm::Zstd).await;
    let mut archive = tar::Archive::new(&bytes[..]);
    for e in archive.entries().expect("tar") {
        let mut e = e.expect("tar entry");
        if e.path().expect("path").to_string_lossy() == name {
            let mut s = String::new();
            e.read_to_string(&mut s).expect("read");
            return s;
        }
    }
    panic!("{name} not in {key}");
}

fn components(m: &Manifest) -> Vec<String> {
    m.objects.iter().map(|o| o.component.clone()).collect()
}

fn key_of(m: &Manifest, component: &str) -> String {
    m.objects.iter().find(|o| o.component == component).unwrap_or_else(|| panic!("no {component}")).key.clone()
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or_else(|| panic!("{path:?} is not a string in {v}"))
}

#[tokio::test]
async fn old_layout_is_detected_and_backed_up_with_its_top_level_config() {
    let _lock = fixtures::lock();
    let e = env();
    let f = Fixture::old();
    let _app = AppContainer::start("seatable", &f, "4.1.2", BackupAll::Succeeds);
    let prefix = unique_prefix("old-layout");

    let plan = plan_of(&f, &prefix);
    assert_eq!(plan["layout"], "old");
    assert_eq!(str_of(&plan, &["data_dir"]), f.data_dir().display().to_string());
    assert!(str_of(&plan, &["seatable", "database"]).contains(&format!("`{}`", e.container())), "{plan}");
    assert_eq!(plan["seatable"]["version"], "4.1.2");
    assert!(str_of(&plan, &["seatable", "big_data_backup"]).contains("runs in `seatable`"), "{plan}");
    let storage = plan["seatable"]["storage"].as_array().unwrap();
    assert_eq!(storage.len(), 4, "{plan}");
    assert!(storage.iter().all(|s| s["backend"] == "filesystem" && s["in_backup"] == true), "{plan}");
    let included = plan["included"].to_string();
    assert!(included.contains("top-level files of"), "{included}");
    let text = text_plan_of(&f, &prefix);
    assert!(text.contains("layout:       old") && text.contains("a backup WILL hold:"), "{text}");

    let out = run_in(&f, &["backup"], &prefix).output();
    assert_exit(&out, 0);
    let (m, _) = manifest_of(&prefix).await;
    assert_eq!(m.layout, "old");
    assert_eq!(components(&m), ["db/ccnet_db", "db/seafile_db", "db/dtable_db", "data", "config"]);
    let st = m.seatable.as_ref().expect("seatable info");
    assert_eq!(st.version.as_deref(), Some("4.1.2"));
    assert_eq!(st.app_container.as_deref(), Some("seatable"));
    assert!(st.big_data_backup.starts_with("ran `seatable.sh backup-all` in `seatable`"), "{}", st.big_data_backup);
    assert_eq!(st.database_names, ["ccnet_db", "seafile_db", "dtable_db"]);

    // The data archive: what SEATABLE.md says, including what backup-all just wrote.
    let data = tar_entries(&key_of(&m, "data")).await;
    for d in fixtures::ARCHIVED_DIRS {
        assert!(data.contains_key(d), "{d} missing from the data archive");
    }
    for d in fixtures::SKIPPED_DIRS {
        assert!(!data.keys().any(|k| k == d || k.starts_with(&format!("{d}/"))), "{d} must not be archived");
    }
    assert!(
        data.keys().any(|k| k.starts_with("storage-data/big-data-backups/backup-all-")),
        "the Big Data backup written by backup-all is not in the archive"
    );

    // The config component: the compose file, not the data or the DB's files below /opt/seatable.
    let config = tar_entries(&key_of(&m, "config")).await;
    assert!(config.contains_key("docker-compose.yml"), "{config:?}");
    assert!(!config.keys().any(|k| k.starts_with("seatable-data") || k.starts_with("mysql-data")), "{config:?}");
    assert!(m.skipped.iter().any(|s| s.what == "config/mysql-data"), "{:?}", m.skipped);
}

#[tokio::test]
async fn new_layout_reads_env_names_scheduler_slim_dumps_and_restores_config() {
    let _lock = fixtures::lock();
    let e = env();
    let db = e.new_db_container();
    let names = fixtures::unique_db_names("newl");
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    fixtures::create_databases(db, &refs, true);
    fixtures::create_databases(db, &["scheduler"], false);
    let f = Fixture::new_layout(names.clone());
    let app = AppContainer::start("seatable-server", &f, "5.2.7", BackupAll::Succeeds);
    let prefix = unique_prefix("new-layout");

    let plan = plan_of(&f, &prefix);
    assert_eq!(plan["layout"], "new");
    assert!(str_of(&plan, &["seatable", "database"]).contains("container `mariadb`"), "{plan}");
    assert!(str_of(&plan, &["seatable", "database_names_from"]).contains(".env"), "{plan}");
    let want: Vec<String> = names.iter().cloned().chain(["scheduler".to_string()]).collect();
    assert_eq!(plan["databases"], serde_json::json!(want));
    assert_eq!(plan["seatable"]["version"], "5.2.7");
    assert!(str_of(&plan, &["seatable", "env_file"]).ends_with("opt/seatable-compose/.env"), "{plan}");

    // A slim backup: the log tables stay out of the dtable database's dump.
    let out = run_in(&f, &["backup"], &prefix).env("SEATABLE_BACKUP_DB_EXCLUDE_LOG_TABLES", "true").output();
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(fixtures::NEW_ROOT_PASSWORD));
    let (m, raw) = manifest_of(&prefix).await;
    assert!(!raw.contains(fixtures::NEW_ROOT_PASSWORD), "the manifest holds the DB password");
    let dtable = &names[2];
    let comps = components(&m);
    for n in &want {
        assert!(comps.contains(&format!("db/{n}")), "{comps:?}");
    }
    assert!(comps.contains(&"config".to_string()), "{comps:?}");
    let dump = m.objects.iter().find(|o| o.database.as_deref() == Some(dtable.as_str())).unwrap();
    let mut excluded = dump.excluded_tables.clone();
    excluded.sort();
    let mut expected: Vec<String> = fixtures::LOG_TABLES.iter().map(|t| format!("{dtable}.{t}")).collect();
    expected.sort();
    assert_eq!(excluded, expected);
    let store = e.s3(RequestChecksums::WhenSupported).await;
    let sql =
        String::from_utf8_lossy(&fetch_decompressed(store.as_ref(), &dump.key, Algorithm::Zstd).await).into_owned();
    assert!(sql.contains("CREATE TABLE `fixture_users`") && !sql.contains("CREATE TABLE `operation_log`"));
    assert_eq!(m.seatable.as_ref().unwrap().database_names, names.to_vec());

    // Onto a host whose `.env` names the databases differently: each goes into the name of
    // the same role there (a migration between installs).
    let other = fixtures::unique_db_names("newmap");
    let g = Fixture::new_layout(other.clone());
    let mut args = vec!["restore", "--only", "db"];
    for n in &names {
        args.extend(["--db", n.as_str()]);
    }
    let out = run_in(&g, &args, &prefix).output();
    assert_exit(&out, 0);
    for (from, to) in names.iter().zip(&other) {
        let want: Vec<(String, String)> =
            e.checksums_at(db, from).into_iter().filter(|(t, _)| !fixtures::LOG_TABLES.contains(&t.as_str())).collect();
        assert_eq!(e.checksums_at(db, to), want, "`{from}` restored into `{to}`");
    }
    let other_refs: Vec<&str> = other.iter().map(String::as_str).collect();
    fixtures::drop_databases(db, &other_refs);

    // `.env` travels in the config component, private as it was.
    let config_key = key_of(&m, "config");
    let config = tar_entries(&config_key).await;
    assert_eq!(config.get(".env").copied().map(|m| m & 0o777), Some(0o600), "{config:?}");
    assert!(config.contains_key("seatable-license.txt") && config.contains_key("seatable-server.yml"));
    let env_file = f.compose_dir().join(".env");
    let original = std::fs::read_to_string(&env_file).unwrap();
    assert_eq!(tar_file(&config_key, ".env").await, original);

    // `list` says what the set is.
    let out = run_in(&f, &["list"], &prefix).output();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("SeaTable 5.2.7") && text.contains("+config") && text.contains("slim (4 tables"), "{text}");

    // `restore --only config` puts the compose directory back (and keeps the previous one).
    std::fs::write(&env_file, "BROKEN=1\n").unwrap();
    let out = run_in(&f, &["restore", "--only", "config"], &prefix).output();
    assert_exit(&out, 0);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), original);
    let kept = std::fs::read_dir(f.compose_dir().parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("seatable-compose.before-restore-"));
    assert!(kept, "the previous compose directory was not kept");
    assert!(stdout(&out).contains("compose directory"), "{}", stdout(&out));

    // Restoring into an OLDER SeaTable is warned about before anything changes.
    drop(app);
    let _older = AppContainer::start("seatable-server", &f, "5.1.0", BackupAll::Succeeds);
    let out = run_in(&f, &["restore", "--only", "config", "--dry-run"], &prefix).output();
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("OLDER"), "{}", stderr(&out));

    // The log tables in an object of their own: the set is whole again, and a restore puts
    // them back together with the rest of the database.
    let prefix = unique_prefix("new-layout-logs");
    let out = run_in(&f, &["backup", "--only", "db"], &prefix)
        .env("SEATABLE_BACKUP_DB_LOG_TABLES_SEPARATELY", "true")
        .output();
    assert_exit(&out, 0);
    let (m, _) = manifest_of(&prefix).await;
    let logs = m.objects.iter().find(|o| o.component == format!("db/{dtable}/log-tables")).expect("log-tables object");
    assert!(logs.key.ends_with(&format!("/db/{dtable}.log-tables.sql.zst")), "{}", logs.key);
    let mut only = logs.only_tables.clone();
    only.sort();
    let mut want_logs: Vec<String> = fixtures::LOG_TABLES.iter().map(|t| t.to_string()).collect();
    want_logs.sort();
    assert_eq!(only, want_logs);
    assert!(!m.skipped.iter().any(|s| s.what.contains("operation_log")), "{:?}", m.skipped);
    let out = run_in(&f, &["list"], &prefix).output();
    assert!(!stdout(&out).contains("slim"), "{}", stdout(&out));
    let before = e.checksums_at(db, dtable);
    e.sql_at(db, dtable, "DELETE FROM operation_log; DELETE FROM fixture_users WHERE id = 1;");
    assert_ne!(e.checksums_at(db, dtable), before);
    let out = run_in(&f, &["restore", "--only", "db", "--db", dtable], &prefix).output();
    assert_exit(&out, 0);
    assert_eq!(e.checksums_at(db, dtable), before, "the restore did not bring back the log tables and the rest");

    fixtures::drop_databases(db, &refs);
    fixtures::drop_databases(db, &["scheduler"]);
}

fn s3_fixture(tag: &str) -> S3Fixture {
    let e = env();
    let buckets = ["storage", "commit", "fs", "block", "avatar"].map(|b| format!("st-{tag}-{b}"));
    S3Fixture::new(
        e.endpoint(),
        e.get("SEATABLE_BACKUP_TEST_S3_REGION"),
        e.get("SEATABLE_BACKUP_TEST_ACCESS_KEY_ID"),
        e.get("SEATABLE_BACKUP_TEST_SECRET_ACCESS_KEY"),
        [&buckets[0], &buckets[1], &buckets[2], &buckets[3], &buckets[4]],
    )
}

/// With dtable-storage-server and seafile on S3, their directories are not archived, the
/// manifest names the buckets (never the keys), and `plan` says they are NOT in the backup.
async fn object_storage_is_honoured(f: &Fixture, s3: &S3Fixture, prefix: &str, six_two: bool) {
    let e = env();
    let names = f.db_names();
    fixtures::create_databases(e.new_db_container(), &names, false);
    let plan = plan_of(f, prefix);
    let storage = plan["seatable"]["storage"].as_array().unwrap().clone();
    assert_eq!(storage.len(), if six_two { 5 } else { 4 }, "{plan}");
    assert!(storage.iter().all(|s| s["backend"] == "s3" && s["in_backup"] == false), "{plan}");
    assert_eq!(storage[0]["bucket"], s3.storage_bucket());
    assert_eq!(storage[3]["bucket"], s3.block_bucket());
    let source = str_of(&storage[0], &["source"]);
    if six_two {
        assert!(source.contains("STORAGE_SERVER_BACKEND_TYPE"), "{source}");
        assert_eq!(storage[4]["bucket"], s3.avatar_bucket());
    } else {
        assert!(source.contains("STORAGE_TYPE"), "{source}");
    }
    let not_included = plan["not_included"].to_string();
    assert!(not_included.contains(&format!("S3 bucket `{}`", s3.storage_bucket())), "{not_included}");
    assert!(not_included.contains("NOT in this backup"), "{not_included}");
    let text = text_plan_of(f, prefix);
    assert!(text.contains("it will NOT hold:") && text.contains(s3.block_bucket()), "{text}");
    assert!(!text.contains(&s3.secret) && !plan.to_string().contains(&s3.secret));

    let out = run_in(f, &["backup", "--only", "data"], prefix).output();
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("NOT in this backup") && err.contains(s3.storage_bucket()), "{err}");
    let (m, raw) = manifest_of(prefix).await;
    assert!(!raw.contains(&s3.secret) && !raw.contains(&s3.key_id), "the manifest holds S3 credentials");
    let data = tar_entries(&key_of(&m, "data")).await;
    assert!(!data.keys().any(|k| k.starts_with("storage-data")), "storage-data was archived");
    for kind in ["commits", "fs", "blocks"] {
        let p = format!("seafile-data/storage/{kind}");
        assert!(!data.keys().any(|k| k.starts_with(&p)), "{p} was archived");
    }
    assert!(data.contains_key("conf/dtable_web_settings.py") && data.contains_key("seahub-data"));
    let skipped = m.skipped.iter().find(|s| s.what == "data/storage-data").expect("storage-data skipped");
    assert!(skipped.why.contains(s3.storage_bucket()) && skipped.why.contains(e.endpoint()), "{}", skipped.why);
    // No app container in this fixture: the Big Data step is skipped with a note, not an error.
    assert!(m.skipped.iter().any(|s| s.what.contains("Big Data") && s.why.contains("no SeaTable app container")));
    fixtures::drop_databases(e.new_db_container(), &names);
}

#[tokio::test]
async fn seatable_6_1_with_s3_settings_in_env() {
    let _lock = fixtures::lock(); // no app container of another test may answer
    let s3 = s3_fixture("61");
    let f = Fixture::v61_s3(&s3, fixtures::unique_db_names("v61"));
    object_storage_is_honoured(&f, &s3, &unique_prefix("v61"), false).await;
}

#[tokio::test]
async fn seatable_6_2_without_storage_server_conf() {
    let _lock = fixtures::lock();
    let s3 = s3_fixture("62");
    let f = Fixture::v62(&s3, fixtures::unique_db_names("v62"));
    assert!(!f.data_dir().join("conf/dtable-storage-server.conf").exists());
    object_storage_is_honoured(&f, &s3, &unique_prefix("v62"), true).await;
}

#[tokio::test]
async fn a_failing_backup_all_fails_the_run_and_a_stopped_app_is_skipped() {
    let _lock = fixtures::lock();
    let f = Fixture::old();
    let prefix = unique_prefix("backup-all");
    {
        let _app = AppContainer::start("seatable", &f, "4.1.2", BackupAll::Fails);
        let out = run_in(&f, &["backup"], &prefix).output();
        assert_exit(&out, 3);
        let err = stderr(&out);
        let last = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
        assert!(
            last.contains("backup-all") && last.contains("`seatable`") && last.contains("dtable-db is not running"),
            "{err}"
        );
        let store = env().s3(RequestChecksums::WhenSupported).await;
        let left = store.list(&format!("{prefix}/")).await.unwrap();
        assert!(left.is_empty(), "a failed run left objects: {left:?}");
        assert!(store.list_open_uploads(&format!("{prefix}/")).await.unwrap().is_empty());
    }
    let app = AppContainer::start("seatable", &f, "4.1.2", BackupAll::Succeeds);
    let stop = fixtures::podman(&["stop", "-t", "0", &app.name]);
    assert!(stop.status.success());
    let out = run_in(&f, &["backup", "--only", "data"], &prefix).output();
    assert_exit(&out, 0);
    let (m, _) = manifest_of(&prefix).await;
    let note = m.skipped.iter().find(|s| s.what.contains("Big Data")).expect("a note on the skipped Big Data backup");
    assert!(note.why.contains("`seatable` is not running"), "{}", note.why);
}
