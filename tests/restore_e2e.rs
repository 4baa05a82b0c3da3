//! End-to-end restore and verify: the binary against Garage and the MariaDB container.
//! Round trips, and every failure that must leave the live databases and data directory as
//! they were (compared before and after), with a non-zero exit that names the cause.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_exit, env, stderr, stdout, unique_prefix, Run};
use seatable_backup::catalog::{Kind, Manifest};
use seatable_backup::config::{Algorithm, CompressionConfig, RequestChecksums};
use seatable_backup::store::Store;
use sha2::Digest;
use tokio::io::AsyncReadExt;

/// Copies database `src` to `dst` inside the main container (dump | load, all inside).
fn copy_db(src: &str, dst: &str) {
    let e = env();
    e.sql(&format!("DROP DATABASE IF EXISTS `{dst}`; CREATE DATABASE `{dst}` CHARACTER SET utf8mb4"));
    let out = Command::new("podman")
        .args(["exec", e.container(), "sh", "-c"])
        .arg(format!(
            r#"export MYSQL_PWD="$MYSQL_ROOT_PASSWORD"; mariadb-dump -uroot --single-transaction --routines --triggers --hex-blob {src} | mariadb -uroot {dst}"#
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "copying {src}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Staging, old or verify databases of `db` left behind.
fn leftovers(container: &str, db: &str) -> String {
    env().sql_at(
        container,
        "",
        &format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{db}\\_\\_sb\\_%'"),
    )
}

fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

/// A backed-up state: two databases and a data directory, with a pristine copy of the tree.
struct Fixture {
    work: tempfile::TempDir,
    data: PathBuf,
    pristine: PathBuf,
    dbs: Vec<String>,
    sums: Vec<Vec<(String, String)>>,
    prefix: String,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let e = env();
        let pid = std::process::id();
        let dbs = vec![format!("{name}_a_{pid}"), format!("{name}_b_{pid}")];
        // dtable_db's seed has views, triggers and routines: see the recreate-mode test.
        copy_db("ccnet_db", &dbs[0]);
        copy_db("seafile_db", &dbs[1]);
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("seatable");
        common::demo_data(&data, 2);
        std::fs::create_dir_all(data.join("logs")).unwrap();
        std::fs::write(data.join("logs/seahub.log"), "log lines are not backed up\n").unwrap();
        let prefix = unique_prefix(name);
        let out = Run::garage(&["backup"], &prefix)
            .env("SEATABLE_BACKUP_DATA_DIR", &data)
            .env("SEATABLE_BACKUP_DATABASES", dbs.join(","))
            .output();
        assert_exit(&out, 0);
        let pristine = work.path().join("pristine");
        cp_a(&data, &pristine);
        let sums = dbs.iter().map(|d| e.checksums(d)).collect();
        Fixture { work, data, pristine, dbs, sums, prefix }
    }

    /// Runs the binary with the configuration the backup had (data directory, databases).
    fn run(&self, args: &[&str]) -> Output {
        Run::garage(args, &self.prefix)
            .env("SEATABLE_BACKUP_DATA_DIR", &self.data)
            .env("SEATABLE_BACKUP_DATABASES", self.dbs.join(","))
            .output()
    }

    /// The live databases and the data directory are exactly as at backup time, and nothing
    /// staged is left behind.
    fn assert_untouched(&self) {
        let e = env();
        for (db, sums) in self.dbs.iter().zip(&self.sums) {
            assert_eq!(&e.checksums(db), sums, "live database {db} changed");
        }
        common::tree::compare_trees(&self.pristine, &self.data, &[])
            .unwrap_or_else(|d| panic!("live data directory changed: {d}"));
        self.assert_nothing_staged();
    }

    fn assert_nothing_staged(&self) {
        for db in &self.dbs {
            assert_eq!(leftovers(env().container(), db).trim(), "", "staging databases left");
        }
        let staged: Vec<_> = std::fs::read_dir(self.work.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".restore-"))
            .collect();
        assert!(staged.is_empty(), "staging directories left: {staged:?}");
    }

    async fn store(&self) -> std::sync::Arc<dyn Store> {
        env().s3(RequestChecksums::WhenSupported).await
    }

    async fn manifest(&self) -> (String, Manifest) {
        let store = self.store().await;
        let keys = common::keys_ending(store.as_ref(), &self.prefix, "/manifest.json").await;
        assert_eq!(keys.len(), 1);
        let m = Manifest::from_json(&store.get_object(&keys[0]).await.unwrap()).unwrap();
        (keys[0].clone(), m)
    }

    fn stamp(m: &Manifest) -> String {
        m.stamp.clone()
    }

    /// Replaces the object of `component` by `raw` (compressed here), with a manifest that
    /// describes the new object truthfully: the set stays "valid", its content is bad.
    async fn replace_component(&self, component: &str, raw: &[u8]) {
        let store = self.store().await;
        let (mkey, mut m) = self.manifest().await;
        let mut z = seatable_backup::codec::compress(
            std::io::Cursor::new(raw.to_vec()),
            &CompressionConfig { algorithm: Algorithm::Zstd, level: 3, threads: 0, dump_threads: 0 },
        );
        let mut stored = Vec::new();
        z.read_to_end(&mut stored).await.unwrap();
        let o = m.objects.iter_mut().find(|o| o.component == component).expect("component");
        store.put_object(&o.key, stored.clone().into()).await.unwrap();
        o.stored_size = stored.len() as u64;
        o.raw_size = raw.len() as u64;
        o.sha256 = hex::encode(sha2::Sha256::digest(&stored));
        if o.chunk_size > 0 {
            o.chunk_sha256 =
                stored.chunks(o.chunk_size as usize).map(|c| hex::encode(sha2::Sha256::digest(c))).collect();
        }
        store.put_object(&mkey, m.to_json().into()).await.unwrap();
    }

    async fn key_of(&self, component: &str) -> String {
        let (_, m) = self.manifest().await;
        m.objects.iter().find(|o| o.component == component).unwrap().key.clone()
    }

    fn drop_dbs(&self) {
        for d in &self.dbs {
            env().sql(&format!("DROP DATABASE IF EXISTS `{d}`"));
        }
    }
}

#[tokio::test]
async fn restore_brings_back_databases_and_data_exactly() {
    let e = env();
    let fx = Fixture::new("rrt");
    let (a, b) = (&fx.dbs[0], &fx.dbs[1]);

    // Break things: rows, a dropped and an added table; files changed, removed and added.
    let first_table =
        e.sql(&format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='{a}' ORDER BY 1 LIMIT 1"));
    e.sql(&format!("DROP TABLE `{a}`.`{}`", first_table.trim()));
    e.sql(&format!(
        "CREATE TABLE `{a}`.`added_later` (id INT PRIMARY KEY); INSERT INTO `{a}`.`added_later` VALUES (1)"
    ));
    let tables_b = e.sql(&format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='{b}'"));
    for t in tables_b.lines().filter(|l| !l.is_empty()) {
        e.sql(&format!("DELETE FROM `{b}`.`{t}`"));
    }
    std::fs::write(fx.data.join("conf/ccnet.conf"), "changed after the backup\n").ok();
    std::fs::remove_dir_all(fx.data.join("seafile-data")).unwrap();
    std::fs::write(fx.data.join("added-later.txt"), "new\n").unwrap();

    // Dry run: says what would happen, changes nothing.
    let out = fx.run(&["restore", "--dry-run"]);
    assert_exit(&out, 0);
    let plan = stdout(&out);
    assert!(plan.contains("dry run") && plan.contains(&format!("database `{a}`")), "{plan}");
    assert!(plan.contains("nothing was changed"), "{plan}");
    let out = fx.run(&["restore", "--dry-run", "--before", "2000-01-01"]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains("no complete backup set of host `testhost` before 2000-01-01"), "{}", stderr(&out));
    let out = fx.run(&["restore", "--dry-run", "--before", "yesterday-ish"]);
    assert_exit(&out, 2);
    assert!(e.sql(&format!("SELECT COUNT(*) FROM `{a}`.`added_later`")).trim() == "1");

    let out = fx.run(&["restore", "latest"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("restored set ") && text.contains("/testhost/"), "{text}");
    assert!(text.contains("restore-all"), "the SeaTable step is shown: {text}");

    for (db, sums) in fx.dbs.iter().zip(&fx.sums) {
        assert_eq!(&e.checksums(db), sums, "CHECKSUM TABLE of {db} differs from the backup");
    }
    common::tree::compare_trees(&fx.pristine, &fx.data, &["logs"])
        .unwrap_or_else(|d| panic!("restored tree differs: {d}"));
    assert_eq!(
        std::fs::read_to_string(fx.data.join("logs/seahub.log")).unwrap(),
        "log lines are not backed up\n",
        "entries a backup never holds are kept"
    );
    let kept: Vec<_> = std::fs::read_dir(fx.work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("seatable.before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "the previous directory is kept: {kept:?}");
    assert!(fx.work.path().join(&kept[0]).join("added-later.txt").exists());
    fx.assert_nothing_staged();

    // verify and verify --deep pass on the good set.
    let out = fx.run(&["verify"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("objects verified"), "{}", stdout(&out));
    let out = fx.run(&["verify", "--deep"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("tables") && stdout(&out).contains("rows"), "{}", stdout(&out));
    fx.assert_nothing_staged();

    // A second restore with --replace removes the previous directory.
    let out = fx.run(&["restore", "--replace", "--only", "data"]);
    assert_exit(&out, 0);
    let kept_now = std::fs::read_dir(fx.work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seatable.before-restore-"))
        .count();
    assert_eq!(kept_now, 1, "--replace keeps no further copy");
    fx.drop_dbs();
}

#[tokio::test]
async fn a_corrupted_dump_is_caught_and_changes_nothing() {
    let fx = Fixture::new("rcor");
    let store = fx.store().await;
    let key = fx.key_of(&format!("db/{}", fx.dbs[1])).await;
    let mut bytes = store.get_object(&key).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    store.put_object(&key, bytes.into()).await.unwrap();

    let out = fx.run(&["restore"]);
    assert_exit(&out, 5);
    // Either the hash check at the end or the decompressor before it catches the flipped byte.
    let err = stderr(&out);
    assert!(err.contains(&key) && (err.contains("does not match the manifest") || err.contains("is corrupt")), "{err}");
    fx.assert_untouched();

    let out = fx.run(&["verify"]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains(&key), "{}", stderr(&out));
    fx.drop_dbs();
}

#[tokio::test]
async fn a_corrupted_archive_is_caught_and_changes_nothing() {
    let fx = Fixture::new("rcar");
    let store = fx.store().await;
    let key = fx.key_of("data").await;
    let mut bytes = store.get_object(&key).await.unwrap().to_vec();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    store.put_object(&key, bytes.into()).await.unwrap();

    let out = fx.run(&["restore", "--only", "data"]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains(&key), "{}", stderr(&out));
    fx.assert_untouched();
    let out = fx.run(&["verify"]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains(&key), "{}", stderr(&out));
    fx.drop_dbs();
}

/// The load does not depend on the end of stdin reaching the client in the container (Podman
/// has had bugs there): the client's own `quit` ends it while our side of stdin stays OPEN.
#[tokio::test]
async fn a_client_fed_through_the_api_ends_without_waiting_for_end_of_input() {
    let e = env();
    let docker = seatable_backup::source::docker::Docker::connect(Some(e.docker_host())).unwrap();
    let cmd = ["sh", "-c", r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mariadb -uroot -N -B"#];
    let cmd = seatable_backup::source::process::Command::new(cmd.iter().map(|s| s.to_string()).collect());
    let ex = docker.spawn(e.container(), cmd.with_stdin()).await.unwrap();
    let mut input = ex.stdin.unwrap();
    use tokio::io::AsyncWriteExt;
    input.write_all(b"SELECT 6 * 7;\nSELECT 'seatable-backup:loaded';\nquit\n").await.unwrap();
    input.flush().await.unwrap();
    // `input` is neither shut down nor dropped until the command has finished.
    let finished = seatable_backup::source::process::capture(ex.stdout, ex.exit);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), finished)
        .await
        .expect("the client did not exit on `quit` while stdin stayed open")
        .unwrap();
    assert_eq!(out.status.exit_code, 0, "{}", out.status.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\nseatable-backup:loaded\n");
    drop(input);
}

#[tokio::test]
async fn truncated_and_missing_objects_and_a_lying_manifest_are_caught() {
    let fx = Fixture::new("rtrunc");
    let store = fx.store().await;
    let (mkey, m) = fx.manifest().await;
    let stamp = Fixture::stamp(&m);
    let dump_key = fx.key_of(&format!("db/{}", fx.dbs[0])).await;
    let data_key = fx.key_of("data").await;

    // Truncated: the stored size no longer matches.
    let bytes = store.get_object(&dump_key).await.unwrap();
    store.put_object(&dump_key, bytes.slice(..bytes.len() / 2)).await.unwrap();
    let out = fx.run(&["restore", &stamp]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains(&dump_key) && stderr(&out).contains("bytes"), "{}", stderr(&out));
    fx.assert_untouched();
    let out = fx.run(&["verify", &stamp]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains(&dump_key), "{}", stderr(&out));
    // `latest` does not take a set that does not check out.
    let out = fx.run(&["restore", "latest"]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains("no complete backup set"), "{}", stderr(&out));
    store.put_object(&dump_key, bytes).await.unwrap();

    // Missing.
    let data = store.get_object(&data_key).await.unwrap();
    store.delete(&data_key).await.unwrap();
    let out = fx.run(&["restore", &stamp]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains(&data_key) && stderr(&out).contains("missing"), "{}", stderr(&out));
    fx.assert_untouched();
    let out = fx.run(&["verify", &stamp]);
    assert_exit(&out, 5);
    store.put_object(&data_key, data).await.unwrap();

    // The manifest lies about a chunk's hash: restore checks every chunk before it uses it.
    let mut lying = m.clone();
    let o = lying.objects.iter_mut().find(|o| o.kind == Kind::Tar).unwrap();
    assert!(!o.chunk_sha256.is_empty(), "schema 3 records chunk hashes");
    o.chunk_sha256[0] = "0".repeat(64);
    store.put_object(&mkey, lying.to_json().into()).await.unwrap();
    let out = fx.run(&["restore", &stamp]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains("does not match the manifest"), "{}", stderr(&out));
    fx.assert_untouched();
    let out = fx.run(&["verify", &stamp]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains(&data_key), "{}", stderr(&out));
    // It lies about the whole object's hash only: the chunk hashes vouch for every byte (a
    // restore checks those), and `verify`, which checks both, finds that the manifest does not
    // agree with itself.
    let mut lying = m.clone();
    lying.objects.iter_mut().find(|o| o.kind == Kind::Tar).unwrap().sha256 = "0".repeat(64);
    store.put_object(&mkey, lying.to_json().into()).await.unwrap();
    let out = fx.run(&["verify", &stamp]);
    assert_exit(&out, 5);
    assert!(
        stderr(&out).contains(&data_key) && stderr(&out).contains("does not match the manifest"),
        "{}",
        stderr(&out)
    );
    store.put_object(&mkey, m.to_json().into()).await.unwrap();

    // A set without a manifest is refused, unless asked.
    store.delete(&mkey).await.unwrap();
    let out = fx.run(&["restore", &stamp]);
    assert_exit(&out, 5);
    assert!(stderr(&out).contains("no manifest"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--allow-incomplete"), "{}", stderr(&out));
    fx.assert_untouched();
    // ... and restored unchecked when asked (the objects are the good ones again here).
    let out = fx.run(&["restore", &stamp, "--allow-incomplete", "--replace"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("no manifest"), "a warning says so: {}", stderr(&out));
    for (db, sums) in fx.dbs.iter().zip(&fx.sums) {
        assert_eq!(&env().checksums(db), sums);
    }
    common::tree::compare_trees(&fx.pristine, &fx.data, &["logs"]).unwrap_or_else(|d| panic!("{d}"));
    fx.assert_nothing_staged();
    fx.drop_dbs();
}

#[tokio::test]
async fn an_sql_error_half_way_leaves_the_live_database_as_it_was() {
    let fx = Fixture::new("rsql");
    let store = fx.store().await;
    let key = fx.key_of(&format!("db/{}", fx.dbs[0])).await;
    let dump = common::fetch_decompressed(store.as_ref(), &key, Algorithm::Zstd).await;
    let text = String::from_utf8(dump).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let mid = lines.len() / 2;
    lines.insert(mid, "THIS IS NOT SQL AT ALL;");
    let broken = lines.join("\n") + "\n";
    fx.replace_component(&format!("db/{}", fx.dbs[0]), broken.as_bytes()).await;

    let out = fx.run(&["restore"]);
    assert_exit(&out, 3);
    let err = stderr(&out);
    assert!(err.contains(&fx.dbs[0]) && err.contains("ERROR 1064"), "{err}");
    fx.assert_untouched();
    fx.drop_dbs();
}

/// A set forged with valid hashes whose dump holds client commands (`\!` runs a shell
/// command in the client, `system` too): the client runs with `--sandbox` and refuses them, so
/// nothing runs on the DB container, and the live database is untouched.
#[tokio::test]
async fn client_commands_in_a_dump_never_run() {
    let fx = Fixture::new("rcmd");
    let store = fx.store().await;
    let key = fx.key_of(&format!("db/{}", fx.dbs[0])).await;
    let dump = common::fetch_decompressed(store.as_ref(), &key, Algorithm::Zstd).await;
    let marker = format!("/tmp/seatable-backup-pwned-{}", std::process::id());
    let text = String::from_utf8(dump).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mid = lines.len() / 2;
    lines.insert(mid, format!("\\! touch {marker}"));
    lines.insert(mid + 1, format!("system touch {marker}"));
    fx.replace_component(&format!("db/{}", fx.dbs[0]), (lines.join("\n") + "\n").as_bytes()).await;

    // With `--sandbox`, the client refuses them; a client without it (the failpoint makes the
    // probe fail) gets the stream through the guard, which refuses them before the client.
    for no_sandbox in [false, true] {
        let out = Run::garage(&["restore"], &fx.prefix)
            .env("SEATABLE_BACKUP_DATA_DIR", &fx.data)
            .env("SEATABLE_BACKUP_DATABASES", fx.dbs.join(","))
            .env("SEATABLE_BACKUP_FAILPOINTS", if no_sandbox { "client.sandbox=error" } else { "" })
            .output();
        let err = stderr(&out);
        if no_sandbox {
            assert_exit(&out, 5);
            assert!(err.contains("client command `\\") && err.contains("refused"), "{err}");
        } else {
            assert_exit(&out, 3);
            assert!(err.to_lowercase().contains("sandbox"), "{err}");
        }
        let exists = Command::new("podman").args(["exec", env().container(), "test", "-e", &marker]).status().unwrap();
        assert!(!exists.success(), "a client command in the dump ran in the DB container");
        assert!(!Path::new(&marker).exists(), "a client command in the dump ran on this host");
        fx.assert_untouched();
    }
    fx.drop_dbs();
}

/// A broken live install (an unparsable `conf/seafile.conf`) does not stop the restore that
/// brings back the good one.
#[tokio::test]
async fn a_broken_live_install_does_not_block_the_restore() {
    let fx = Fixture::new("rbrk");
    std::fs::write(fx.data.join("conf/seafile.conf"), "[commit_object_backend\nname = s3\n").unwrap();
    let out = fx.run(&["restore", "--only", "data"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("seafile.conf"), "the broken file is named in a warning: {}", stderr(&out));
    common::tree::compare_trees(&fx.pristine, &fx.data, &["logs"])
        .unwrap_or_else(|d| panic!("restored tree differs: {d}"));
    fx.drop_dbs();
}

/// A tar archive with one raw header: name bytes written as given (no sanitising).
fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    if !link.is_empty() {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    // Valid owners, so that each case is refused for what it tests, not for its header.
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    builder.append(&h, data).unwrap();
}

#[tokio::test]
async fn hostile_archives_are_refused_and_write_nothing() {
    let fx = Fixture::new("rhost");
    let outside = fx.work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let abs = format!("{}/abs.txt", outside.display());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot", {
            let mut b = tar::Builder::new(Vec::new());
            raw_entry(&mut b, b"conf/", tar::EntryType::Directory, b"", b"");
            raw_entry(&mut b, b"../outside/x.txt", tar::EntryType::Regular, b"", b"escaped\n");
            b.into_inner().unwrap()
        }),
        ("absolute", {
            let mut b = tar::Builder::new(Vec::new());
            raw_entry(&mut b, abs.as_bytes(), tar::EntryType::Regular, b"", b"escaped\n");
            b.into_inner().unwrap()
        }),
        ("through-symlink", {
            let mut b = tar::Builder::new(Vec::new());
            let target = outside.to_string_lossy().into_owned();
            raw_entry(&mut b, b"conf", tar::EntryType::Symlink, target.as_bytes(), b"");
            raw_entry(&mut b, b"conf/x.txt", tar::EntryType::Regular, b"", b"escaped\n");
            b.into_inner().unwrap()
        }),
    ];
    for (what, archive) in cases {
        fx.replace_component("data", &archive).await;
        let out = fx.run(&["restore", "--only", "data", "--allow-external-symlinks"]);
        assert!(!out.status.success(), "{what}: the hostile archive was accepted");
        assert_exit(&out, 5);
        let entries: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
        assert!(entries.is_empty(), "{what}: something was written outside: {entries:?}");
        assert!(!fx.work.path().join("x.txt").exists());
        fx.assert_untouched();
    }
    fx.drop_dbs();
}

#[tokio::test]
async fn a_full_disk_while_unpacking_leaves_the_data_directory_as_it_was() {
    let fx = Fixture::new("rfull");
    // A small file system holding only a small live data directory.
    let mnt = fx.work.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(st.success(), "mount tmpfs (the tests run as root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let live = mnt.join("seatable");
    std::fs::create_dir_all(live.join("conf")).unwrap();
    std::fs::write(live.join("conf/seatable.conf"), "live\n").unwrap();
    let before = fx.work.path().join("small-before");
    cp_a(&live, &before);

    let out = Run::garage(&["restore", "--only", "data"], &fx.prefix).env("SEATABLE_BACKUP_DATA_DIR", &live).output();
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("No space left") || stderr(&out).contains("full"), "{}", stderr(&out));
    common::tree::compare_trees(&before, &live, &[]).unwrap_or_else(|d| panic!("live dir changed: {d}"));
    let left: Vec<_> = std::fs::read_dir(&mnt).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("seatable")], "the staging directory is removed");
    fx.drop_dbs();
}

/// Views, triggers, routines and events cannot move between databases with RENAME TABLE: they
/// are recreated in the live database within the swap, and restored with the defaults.
#[tokio::test]
async fn views_triggers_routines_and_events_restore_with_the_defaults() {
    let e = env();
    let fx = Fixture::new("rtrig");
    let db = &fx.dbs[1];
    let t = e
        .sql(&format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='{db}' ORDER BY 1 LIMIT 1"));
    let t = t.trim();
    e.sql(&format!(
        "CREATE TABLE `{db}`.`audit` (n INT NOT NULL, note VARCHAR(20)); \
         CREATE VIEW `{db}`.`v_first` AS SELECT * FROM `{db}`.`{t}`; \
         CREATE VIEW `{db}`.`v_on_view` AS SELECT COUNT(*) AS c FROM `{db}`.`v_first`; \
         CREATE EVENT `{db}`.`ev_cleanup` ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM `{db}`.`audit` WHERE n < 0"
    ));
    // Bodies with `;` inside, as mysqldump writes them between DELIMITER lines.
    e.sql(&format!(
        "USE `{db}`;\nDELIMITER //\n\
         CREATE TRIGGER tr_audit BEFORE INSERT ON audit FOR EACH ROW BEGIN SET NEW.n = NEW.n + 1; SET NEW.note = 'x;y'; END//\n\
         CREATE PROCEDURE p_count(OUT c INT) BEGIN SELECT COUNT(*) INTO c FROM audit; SELECT c; END//\n\
         CREATE FUNCTION f_twice(x INT) RETURNS INT DETERMINISTIC BEGIN DECLARE y INT; SET y = x * 2; RETURN y; END//\n\
         DELIMITER ;\n"
    ));
    let prefix = unique_prefix("rtrig2");
    let out = Run::garage(&["backup", "--only", "db"], &prefix).env("SEATABLE_BACKUP_DATABASES", db).output();
    assert_exit(&out, 0);
    let sums = e.checksums(db);
    let objects = e.schema_objects(db);
    assert_eq!(objects.lines().count(), 6, "{objects}");
    // Change everything: rows, and the objects (one dropped, one replaced, one added).
    e.sql(&format!(
        "DELETE FROM `{db}`.`{t}`; DROP VIEW `{db}`.`v_on_view`; DROP TRIGGER `{db}`.`tr_audit`; \
         CREATE OR REPLACE VIEW `{db}`.`v_first` AS SELECT 1 AS one; CREATE VIEW `{db}`.`v_new` AS SELECT 2 AS two"
    ));
    let out = Run::garage(&["restore", "--db", db], &prefix).output();
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("views, triggers, routines and events recreated"), "{}", stdout(&out));
    assert_eq!(e.checksums(db), sums);
    assert_eq!(e.schema_objects(db), objects);
    // They work: the trigger fires, the routines run.
    e.sql(&format!("INSERT INTO `{db}`.`audit` (n) VALUES (1)"));
    assert_eq!(e.sql(&format!("SELECT n, note FROM `{db}`.`audit`")).trim(), "2\tx;y");
    assert_eq!(e.sql(&format!("SELECT `{db}`.f_twice(21)")).trim(), "42");
    assert_eq!(leftovers(e.container(), db).trim(), "");
    fx.drop_dbs();
}

/// The live state of a fixture: each database's tables (CHECKSUM TABLE) and its views,
/// triggers, routines and events, and a copy of the data directory.
struct Live {
    sums: Vec<Vec<(String, String)>>,
    objects: Vec<String>,
    tree: PathBuf,
}

impl Fixture {
    /// Adds a view and a trigger to the second database and takes a new backup (the newest set),
    /// then changes rows, objects and files: the state a failed restore must leave as it is.
    fn with_objects_then_changed(&self) -> Live {
        let e = env();
        let db = &self.dbs[1];
        e.sql(&format!(
            "USE `{db}`; CREATE TABLE audit (n INT NOT NULL); CREATE VIEW v_audit AS SELECT n FROM audit; \
             CREATE TRIGGER tr_audit BEFORE INSERT ON audit FOR EACH ROW SET NEW.n = NEW.n + 1"
        ));
        // A second set, one second later than the first (stamps have seconds).
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_exit(&self.run(&["backup"]), 0);
        e.sql(&format!(
            "DELETE FROM `{db}`.`audit`; INSERT INTO `{db}`.`audit` VALUES (7); DROP TRIGGER `{db}`.`tr_audit`; \
             CREATE OR REPLACE VIEW `{db}`.`v_audit` AS SELECT 1 AS one; CREATE TABLE `{}`.`added_later` (id INT)",
            self.dbs[0]
        ));
        std::fs::write(self.data.join("conf/ccnet.conf"), "changed after the backup\n").unwrap();
        std::fs::write(self.data.join("added-later.txt"), "new\n").unwrap();
        self.live("changed")
    }

    fn live(&self, name: &str) -> Live {
        let tree = self.work.path().join(name);
        cp_a(&self.data, &tree);
        Live {
            sums: self.dbs.iter().map(|d| env().checksums(d)).collect(),
            objects: self.dbs.iter().map(|d| env().schema_objects(d)).collect(),
            tree,
        }
    }

    /// The databases and the directory are exactly `before`, and nothing of the restore is left.
    fn assert_live(&self, before: &Live, what: &str) {
        for (i, d) in self.dbs.iter().enumerate() {
            assert_eq!(env().checksums(d), before.sums[i], "{what}: tables of {d} changed");
            assert_eq!(env().schema_objects(d), before.objects[i], "{what}: objects of {d} changed");
            assert_eq!(leftovers(env().container(), d).trim(), "", "{what}: databases of the restore left");
        }
        common::tree::compare_trees(&before.tree, &self.data, &[])
            .unwrap_or_else(|d| panic!("{what}: the data directory changed: {d}"));
        let beside: Vec<String> = std::fs::read_dir(self.work.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".seatable.restore-") || n.starts_with("seatable.before-restore-"))
            .collect();
        assert!(beside.is_empty(), "{what}: left beside the data directory: {beside:?}");
    }
}

/// Every step of the swap fails in turn (a failpoint; the suite builds with the `failpoints`
/// feature): each time, every step already taken is undone and the live state is the previous.
#[tokio::test]
async fn a_failure_at_any_step_of_the_swap_undoes_every_step_taken() {
    let fx = Fixture::new("rfp");
    let before = fx.with_objects_then_changed();
    for point in [
        "stage.done",
        "swap.start",
        "swap.db.created",
        "swap.db.objects_dropped",
        "swap.db.renamed",
        "swap.db.objects_created",
        "swap.data.moved_aside",
        "swap.data.renamed_in",
        "swap.data.carried",
        "swap.end",
    ] {
        let out = Run::garage(&["restore"], &fx.prefix)
            .env("SEATABLE_BACKUP_DATA_DIR", &fx.data)
            .env("SEATABLE_BACKUP_DATABASES", fx.dbs.join(","))
            .env("SEATABLE_BACKUP_FAILPOINTS", format!("{point}=error"))
            .output();
        assert_exit(&out, 3);
        let err = stderr(&out);
        assert!(err.contains(&format!("failpoint `{point}`")), "{point}: {err}");
        if point.starts_with("swap.") {
            assert!(err.contains("every step was undone"), "{point}: {err}");
        }
        fx.assert_live(&before, point);
    }
    // Without a failpoint the same restore goes through, objects and all.
    let out = fx.run(&["restore"]);
    assert_exit(&out, 0);
    let db = &fx.dbs[1];
    env().sql(&format!("INSERT INTO `{db}`.`audit` VALUES (1)"));
    assert_eq!(env().sql(&format!("SELECT n FROM `{db}`.`v_audit`")).trim(), "2", "the trigger and the view are back");
    fx.drop_dbs();
}

/// SIGTERM while staging and while swapping: the restore stops within seconds, exits 130 and
/// leaves the live state as it was.
#[tokio::test]
async fn sigterm_in_any_phase_leaves_the_live_state_as_it_was() {
    let fx = Fixture::new("rsig");
    let before = fx.with_objects_then_changed();
    for point in ["stage.done", "swap.db.renamed", "swap.data.renamed_in"] {
        let mut child = Run::garage(&["restore"], &fx.prefix)
            .env("SEATABLE_BACKUP_DATA_DIR", &fx.data)
            .env("SEATABLE_BACKUP_DATABASES", fx.dbs.join(","))
            .env("SEATABLE_BACKUP_FAILPOINTS", format!("{point}=sleep(4000)"))
            .spawn();
        // Wait until the failpoint is reached (it says so on stderr), then send SIGTERM.
        let mut err = child.stderr.take().unwrap();
        let reached = std::thread::spawn(move || {
            let mut text = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = std::io::Read::read(&mut err, &mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                text.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&text).contains("failpoint reached") {
                    break;
                }
            }
            (text, err)
        });
        let (mut text, mut err) = reached.join().unwrap();
        assert!(
            String::from_utf8_lossy(&text).contains("failpoint reached"),
            "{point}: {}",
            String::from_utf8_lossy(&text)
        );
        let sent = std::time::Instant::now();
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        std::io::Read::read_to_end(&mut err, &mut text).unwrap();
        let status = child.wait().unwrap();
        assert!(sent.elapsed() < std::time::Duration::from_secs(30), "{point}: took {:?}", sent.elapsed());
        assert_eq!(status.code(), Some(130), "{point}: {}", String::from_utf8_lossy(&text));
        assert!(String::from_utf8_lossy(&text).contains("interrupted"), "{point}: {}", String::from_utf8_lossy(&text));
        fx.assert_live(&before, point);
    }
    fx.drop_dbs();
}

/// A data directory that is a mount point of its own cannot be renamed: it is restored entry
/// by entry inside it, with the same guarantees (here a bind mount, which refuses rename with
/// EBUSY like a disk of its own).
#[tokio::test]
async fn a_data_directory_that_is_a_mount_point_is_restored_in_place() {
    let fx = Fixture::new("rmnt");
    let before = fx.with_objects_then_changed();
    let mount = |args: &[&std::ffi::OsStr]| {
        let st = Command::new("mount").args(args).status().unwrap();
        assert!(st.success(), "mount {args:?}");
    };
    mount(&["--bind".as_ref(), fx.data.as_os_str(), fx.data.as_os_str()]);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(fx.data.clone());
    // A failure in the middle of the entry swap is undone too.
    let out = Run::garage(&["restore", "--only", "data"], &fx.prefix)
        .env("SEATABLE_BACKUP_DATA_DIR", &fx.data)
        .env("SEATABLE_BACKUP_FAILPOINTS", "swap.data.renamed_in=error")
        .output();
    assert_exit(&out, 3);
    common::tree::compare_trees(&before.tree, &fx.data, &[])
        .unwrap_or_else(|d| panic!("the data directory changed: {d}"));
    let out = fx.run(&["restore", "--only", "data"]);
    assert_exit(&out, 0);
    let restored = fx.work.path().join("restored");
    cp_a(&fx.data, &restored);
    // The restored tree is the backup's (its second set), the logs stay, the previous content
    // is kept inside (the only place on that disk), where a backup leaves it out.
    let kept: Vec<String> = std::fs::read_dir(&fx.data)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".seatable-backup-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with(".seatable-backup-before-restore-"), "{kept:?}");
    assert!(fx.data.join(&kept[0]).join("added-later.txt").exists());
    assert!(!fx.data.join("added-later.txt").exists());
    assert_eq!(std::fs::read_to_string(fx.data.join("logs/seahub.log")).unwrap(), "log lines are not backed up\n");
    common::tree::compare_trees(&fx.pristine, &fx.data, &["logs", &kept[0]])
        .unwrap_or_else(|d| panic!("restored tree differs: {d}"));
    fx.drop_dbs();
}

/// A restore killed outright (SIGKILL: no cleanup runs) leaves its staging databases and
/// directory; the next restore says so, removes them and goes through.
#[tokio::test]
async fn leftovers_of_a_killed_restore_are_found_and_removed() {
    let fx = Fixture::new("rkill");
    let out = Run::garage(&["restore"], &fx.prefix)
        .env("SEATABLE_BACKUP_DATA_DIR", &fx.data)
        .env("SEATABLE_BACKUP_DATABASES", fx.dbs.join(","))
        .env("SEATABLE_BACKUP_FAILPOINTS", "stage.done=kill")
        .output();
    assert_eq!(out.status.code(), None, "killed by a signal: {}", stderr(&out));
    assert!(
        !leftovers(env().container(), &fx.dbs[0]).trim().is_empty(),
        "the killed restore left its staging database"
    );
    let out = fx.run(&["restore"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("left by an interrupted restore"), "{err}");
    fx.assert_nothing_staged();
    for (db, sums) in fx.dbs.iter().zip(&fx.sums) {
        assert_eq!(&env().checksums(db), sums);
    }
    fx.drop_dbs();
}

/// A database with many tables: the swap's one `RENAME TABLE` is longer than one command-line
/// argument may be (128 KiB), so it goes through the client's stdin.
#[tokio::test]
async fn a_database_with_many_tables_swaps_in_one_statement() {
    let e = env();
    let db = format!("rmany_{}", std::process::id());
    // 450 tables of 64-character names: the statement is about 170 KB.
    let long = "n".repeat(58);
    let mut sql = format!("DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}`; USE `{db}`;\n");
    for i in 0..450 {
        sql.push_str(&format!(
            "CREATE TABLE t{i:04}_{long} (id INT PRIMARY KEY) ENGINE=Aria; INSERT INTO t{i:04}_{long} VALUES ({i});\n"
        ));
    }
    e.sql(&sql);
    let prefix = unique_prefix("rmany");
    let out = Run::garage(&["backup", "--only", "db"], &prefix).env("SEATABLE_BACKUP_DATABASES", &db).output();
    assert_exit(&out, 0);
    let sums = e.checksums(&db);
    e.sql(&format!("DELETE FROM `{db}`.`t0000_{long}`; DROP TABLE `{db}`.`t0449_{long}`"));
    let out = Run::garage(&["restore", "--db", &db], &prefix).output();
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("450 tables swapped in"), "{}", stdout(&out));
    assert_eq!(e.checksums(&db), sums);
    assert_eq!(leftovers(e.container(), &db).trim(), "");
    e.sql(&format!("DROP DATABASE `{db}`"));
}
