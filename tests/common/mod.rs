//! Shared helpers for the integration tests: the real test environment (Garage, MariaDB in a
//! container behind Podman's Docker API) that `scripts/testenv up` starts, and a runner for the
//! binary. A test that needs the environment FAILS when it is missing; nothing skips.
#![allow(dead_code)]

pub mod fixtures;
pub mod tree;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

use seatable_backup::config::{RequestChecksums, S3Settings, Secret};
use seatable_backup::store::s3::S3Store;
use seatable_backup::store::Store;

pub struct TestEnv {
    pub vars: HashMap<String, String>,
}

fn env_file() -> PathBuf {
    match std::env::var("SEATABLE_BACKUP_TESTENV_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d).join("env"),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".testenv/env"),
    }
}

/// The running test environment; panics (fails the test) when it is not there.
pub fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = env_file();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "test environment missing ({}: {e}); start it with `scripts/testenv up` (or run `scripts/test`)",
                path.display()
            )
        });
        let mut vars = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("export ") else { continue };
            if let Some((k, v)) = rest.split_once('=') {
                let v = v.trim().trim_matches('\'').trim_matches('"');
                vars.insert(k.to_string(), v.to_string());
            }
        }
        let env = TestEnv { vars };
        for k in ["DOCKER_HOST", "SEATABLE_BACKUP_TEST_S3_ENDPOINT", "SEATABLE_BACKUP_TEST_BUCKET"] {
            assert!(env.vars.contains_key(k), "{} lacks {k}", path.display());
        }
        env
    })
}

impl TestEnv {
    pub fn get(&self, k: &str) -> &str {
        self.vars.get(k).map(String::as_str).unwrap_or_else(|| panic!("test environment lacks {k}"))
    }
    pub fn endpoint(&self) -> &str {
        self.get("SEATABLE_BACKUP_TEST_S3_ENDPOINT")
    }
    pub fn bucket(&self) -> &str {
        self.get("SEATABLE_BACKUP_TEST_BUCKET")
    }
    pub fn docker_host(&self) -> &str {
        self.get("DOCKER_HOST")
    }
    pub fn container(&self) -> &str {
        self.get("SEATABLE_BACKUP_TEST_DB_CONTAINER")
    }
    /// The second, empty MariaDB container (migration target; tests may stop it).
    pub fn target_container(&self) -> &str {
        self.get("SEATABLE_BACKUP_TEST_TARGET_CONTAINER")
    }
    /// The third MariaDB container, named like SeaTable 4.3+'s (`mariadb`); not seeded.
    pub fn new_db_container(&self) -> &str {
        self.get("SEATABLE_BACKUP_TEST_NEW_DB_CONTAINER")
    }

    pub fn s3_settings(&self, checksums: RequestChecksums) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint().to_string()),
            region: Some(self.get("SEATABLE_BACKUP_TEST_S3_REGION").to_string()),
            path_style: true,
            request_checksums: checksums,
            credentials: Some((
                self.get("SEATABLE_BACKUP_TEST_ACCESS_KEY_ID").to_string(),
                Secret::new(self.get("SEATABLE_BACKUP_TEST_SECRET_ACCESS_KEY")),
            )),
        }
    }

    pub async fn s3(&self, checksums: RequestChecksums) -> Arc<dyn Store> {
        Arc::new(S3Store::new(self.bucket(), &self.s3_settings(checksums)).await.expect("S3 store"))
    }

    /// Runs SQL (as root) in the DB container and returns stdout; the password stays inside.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_in("", sql)
    }

    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        self.sql_at(self.container(), db, sql)
    }

    /// Runs SQL in `container`.
    pub fn sql_at(&self, container: &str, db: &str, sql: &str) -> String {
        let out = self.db_client_at(container, db, sql.as_bytes(), &["-N", "-B"]);
        assert!(out.status.success(), "SQL failed in {container}: {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Feeds `input` to the `mariadb` client in the container.
    pub fn db_client(&self, db: &str, input: &[u8], extra: &[&str]) -> Output {
        self.db_client_at(self.container(), db, input, extra)
    }

    /// Feeds `input` to the `mariadb` client in `container`.
    pub fn db_client_at(&self, container: &str, db: &str, input: &[u8], extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec![
            "exec".into(),
            "-i".into(),
            container.into(),
            "sh".into(),
            "-c".into(),
            r#"MYSQL_PWD="$MYSQL_ROOT_PASSWORD" exec mariadb -uroot --default-character-set=utf8mb4 "$@""#.into(),
            "mariadb".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if !db.is_empty() {
            args.push(db.into());
        }
        let mut child = Command::new("podman")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("podman exec");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("podman exec");
        let _ = writer.join();
        out
    }

    /// `CHECKSUM TABLE` of every base table of `db`, by table name.
    pub fn checksums(&self, db: &str) -> Vec<(String, String)> {
        self.checksums_at(self.container(), db)
    }

    /// `CHECKSUM TABLE` of every base table of `db` in `container`.
    pub fn checksums_at(&self, container: &str, db: &str) -> Vec<(String, String)> {
        let tables = self.sql_at(container, "", &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='{db}' AND TABLE_TYPE='BASE TABLE' ORDER BY 1"
        ));
        let mut out = Vec::new();
        for t in tables.lines().filter(|l| !l.is_empty()) {
            let row = self.sql_at(container, "", &format!("CHECKSUM TABLE `{db}`.`{t}` EXTENDED"));
            let sum = row.split('\t').nth(1).unwrap_or("").trim().to_string();
            out.push((t.to_string(), sum));
        }
        out
    }

    /// The routines, triggers, views and events of `db`, by name.
    /// The views, triggers, routines and events of `db` with their definitions (views without
    /// their database's name, so that copies in two databases compare equal).
    pub fn schema_objects(&self, db: &str) -> String {
        self.sql(&format!(
            "SELECT CONCAT('routine ', ROUTINE_NAME, ' ', ROUTINE_TYPE, ' ', ROUTINE_DEFINITION, ' ', SQL_MODE, ' ', DEFINER) \
             FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='{db}' \
             UNION ALL SELECT CONCAT('trigger ', TRIGGER_NAME, ' ', EVENT_OBJECT_TABLE, ' ', ACTION_TIMING, ' ', \
             EVENT_MANIPULATION, ' ', ACTION_ORDER, ' ', ACTION_STATEMENT, ' ', SQL_MODE) \
             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='{db}' \
             UNION ALL SELECT CONCAT('view ', TABLE_NAME, ' ', REPLACE(VIEW_DEFINITION, '`{db}`.', ''), ' ', SECURITY_TYPE) \
             FROM information_schema.VIEWS WHERE TABLE_SCHEMA='{db}' \
             UNION ALL SELECT CONCAT('event ', EVENT_NAME, ' ', EVENT_DEFINITION, ' ', STATUS, ' ', IFNULL(INTERVAL_VALUE, '')) \
             FROM information_schema.EVENTS WHERE EVENT_SCHEMA='{db}' \
             ORDER BY 1"
        ))
    }
}

/// Runs the garage CLI of the test environment (creating buckets and keys); panics on failure.
pub fn garage_cli(args: &[&str]) {
    let e = env();
    let out = Command::new(e.get("SEATABLE_BACKUP_TEST_GARAGE_BIN"))
        .arg("-c")
        .arg(e.get("SEATABLE_BACKUP_TEST_GARAGE_CONFIG"))
        .args(args)
        .output()
        .expect("garage CLI");
    assert!(out.status.success(), "garage {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Creates bucket `name` in Garage, owned (read, write) by the test key.
pub fn garage_bucket(name: &str) {
    garage_cli(&["bucket", "create", name]);
    garage_cli(&[
        "bucket",
        "allow",
        "--read",
        "--write",
        "--owner",
        name,
        "--key",
        env().get("SEATABLE_BACKUP_TEST_ACCESS_KEY_ID"),
    ]);
}

/// A fresh key prefix per test, so tests share one bucket without seeing each other.
pub fn unique_prefix(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("t/{name}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A lock file no other run of this test process uses.
fn own_lock_file() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!("seatable-backup-test-locks-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{}.lock", N.fetch_add(1, Ordering::Relaxed)))
}

/// The binary, with a clean environment: only what the test passes (plus PATH and HOME).
pub struct Run {
    cmd: Command,
}

impl Run {
    pub fn new(args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seatable-backup"));
        cmd.args(args).env_clear();
        for k in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(k) {
                cmd.env(k, v);
            }
        }
        // Tests run in parallel: each run takes a lock file of its own unless the test sets one
        // (the default, /run/lock/seatable-backup.lock, would make them refuse each other).
        cmd.env("SEATABLE_BACKUP_LOCK_FILE", own_lock_file());
        Run { cmd }
    }

    /// Destination Garage, DB container and Docker API of the test environment.
    pub fn garage(args: &[&str], prefix: &str) -> Run {
        let e = env();
        let mut r = Run::new(args);
        r.cmd
            .env("AWS_ACCESS_KEY_ID", e.get("SEATABLE_BACKUP_TEST_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", e.get("SEATABLE_BACKUP_TEST_SECRET_ACCESS_KEY"))
            .env("SEATABLE_BACKUP_DESTINATION", format!("s3://{}", e.bucket()))
            .env("SEATABLE_BACKUP_PREFIX", prefix)
            .env("SEATABLE_BACKUP_S3_ENDPOINT", e.endpoint())
            .env("SEATABLE_BACKUP_S3_REGION", e.get("SEATABLE_BACKUP_TEST_S3_REGION"))
            .env("SEATABLE_BACKUP_S3_PATH_STYLE", "true")
            .env("SEATABLE_BACKUP_DOCKER_HOST", e.docker_host())
            .env("SEATABLE_BACKUP_DB_CONTAINER", e.container())
            .env("SEATABLE_BACKUP_HOST_NAME", "testhost");
        r
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(mut self, k: &str) -> Run {
        self.cmd.env_remove(k);
        self
    }

    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    pub fn output(mut self) -> Output {
        self.cmd.stdin(Stdio::null()).output().expect("run seatable-backup")
    }

    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn seatable-backup")
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts the exit code, printing the output when it differs.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "exit code\nstdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
}

/// Creates a SeaTable-like data directory with `scripts/make-demo-data`.
pub fn demo_data(dir: &Path, size_mb: u32) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-demo-data");
    let out = Command::new("bash")
        .arg(script)
        .arg(dir)
        .arg("--size-mb")
        .arg(size_mb.to_string())
        .output()
        .expect("make-demo-data");
    assert!(out.status.success(), "make-demo-data: {}", String::from_utf8_lossy(&out.stderr));
}

/// Decompresses a whole object from `store`.
pub async fn fetch_decompressed(store: &dyn Store, key: &str, algo: seatable_backup::config::Algorithm) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let r = store.get_stream(key).await.expect("get object");
    let mut out = Vec::new();
    seatable_backup::codec::decompress(tokio::io::BufReader::new(r), algo)
        .read_to_end(&mut out)
        .await
        .expect("decompress");
    out
}

/// SHA-256 of a whole object, hex.
pub async fn sha256_of(store: &dyn Store, key: &str) -> String {
    use sha2::Digest;
    let b = store.get_object(key).await.expect("get object");
    hex::encode(sha2::Sha256::digest(&b))
}

/// The keys under `prefix/` that end with `suffix`.
pub async fn keys_ending(store: &dyn Store, prefix: &str, suffix: &str) -> Vec<String> {
    store
        .list(&format!("{prefix}/"))
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(suffix))
        .collect()
}
