//! Restores into the second MariaDB container of the test environment: a migration from another
//! host, and a restore whose DB container is stopped half-way. The tests of this file share that
//! container (one stops it), so they take turns.

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{assert_exit, env, stderr, stdout, unique_prefix, Run};
use seatable_backup::seatable::defaults::ALWAYS_EXCLUDED;

static TARGET: Mutex<()> = Mutex::new(());

fn podman_db(container: &str, script: &str) {
    let out = Command::new("podman")
        .args(["exec", container, "sh", "-c"])
        .arg(format!(r#"export MYSQL_PWD="$MYSQL_ROOT_PASSWORD"; {script}"#))
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

fn wait_ready(container: &str) {
    let start = Instant::now();
    loop {
        let ok = Command::new("podman")
            .args(["exec", container, "sh", "-c", r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" mariadb -uroot -e 'SELECT 1'"#])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{container} did not come back");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test]
async fn migration_restores_another_hosts_set_into_another_container_and_directory() {
    let _turn = TARGET.lock().unwrap_or_else(|p| p.into_inner());
    let e = env();
    let db = format!("mig_{}", std::process::id());
    e.sql(&format!("DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4"));
    podman_db(
        e.container(),
        &format!("mariadb-dump -uroot --single-transaction --hex-blob seafile_db | mariadb -uroot {db}"),
    );
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("old-server/seatable");
    common::demo_data(&data, 2);
    let prefix = unique_prefix("mig");
    let out = Run::garage(&["backup"], &prefix)
        .env("SEATABLE_BACKUP_HOST_NAME", "oldhost")
        .env("SEATABLE_BACKUP_DATABASES", &db)
        .env("SEATABLE_BACKUP_DATA_DIR", &data)
        .output();
    assert_exit(&out, 0);

    // The new host has no such sets of its own.
    let new_dir = work.path().join("new-server");
    std::fs::create_dir(&new_dir).unwrap();
    let target_data = new_dir.join("seatable");
    let restore = |args: &[&str]| {
        Run::garage(args, &prefix)
            .env("SEATABLE_BACKUP_HOST_NAME", "newhost")
            .env("SEATABLE_BACKUP_DB_CONTAINER", e.target_container())
            .env("SEATABLE_BACKUP_DATA_DIR", &target_data)
            // The new host's configuration names the same database as the old one's.
            .env("SEATABLE_BACKUP_DATABASES", &db)
            .output()
    };
    let out = restore(&["restore"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("no backup sets of host `newhost`") && stderr(&out).contains("oldhost"),
        "{}",
        stderr(&out)
    );

    // An `old` database that still holds tables is what a restore killed during its swap moved
    // out of the live database: it is never dropped, the restore stops before changing anything.
    let target = e.target_container();
    e.sql_at(
        target,
        "",
        &format!(
            "CREATE DATABASE IF NOT EXISTS `{db}__sb_staging`; CREATE TABLE `{db}__sb_staging`.junk (i INT); \
             CREATE DATABASE IF NOT EXISTS `{db}__sb_old`; CREATE TABLE `{db}__sb_old`.junk (i INT)"
        ),
    );
    let out = restore(&["restore", "--from-host", "oldhost"]);
    assert_exit(&out, 3);
    assert!(stderr(&out).contains(&format!("database `{db}__sb_old` holds 1 tables")), "{}", stderr(&out));
    assert!(!target_data.exists(), "nothing was changed");
    // Empty `old` databases and staging databases an interrupted restore left behind are
    // dropped first (with a warning).
    e.sql_at(target, "", &format!("DROP TABLE `{db}__sb_old`.junk"));
    let out = restore(&["restore", "--from-host", "oldhost"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("database left by an interrupted restore"), "{}", stderr(&out));
    let left = e.sql_at(
        target,
        "",
        &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{db}\\_\\_sb\\_%'"),
    );
    assert_eq!(left.trim(), "0", "staging or old databases are left over");
    assert!(stdout(&out).contains("PLUGINS_REPO_ID"), "a migration warns about the domain: {}", stdout(&out));
    let source_sums = e.checksums(&db);
    assert!(!source_sums.is_empty());
    assert_eq!(e.checksums_at(e.target_container(), &db), source_sums, "CHECKSUM TABLE differs after migration");
    common::tree::compare_trees(&data, &target_data, &ALWAYS_EXCLUDED)
        .unwrap_or_else(|d| panic!("migrated tree differs: {d}"));

    e.sql(&format!("DROP DATABASE `{db}`"));
    e.sql_at(e.target_container(), "", &format!("DROP DATABASE `{db}`"));
}

#[tokio::test]
async fn a_db_container_stopped_mid_restore_leaves_the_live_database_as_it_was() {
    let _turn = TARGET.lock().unwrap_or_else(|p| p.into_inner());
    let e = env();
    let target = e.target_container();
    let db = format!("stop_{}", std::process::id());
    // In the source: a database whose dump takes a while to load (65,536 rows of 2000 bytes).
    let mut sql = format!(
        "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}`; \
         CREATE TABLE `{db}`.big (id INT AUTO_INCREMENT PRIMARY KEY, b BLOB) ENGINE=InnoDB; \
         INSERT INTO `{db}`.big (b) VALUES (RANDOM_BYTES(1000));"
    );
    for _ in 0..16 {
        sql.push_str(&format!("INSERT INTO `{db}`.big (b) SELECT RANDOM_BYTES(1000) FROM `{db}`.big;"));
    }
    e.sql(&sql);
    let prefix = unique_prefix("stop");
    let out = Run::garage(&["backup", "--only", "db"], &prefix).env("SEATABLE_BACKUP_DATABASES", &db).output();
    assert_exit(&out, 0);

    // In the target: a live database of that name with other content.
    e.sql_at(
        target,
        "",
        &format!(
            "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}`; CREATE TABLE `{db}`.keep (id INT PRIMARY KEY, v TEXT); \
             INSERT INTO `{db}`.keep VALUES (1, 'live'), (2, 'data')"
        ),
    );
    let before = e.checksums_at(target, &db);

    let child = Run::garage(&["restore", "--db", &db], &prefix).env("SEATABLE_BACKUP_DB_CONTAINER", target).spawn();
    // Stop the container once the load into the staging database is under way.
    let start = Instant::now();
    loop {
        let staged = e.sql_at(
            target,
            "",
            &format!("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='{db}__sb_staging'"),
        );
        if staged.trim() != "0" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the restore never started loading");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let st = Command::new("podman").args(["stop", "-t", "2", target]).output().unwrap();
    assert!(st.status.success(), "podman stop: {}", String::from_utf8_lossy(&st.stderr));
    let out = child.wait_with_output().unwrap();
    let restarted = Command::new("podman").args(["start", target]).output().unwrap();
    assert!(restarted.status.success(), "podman start: {}", String::from_utf8_lossy(&restarted.stderr));
    wait_ready(target);

    assert!(!out.status.success(), "the restore must fail: {}", stderr(&out));
    assert!(stderr(&out).contains(target), "the message names the container: {}", stderr(&out));
    assert_eq!(e.checksums_at(target, &db), before, "the live database changed");

    // The next restore cleans up what the interrupted one left, and succeeds.
    let out = Run::garage(&["restore", "--db", &db], &prefix).env("SEATABLE_BACKUP_DB_CONTAINER", target).output();
    assert_exit(&out, 0);
    assert_eq!(e.checksums_at(target, &db), e.checksums(&db));
    let left = e.sql_at(
        target,
        "",
        &format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{db}\\_\\_sb\\_%'"),
    );
    assert_eq!(left.trim(), "");
    e.sql(&format!("DROP DATABASE `{db}`"));
    e.sql_at(target, "", &format!("DROP DATABASE `{db}`"));
}
