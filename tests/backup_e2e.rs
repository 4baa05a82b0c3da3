//! End-to-end: the binary against Garage and the MariaDB container (through Podman's Docker
//! API). Round trips of every component, the failures that must write nothing, and runs that
//! die half-way.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{assert_exit, env, stderr, stdout, unique_prefix, Run};
use seatable_backup::catalog::{Kind, Manifest};
use seatable_backup::config::{Algorithm, RequestChecksums};
use seatable_backup::seatable::defaults::ALWAYS_EXCLUDED;
use seatable_backup::store::Store;

async fn assert_nothing_written(prefix: &str) {
    let store = env().s3(RequestChecksums::WhenSupported).await;
    let objects = store.list(&format!("{prefix}/")).await.unwrap();
    assert!(objects.is_empty(), "objects were written: {objects:?}");
    let open = store.list_open_uploads(&format!("{prefix}/")).await.unwrap();
    assert!(open.is_empty(), "multipart uploads left open: {open:?}");
}

async fn manifest_of(store: &dyn Store, prefix: &str) -> Manifest {
    let keys = common::keys_ending(store, prefix, "/manifest.json").await;
    assert_eq!(keys.len(), 1, "one manifest expected: {keys:?}");
    Manifest::from_json(&store.get_object(&keys[0]).await.unwrap()).unwrap()
}

/// Loads `dump` into a fresh database and compares its tables with `original`'s.
fn assert_dump_restores(original: &str, dump: &[u8]) {
    let e = env();
    let scratch = format!("rt_{}_{}", original, std::process::id());
    e.sql(&format!("DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}` CHARACTER SET utf8mb4"));
    let out = e.db_client(&scratch, dump, &[]);
    assert!(out.status.success(), "loading the dump of {original} failed: {}", String::from_utf8_lossy(&out.stderr));
    let a = e.checksums(original);
    let b = e.checksums(&scratch);
    assert!(!a.is_empty(), "{original} has no tables");
    assert_eq!(a, b, "CHECKSUM TABLE differs between {original} and its restored dump");
    assert_eq!(e.schema_objects(original), e.schema_objects(&scratch), "routines/triggers/views differ");
    e.sql(&format!("DROP DATABASE `{scratch}`"));
}

#[tokio::test]
async fn full_backup_round_trips_every_component() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("seatable");
    common::demo_data(&data, 8);
    let prefix = unique_prefix("full");

    let out = Run::garage(&["backup"], &prefix).env("SEATABLE_BACKUP_DATA_DIR", &data).output();
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("backup complete"), "{}", stderr(&out));

    // `list` shows one complete set.
    let out = Run::garage(&["list", "--json"], &prefix).output();
    assert_exit(&out, 0);
    let sets: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let sets = sets.as_array().unwrap();
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0]["complete"], true);
    assert_eq!(sets[0]["host"], "testhost");
    assert_eq!(sets[0]["class"], "monthly", "the first set of a month is monthly");
    let out = Run::garage(&["list"], &prefix).output();
    assert!(stdout(&out).contains("complete") && stdout(&out).contains("testhost"), "{}", stdout(&out));

    // The manifest describes every object truthfully.
    let store = env().s3(RequestChecksums::WhenSupported).await;
    let m = manifest_of(store.as_ref(), &prefix).await;
    assert_eq!(m.host, "testhost");
    assert_eq!(m.objects.len(), 4);
    let components: Vec<&str> = m.objects.iter().map(|o| o.component.as_str()).collect();
    assert_eq!(components, ["db/ccnet_db", "db/seafile_db", "db/dtable_db", "data"], "databases first, then files");
    let listed = store.list(&format!("{prefix}/")).await.unwrap();
    for o in &m.objects {
        assert!(o.key.starts_with(&format!("{prefix}/monthly/testhost/")), "{}", o.key);
        let stored = listed.iter().find(|l| l.key == o.key).expect("object listed");
        assert_eq!(stored.size, o.stored_size, "{}", o.key);
        assert_eq!(common::sha256_of(store.as_ref(), &o.key).await, o.sha256, "{}", o.key);
        assert_eq!(o.compression, "zstd");
    }
    let json = String::from_utf8(m.to_json()).unwrap();
    assert!(!json.contains(env().get("SEATABLE_BACKUP_TEST_SECRET_ACCESS_KEY")), "secret in manifest");
    assert!(m.skipped.iter().any(|s| s.what == "data/logs"), "{:?}", m.skipped);

    // Each dump loads into a fresh database with identical CHECKSUM TABLE.
    for o in m.objects.iter().filter(|o| o.kind == Kind::MysqlDump) {
        let dump = common::fetch_decompressed(store.as_ref(), &o.key, Algorithm::Zstd).await;
        assert_eq!(dump.len() as u64, o.raw_size);
        assert!(String::from_utf8_lossy(&dump[dump.len().saturating_sub(100)..]).contains("-- Dump completed"));
        assert_dump_restores(o.database.as_deref().unwrap(), &dump);
    }

    // The tar unpacks (GNU tar) to an identical tree, without the excluded directories.
    let o = m.objects.iter().find(|o| o.kind == Kind::Tar).unwrap();
    let tar = common::fetch_decompressed(store.as_ref(), &o.key, Algorithm::Zstd).await;
    assert_eq!(tar.len() as u64, o.raw_size);
    let dest = work.path().join("restored");
    std::fs::create_dir(&dest).unwrap();
    let mut child = Command::new("tar")
        .args(["-xpf", "-", "--numeric-owner", "-C"])
        .arg(&dest)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "GNU tar could not unpack the archive");
    for skipped in ALWAYS_EXCLUDED {
        assert!(!dest.join(skipped).exists(), "{skipped} must not be archived");
    }
    common::tree::compare_trees(&data, &dest, &ALWAYS_EXCLUDED).unwrap_or_else(|d| panic!("{d}"));
}

#[tokio::test]
async fn backup_works_with_checksums_when_required_and_gzip() {
    let prefix = unique_prefix("compat");
    let out = Run::garage(&["backup", "--only", "db"], &prefix)
        .env("SEATABLE_BACKUP_S3_REQUEST_CHECKSUMS", "when_required")
        .env("SEATABLE_BACKUP_COMPRESSION", "gzip")
        .env("SEATABLE_BACKUP_DATABASES", "ccnet_db")
        .output();
    assert_exit(&out, 0);
    let store = env().s3(RequestChecksums::WhenRequired).await;
    let m = manifest_of(store.as_ref(), &prefix).await;
    assert_eq!(m.objects.len(), 1);
    assert!(m.objects[0].key.ends_with("/db/ccnet_db.sql.gz"), "{}", m.objects[0].key);
    let dump = common::fetch_decompressed(store.as_ref(), &m.objects[0].key, Algorithm::Gzip).await;
    assert_dump_restores("ccnet_db", &dump);
}

#[tokio::test]
async fn the_password_can_come_from_the_environment() {
    // The container's root password, passed as we would pass a configured one: through the
    // exec's environment. Fetch it from inside the container (the host never needs it otherwise).
    let pw = Command::new("podman")
        .args(["exec", env().container(), "sh", "-c", "printf %s \"$MYSQL_ROOT_PASSWORD\""])
        .output()
        .unwrap();
    let pw = String::from_utf8(pw.stdout).unwrap();
    assert!(!pw.is_empty());
    let prefix = unique_prefix("pwenv");
    let out = Run::garage(&["backup", "--only", "db"], &prefix)
        .env("SEATABLE_BACKUP_DATABASES", "seafile_db")
        .env("SEATABLE_BACKUP_DB_PASSWORD", &pw)
        .output();
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(&pw), "password in the logs");
}

/// Every failure here must exit with its class's code, name the thing, and write nothing.
#[tokio::test]
async fn failures_name_the_cause_and_write_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("seatable");
    common::demo_data(&data, 1);
    let secret = "Very-Secret-Pw-4711";
    /// What, the environment it runs with, the exit code, a part of the error line.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown bucket",
            vec![("SEATABLE_BACKUP_DESTINATION", "s3://no-such-bucket-4711".into())],
            4,
            "bucket `no-such-bucket-4711` does not exist",
        ),
        (
            "wrong secret key",
            vec![("AWS_SECRET_ACCESS_KEY", "0000000000000000000000000000000000000000000000000000000000000000".into())],
            4,
            "credentials rejected",
        ),
        (
            "unknown access key",
            vec![("AWS_ACCESS_KEY_ID", "GK0000000000000000000000".into())],
            4,
            "credentials rejected",
        ),
        ("wrong region", vec![("SEATABLE_BACKUP_S3_REGION", "eu-west-1".into())], 4, "region"),
        (
            "unreachable endpoint",
            vec![("SEATABLE_BACKUP_S3_ENDPOINT", "http://127.0.0.1:9".into())],
            4,
            "cannot reach endpoint http://127.0.0.1:9",
        ),
        (
            "DB container missing",
            vec![("SEATABLE_BACKUP_DB_CONTAINER", "no-such-container".into())],
            3,
            "container `no-such-container` not found",
        ),
        (
            "database missing",
            vec![("SEATABLE_BACKUP_DATABASES", "ccnet_db,no_such_db".into())],
            3,
            "database `no_such_db` does not exist",
        ),
        ("wrong DB password", vec![("SEATABLE_BACKUP_DB_PASSWORD", secret.into())], 3, "refused user `root`"),
        (
            "data dir missing",
            vec![("SEATABLE_BACKUP_DATA_DIR", "/no/such/seatable".into())],
            3,
            "data directory `/no/such/seatable`",
        ),
        (
            "Docker socket missing",
            vec![("SEATABLE_BACKUP_DOCKER_HOST", "unix:///no/such/docker.sock".into())],
            3,
            "cannot reach the Docker Engine API at `unix:///no/such/docker.sock`",
        ),
    ];
    for (what, vars, code, needle) in cases {
        let prefix = unique_prefix("fail");
        let mut run = Run::garage(&["backup"], &prefix).env("SEATABLE_BACKUP_DATA_DIR", &data);
        for (k, v) in &vars {
            run = run.env(k, v);
        }
        let out = run.output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{what}: exit code; stderr:\n{err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{what}: no `error:` line in:\n{err}"));
        assert!(line.contains(needle), "{what}: `{needle}` not in the error line: {line}");
        assert!(!err.contains(secret), "{what}: the DB password leaked into stderr");
        assert!(!err.contains(env().get("SEATABLE_BACKUP_TEST_SECRET_ACCESS_KEY")), "{what}: S3 secret leaked");
        assert!(!err.contains("panicked"), "{what}: panic: {err}");
        assert_nothing_written(&prefix).await;
    }
}

#[test]
fn bad_configuration_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[storage\ndestination = 1", "is malformed"),
        ("[storage]\ndestinaton = \"s3://b\"\n", "destinaton"),
        ("[compression]\nlevel = 99\n", "compression.level"),
        ("[storage]\npart_size = \"2MiB\"\n", "storage.part_size"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Run::new(&["--config", path.to_str().unwrap(), "backup"]).output();
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert!(err.lines().any(|l| l.starts_with("error: ") && l.contains(needle)), "`{needle}` not in: {err}");
    }
    let out = Run::new(&["--config", "/no/such/config.toml", "list"]).output();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("/no/such/config.toml"));
    let out = Run::new(&["backup", "--only", "everything"]).output();
    assert_exit(&out, 2);
}

#[test]
fn a_config_file_with_keys_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[storage]\ndestination = \"s3://b\"\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"SuperSecret123\"\n")
        .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&path).unwrap().permissions(), 0o644);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = Run::new(&["--config", path.to_str().unwrap(), "list"]).output();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("readable by group or others"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("SuperSecret123"));
}

#[tokio::test]
async fn plan_checks_everything_and_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("seatable");
    common::demo_data(&data, 1);
    let prefix = unique_prefix("plan");
    let out = Run::garage(&["plan"], &prefix).env("SEATABLE_BACKUP_DATA_DIR", &data).output();
    assert_exit(&out, 0);
    let text = stdout(&out);
    for needle in [
        "destination reachable",
        "database container found",
        "`seatable-mysql`",
        "dump tool found",
        // The test containers have coreutils: dumps (also those of the round-trip tests) run
        // under stdbuf.
        "dump output through `stdbuf -o 1M`",
        "database `dtable_db` exists",
        "data directory readable",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");

    let out = Run::garage(&["plan", "--json"], &prefix)
        .env("SEATABLE_BACKUP_DATA_DIR", &data)
        .env("SEATABLE_BACKUP_DB_CONTAINER", "no-such-container")
        .output();
    assert_exit(&out, 3);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let failed: Vec<&serde_json::Value> = v["checks"].as_array().unwrap().iter().filter(|c| c["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert!(failed[0]["detail"].as_str().unwrap().contains("no-such-container"));
    assert_nothing_written(&prefix).await;
}

#[tokio::test]
async fn list_marks_sets_without_manifest_incomplete() {
    let store = env().s3(RequestChecksums::WhenSupported).await;
    let prefix = unique_prefix("incomplete");
    store
        .put_object(&format!("{prefix}/daily/otherhost/2026-01-02T030405Z/db/ccnet_db.sql.zst"), "x".into())
        .await
        .unwrap();
    let out = Run::garage(&["list"], &prefix).output();
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("INCOMPLETE") && text.contains("otherhost") && text.contains("1 incomplete"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Runs that die half-way.

/// A database whose dump takes a few seconds: 131,072 rows of 1000 random bytes (a 260 MB dump).
fn ensure_big_database() {
    let e = env();
    let have = e.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='bigdb' AND TABLE_NAME='big'");
    if have.trim() == "1" && e.sql("SELECT COUNT(*) FROM bigdb.big").trim() == "131072" {
        return;
    }
    let mut sql = String::from(
        "DROP DATABASE IF EXISTS bigdb; CREATE DATABASE bigdb; \
         CREATE TABLE bigdb.big (id INT AUTO_INCREMENT PRIMARY KEY, b BLOB) ENGINE=InnoDB; \
         INSERT INTO bigdb.big (b) VALUES (RANDOM_BYTES(1000));",
    );
    for _ in 0..17 {
        sql.push_str("INSERT INTO bigdb.big (b) SELECT RANDOM_BYTES(1000) FROM bigdb.big;");
    }
    e.sql(&sql);
}

async fn wait_for_open_upload(store: &dyn Store, prefix: &str, child: &mut std::process::Child) {
    let start = Instant::now();
    loop {
        if !store.list_open_uploads(&format!("{prefix}/")).await.unwrap().is_empty() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backup ended ({status}) before a multipart upload was seen");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no multipart upload started within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn interrupted_runs_leave_nothing_behind() {
    ensure_big_database();
    let store = env().s3(RequestChecksums::WhenSupported).await;

    // 1. The dump is killed inside the container half-way.
    let prefix = unique_prefix("killed");
    let mut child = Run::garage(&["backup", "--only", "db"], &prefix)
        .env("SEATABLE_BACKUP_DATABASES", "ccnet_db,bigdb")
        .env("SEATABLE_BACKUP_PART_SIZE", "5MiB")
        .env("SEATABLE_BACKUP_PARTS_IN_FLIGHT", "1")
        .spawn();
    wait_for_open_upload(store.as_ref(), &prefix, &mut child).await;
    let kill = Command::new("podman")
        .args(["exec", env().container(), "pkill", "-9", "-f", "dump.* bigdb$"])
        .output()
        .unwrap();
    assert!(kill.status.success(), "pkill found no dump of bigdb: {}", String::from_utf8_lossy(&kill.stderr));
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 3);
    let err = stderr(&out);
    assert!(err.lines().any(|l| l.starts_with("error: ") && l.contains("database `bigdb`")), "{err}");
    // The ccnet_db dump had completed: it must have been removed again with the failed run.
    assert_nothing_written(&prefix).await;

    // 2. SIGTERM to the tool while it uploads.
    let prefix = unique_prefix("sigterm");
    let mut child = Run::garage(&["backup", "--only", "db"], &prefix)
        .env("SEATABLE_BACKUP_DATABASES", "bigdb")
        .env("SEATABLE_BACKUP_PART_SIZE", "5MiB")
        .env("SEATABLE_BACKUP_PARTS_IN_FLIGHT", "1")
        .spawn();
    wait_for_open_upload(store.as_ref(), &prefix, &mut child).await;
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 130);
    assert!(stderr(&out).contains("interrupted by SIGTERM"), "{}", stderr(&out));
    assert_nothing_written(&prefix).await;
}

#[test]
fn help_lists_the_commands() {
    let out = Run::new(&["--help"]).output();
    assert_exit(&out, 0);
    for c in ["backup", "list", "plan"] {
        assert!(stdout(&out).contains(c));
    }
}

/// A database name from the configuration (or SeaTable's `.env`) is an argument of the dump
/// command: one that looks like an option is refused before anything runs.
#[tokio::test]
async fn option_like_database_names_are_refused() {
    let prefix = unique_prefix("optname");
    for bad in ["--execute=DROP DATABASE ccnet_db", "a.b", "x`y"] {
        let out = Run::garage(&["backup", "--only", "db"], &prefix).env("SEATABLE_BACKUP_DATABASES", bad).output();
        assert_exit(&out, 2);
        assert!(stderr(&out).contains("is not a plain"), "{bad}: {}", stderr(&out));
    }
}
