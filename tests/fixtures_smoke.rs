//! The test fixtures themselves, against the real podman of the test environment: the fake
//! SeaTable installs lay out what SeaTable would have, the app-container stand-ins answer
//! `seatable.sh backup-all` as told, and the fixture databases appear in the `mariadb` container.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::env;
use common::fixtures::{self, AppContainer, BackupAll, Fixture, Kind, S3Fixture};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn s3() -> S3Fixture {
    S3Fixture::new(
        "http://127.0.0.1:3900",
        "garage",
        "GKfixturekey",
        "fixture-secret",
        ["st-storage", "st-commit", "st-fs", "st-block", "st-avatar"],
    )
}

/// What every data dir holds, whatever the kind.
fn check_data_dir(f: &Fixture) {
    let d = f.data_dir();
    assert!(d.starts_with(f.root()));
    assert_eq!(mode(&d.join("conf/dtable_web_settings.py")), 0o600);
    let settings = read(&d.join("conf/dtable_web_settings.py"));
    assert!(settings.contains("SECRET_KEY = ") && settings.contains("PLUGINS_REPO_ID = "), "{settings}");
    for c in ["seafile.conf", "ccnet.conf", "dtable-db.conf"] {
        assert!(d.join("conf").join(c).is_file(), "conf/{c}");
    }
    for sub in ["commits", "fs", "blocks"] {
        let dir = d.join("seafile-data/storage").join(sub).join(fixtures::REPO_ID);
        assert!(fs::read_dir(&dir).unwrap().next().is_some(), "{} is empty", dir.display());
    }
    for p in [
        "seafile-data/library-template/x",
        "seahub-data/avatars/a.png",
        "seahub-data/custom/logo.png",
        &format!("storage-data/bases/{}/content.json", fixtures::BASE_UUID),
    ] {
        assert!(d.join(p).is_file(), "{p}");
    }
    assert!(fs::read_dir(d.join("storage-data/snapshots")).unwrap().next().is_some());
    for s in fixtures::SKIPPED_DIRS {
        assert!(fs::read_dir(d.join(s)).unwrap().next().is_some(), "{s}/ is empty");
    }
    // Small: a few KB each, under 100 KB in all.
    let total: u64 = walk(f.root()).iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert!(total < 100_000, "fixture is {total} bytes");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_old_layout_has_its_compose_file_db_data_and_filesystem_storage() {
    let f = Fixture::old();
    assert_eq!(f.kind, Kind::Old);
    assert_eq!(f.data_dir(), f.root().join("opt/seatable/seatable-data/seatable"));
    assert_eq!(f.compose_dir(), f.root().join("opt/seatable"));
    check_data_dir(&f);
    let compose = read(&f.root().join("opt/seatable/docker-compose.yml"));
    for s in [
        "container_name: seatable-mysql",
        &format!("- MYSQL_ROOT_PASSWORD={}", fixtures::OLD_ROOT_PASSWORD),
        "memcached:",
        "redis:",
        "container_name: seatable\n",
        "/opt/seatable/seatable-data:/shared",
    ] {
        assert!(compose.contains(s), "compose lacks {s:?}");
    }
    assert!(f.root().join("opt/seatable/mysql-data/ibdata1").is_file());
    let storage = read(&f.data_dir().join("conf/dtable-storage-server.conf"));
    assert!(storage.contains("[storage backend]\ntype = filesystem\npath = /opt/seatable/storage-data\n"), "{storage}");
    assert!(!read(&f.data_dir().join("conf/seafile.conf")).contains("name = s3"));
    assert!(!f.root().join("opt/seatable-compose").exists());
    assert_eq!(f.db_names(), fixtures::DEFAULT_DB_NAMES);
}

#[test]
fn the_new_layout_has_its_env_file_license_and_custom_db_names() {
    let f = Fixture::new_layout(["c_one", "s_two", "d_three"]);
    assert_eq!(f.data_dir(), f.root().join("opt/seatable-server/seatable"));
    assert_eq!(f.compose_dir(), f.root().join("opt/seatable-compose"));
    check_data_dir(&f);
    let c = f.compose_dir();
    assert_eq!(mode(&c.join(".env")), 0o600);
    assert_eq!(mode(&c.join("seatable-license.txt")), 0o600);
    assert!(c.join("caddy.yml").is_file() && c.join("seatable-server.yml").is_file());
    let env_file = read(&c.join(".env"));
    for s in [
        "COMPOSE_FILE='caddy.yml,seatable-server.yml'\n",
        "SEATABLE_IMAGE='seatable/seatable-enterprise:5.2.7'\n",
        &format!("SEATABLE_SERVER_HOSTNAME={}\n", fixtures::HOSTNAME),
        &format!("SEATABLE_MYSQL_ROOT_PASSWORD=\"{}\"\n", fixtures::NEW_ROOT_PASSWORD),
        "TIME_ZONE='Europe/Berlin'\n",
        "SEATABLE_MYSQL_DB_CCNET_DB_NAME=c_one\n",
        "SEATABLE_MYSQL_DB_SEAFILE_DB_NAME=s_two\n",
        "SEATABLE_MYSQL_DB_DTABLE_DB_NAME=d_three\n",
    ] {
        assert!(env_file.contains(s), ".env lacks {s:?}:\n{env_file}");
    }
    assert!(fixtures::NEW_ROOT_PASSWORD.contains('#') && fixtures::NEW_ROOT_PASSWORD.contains(' '));
    assert!(!env_file.contains("STORAGE_TYPE") && !env_file.contains("MARIADB_HOST"));
    let yml = read(&c.join("seatable-server.yml"));
    assert!(yml.contains("container_name: seatable-server") && yml.contains("container_name: mariadb"), "{yml}");
    assert!(read(&f.data_dir().join("conf/dtable-storage-server.conf")).contains("type = filesystem"));
    assert!(read(&f.data_dir().join("conf/seafile.conf")).contains("db_name = s_two\n"));
}

#[test]
fn v61_keeps_storage_server_and_seafile_objects_in_s3() {
    let s3 = s3();
    let f = Fixture::v61_s3(&s3, ["a", "b", "c"]);
    check_data_dir(&f);
    let env_file = read(&f.compose_dir().join(".env"));
    for s in [
        "STORAGE_TYPE=s3\n",
        "S3_STORAGE_BUCKET=st-storage\n",
        "S3_COMMIT_BUCKET=st-commit\n",
        "S3_FS_BUCKET=st-fs\n",
        "S3_BLOCK_BUCKET=st-block\n",
        "S3_KEY_ID=GKfixturekey\n",
        "S3_SECRET_KEY=fixture-secret\n",
        "S3_HOST=127.0.0.1:3900\n",
        "S3_AWS_REGION=garage\n",
        "S3_USE_HTTPS=false\n",
        "S3_PATH_STYLE_REQUEST=true\n",
        "SEATABLE_IMAGE='seatable/seatable-enterprise:6.1.5'\n",
    ] {
        assert!(env_file.contains(s), ".env lacks {s:?}:\n{env_file}");
    }
    assert!(!env_file.contains("S3_AVATAR_BUCKET") && !env_file.contains("STORAGE_SERVER_BACKEND_TYPE"));
    let storage = read(&f.data_dir().join("conf/dtable-storage-server.conf"));
    for s in ["type = s3\n", "bucket = st-storage\n", "host = 127.0.0.1:3900\n", "key_id = GKfixturekey\n"] {
        assert!(storage.contains(s), "storage conf lacks {s:?}:\n{storage}");
    }
    let seafile = read(&f.data_dir().join("conf/seafile.conf"));
    for (section, bucket) in
        [("commit_object_backend", "st-commit"), ("fs_object_backend", "st-fs"), ("block_backend", "st-block")]
    {
        assert!(seafile.contains(&format!("[{section}]\nname = s3\nbucket = {bucket}\n")), "{section}:\n{seafile}");
    }
}

#[test]
fn v62_has_no_storage_server_conf_and_an_avatar_bucket() {
    let f = Fixture::v62(&s3(), ["a", "b", "c"]);
    check_data_dir(&f);
    assert!(!f.data_dir().join("conf/dtable-storage-server.conf").exists());
    let env_file = read(&f.compose_dir().join(".env"));
    for s in ["STORAGE_SERVER_BACKEND_TYPE=s3\n", "S3_AVATAR_BUCKET=st-avatar\n", "S3_STORAGE_BUCKET=st-storage\n"] {
        assert!(env_file.contains(s), ".env lacks {s:?}:\n{env_file}");
    }
    assert_eq!(read(&f.data_dir().join("conf/seafile.conf")).matches("name = s3\n").count(), 3);
}

#[test]
fn external_db_names_host_port_and_password_and_no_db_container() {
    let f = Fixture::external_db("127.0.0.1", 33061, "ext pw#1", ["x_ccnet", "x_seafile", "x_dtable"]);
    check_data_dir(&f);
    assert_eq!(f.kind.db_container(), None);
    let env_file = read(&f.compose_dir().join(".env"));
    for s in [
        "MARIADB_HOST=127.0.0.1\n",
        "MARIADB_PORT=33061\n",
        "MARIADB_PASSWORD=\"ext pw#1\"\n",
        "SEATABLE_MYSQL_DB_DTABLE_DB_NAME=x_dtable\n",
    ] {
        assert!(env_file.contains(s), ".env lacks {s:?}:\n{env_file}");
    }
    assert!(!read(&f.compose_dir().join("seatable-server.yml")).contains("container_name: mariadb"));
}

#[test]
fn a_succeeding_backup_all_writes_into_the_fixtures_storage_data() {
    let _turn = fixtures::lock();
    let f = Fixture::new_layout(fixtures::unique_db_names("smoke"));
    let app = AppContainer::start("seatable-server", &f, "5.2.7", BackupAll::Succeeds);
    let out = fixtures::podman(&["exec", "seatable-server", "/opt/seatable/scripts/seatable.sh", "backup-all"]);
    assert!(out.status.success(), "backup-all: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stdout.is_empty());
    let written: Vec<_> = fs::read_dir(f.big_data_backups()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let name = written[0].to_string_lossy().into_owned();
    assert!(name.starts_with("backup-all-") && name.ends_with(".txt"), "{name}");

    let image = fixtures::podman(&["inspect", "-f", "{{.Config.Image}}", "seatable-server"]);
    assert_eq!(String::from_utf8_lossy(&image.stdout).trim(), "docker.io/seatable/seatable-enterprise:5.2.7");
    assert_eq!(app.image, "docker.io/seatable/seatable-enterprise:5.2.7");

    let usage = app.exec(&["/opt/seatable/scripts/seatable.sh", "frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("Usage"));

    // A second start of the same name replaces the (labelled) leftover; drop removes it.
    drop(app);
    assert!(!fixtures::podman(&["container", "exists", "seatable-server"]).status.success());
}

#[test]
fn a_failing_backup_all_exits_non_zero_and_writes_nothing() {
    let _turn = fixtures::lock();
    let f = Fixture::old();
    let _app = AppContainer::start("seatable", &f, "4.2.3", BackupAll::Fails);
    // A leftover of the tests (labelled) is replaced without asking.
    let app = AppContainer::start("seatable", &f, "4.2.3", BackupAll::Fails);
    let out = app.exec(&["/opt/seatable/scripts/seatable.sh", "backup-all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stderr.is_empty());
    assert!(!f.big_data_backups().exists(), "nothing may be written");
    // The old layout mounts seatable-data at /shared.
    let ls = app.exec(&["ls", "/shared/seatable/conf/dtable_web_settings.py"]);
    assert!(ls.status.success(), "{}", String::from_utf8_lossy(&ls.stderr));
}

#[test]
fn a_container_without_the_test_label_is_never_removed() {
    let _ = env();
    let name = format!("seatable-fixture-foreign-{}", std::process::id());
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(&fixtures::PODMAN_RUN_OPTS);
    args.extend_from_slice(&[
        "--name",
        &name,
        "--network",
        "none",
        "-v",
        "/usr:/usr:ro",
        fixtures::HOSTBIN_IMAGE,
        "/usr/bin/sleep",
        "infinity",
    ]);
    let run = fixtures::podman(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let f = Fixture::new_layout(["a", "b", "c"]);
    let result = std::panic::catch_unwind(|| AppContainer::start(&name, &f, "5.2.7", BackupAll::Succeeds));
    let still_there = fixtures::podman(&["container", "exists", &name]).status.success();
    fixtures::podman(&["rm", "-f", "-t", "0", &name]);
    let err = result.err().expect("start must refuse");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("refusing"), "{msg}");
    assert!(still_there);
}

#[test]
fn fixture_databases_appear_in_the_mariadb_container_and_go_again() {
    let _turn = fixtures::lock();
    let e = env();
    let c = e.new_db_container();
    let names = fixtures::unique_db_names("smoke");
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    fixtures::create_databases(c, &names, true);
    for (i, db) in names.iter().enumerate() {
        let mut want: Vec<&str> = fixtures::FIXTURE_TABLES.to_vec();
        if i == 2 {
            want.extend(fixtures::LOG_TABLES);
        }
        want.sort();
        assert_eq!(fixtures::tables(c, db), want, "{db}");
        for t in &want {
            let n = e.sql_at(c, db, &format!("SELECT COUNT(*) FROM `{t}`"));
            assert_eq!(n.trim(), fixtures::ROWS_PER_TABLE.to_string(), "{db}.{t}");
        }
        let cs = e.sql_at(
            c,
            "",
            &format!("SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='{db}'"),
        );
        assert_eq!(cs.trim(), "utf8mb4");
    }
    let name = e.sql_at(c, names[0], "SELECT name FROM fixture_users WHERE id = 2");
    assert_eq!(name.trim(), "Bj\u{f6}rn \u{1f600}");
    // Without log tables, and again over existing ones.
    fixtures::create_databases(c, &names, false);
    assert_eq!(fixtures::tables(c, names[2]).len(), fixtures::FIXTURE_TABLES.len());

    fixtures::drop_databases(c, &names);
    for db in &names {
        let left =
            e.sql_at(c, "", &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='{db}'"));
        assert_eq!(left.trim(), "0", "{db}");
    }
    // Also not in the seeded container.
    assert!(fixtures::tables(e.container(), names[0]).is_empty());
}

#[test]
fn the_container_lock_survives_a_test_that_panicked_holding_it() {
    let t = std::thread::spawn(|| {
        let _turn = fixtures::lock();
        panic!("a test failing while it holds the lock");
    });
    assert!(t.join().is_err());
    drop(fixtures::lock());
}
