//! `database.mode = "host"`: the dump binary on this host against a TCP server (an external
//! database, as with SeaTable's `MARIADB_HOST`). The server here is a real `mariadbd` started
//! by the test on a free loopback port (the test environment installs mariadb-server).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_exit, stderr, unique_prefix, Run};

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PASSWORD: &str = "Host-Mode-Pw-0815";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `mariadb` client against the server on `port`, over TCP, as root.
fn mariadb(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new("mariadb");
    c.args(["--protocol=TCP", "--default-character-set=utf8mb4", "-h127.0.0.1", &format!("-P{port}"), "-uroot"])
        .args(args)
        .env("MYSQL_PWD", PASSWORD);
    c
}

fn client(port: u16, sql: &str) -> String {
    let out = mariadb(port, &["-N", "-B", "-e", sql])
        .output()
        .expect("the mariadb client (package mariadb-client) must be installed");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A temporary directory of its own: the shared /tmp is busy with every other test.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new("mariadb-install-db")
        .args(["--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .output()
        .expect("mariadb-install-db (package mariadb-server) must be installed");
    assert!(out.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
    let init = dir.path().join("init.sql");
    std::fs::write(
        &init,
        format!(
            "ALTER USER 'root'@'localhost' IDENTIFIED BY '{PASSWORD}';\n\
             CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
             ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\n\
             GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .arg(format!("--socket={}", dir.path().join("sock").display()))
        .arg(format!("--pid-file={}", dir.path().join("pid").display()))
        .arg(format!("--init-file={}", init.display()))
        .args(["--user=root", "--bind-address=127.0.0.1", &format!("--port={port}"), "--skip-name-resolve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mariadbd");
    let server = Server { child, port, _dir: dir };
    let start = Instant::now();
    loop {
        let ok = mariadb(port, &["-e", "SELECT 1"]).output().map(|o| o.status.success()).unwrap_or(false);
        if ok {
            return server;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "mariadbd did not start on port {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn host_mode_dumps_an_external_server() {
    let server = start_server();
    let port = server.port;
    client(
        port,
        "CREATE DATABASE ext_db CHARACTER SET utf8mb4; \
         CREATE TABLE ext_db.t (id INT PRIMARY KEY, s TEXT, b BLOB); \
         INSERT INTO ext_db.t SELECT seq, CONCAT('zeile ', seq, ' 😀 数据'), RANDOM_BYTES(200) FROM ext_db.seq_1_to_5000;",
    );
    let prefix = unique_prefix("hostmode");
    let run = |pw: &str| {
        Run::garage(&["backup", "--only", "db"], &prefix)
            .env("SEATABLE_BACKUP_DB_MODE", "host")
            .env("SEATABLE_BACKUP_DB_HOST", "127.0.0.1")
            .env("SEATABLE_BACKUP_DB_PORT", port.to_string())
            .env("SEATABLE_BACKUP_DATABASES", "ext_db")
            .env("SEATABLE_BACKUP_DB_PASSWORD", pw)
            .output()
    };

    // A wrong password: a source error that names the server, and nothing written.
    let out = run("wrong-password");
    assert_exit(&out, 3);
    assert!(stderr(&out).contains(&format!("`127.0.0.1:{port}` refused user `root`")), "{}", stderr(&out));

    let out = run(PASSWORD);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(PASSWORD));

    // The dump loads back into the same server with identical CHECKSUM TABLE.
    let store = common::env().s3(seatable_backup::config::RequestChecksums::WhenSupported).await;
    let keys = common::keys_ending(store.as_ref(), &prefix, "/db/ext_db.sql.zst").await;
    let key = keys.first().expect("dump object").clone();
    let dump = common::fetch_decompressed(store.as_ref(), &key, seatable_backup::config::Algorithm::Zstd).await;
    client(port, "CREATE DATABASE ext_copy CHARACTER SET utf8mb4");
    let mut load = mariadb(port, &["ext_copy"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(load.stdin.as_mut().unwrap(), &dump).unwrap();
    drop(load.stdin.take());
    assert!(load.wait().unwrap().success(), "loading the dump failed");
    assert_eq!(
        client(port, "CHECKSUM TABLE ext_db.t EXTENDED").split('\t').nth(1),
        client(port, "CHECKSUM TABLE ext_copy.t EXTENDED").split('\t').nth(1)
    );
}

/// SeaTable 5.3+ with `MARIADB_HOST` naming a server outside any container: detected from
/// `.env`, dumped in host mode with the password from that `.env` (never on a command line).
#[tokio::test]
async fn an_external_db_named_in_env_is_found_and_dumped() {
    use common::fixtures::Fixture;
    let server = start_server();
    let port = server.port;
    let names = ["ext_ccnet", "ext_seafile", "ext_dtable"];
    for n in names {
        client(
            port,
            &format!(
                "CREATE DATABASE {n} CHARACTER SET utf8mb4; CREATE TABLE {n}.t (id INT PRIMARY KEY, s TEXT); \
                 INSERT INTO {n}.t VALUES (1, 'eins'), (2, 'zwei ✓');"
            ),
        );
    }
    let f = Fixture::external_db("127.0.0.1", port, PASSWORD, names);
    let prefix = unique_prefix("external-db");
    let run = |args: &[&str]| {
        Run::garage(args, &prefix)
            .env_remove("SEATABLE_BACKUP_DB_CONTAINER")
            .env("SEATABLE_BACKUP_SEATABLE_ROOT", f.root())
    };
    let out = run(&["plan", "--json"]).output();
    assert_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let db = plan["seatable"]["database"].as_str().unwrap().to_string();
    assert!(db.contains(&format!("external server `127.0.0.1:{port}` (MARIADB_HOST in `.env`)")), "{db}");
    assert_eq!(plan["databases"], serde_json::json!(names));

    let out = run(&["backup", "--only", "db"]).output();
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(PASSWORD));
    let store = common::env().s3(seatable_backup::config::RequestChecksums::WhenSupported).await;
    for n in names {
        assert_eq!(common::keys_ending(store.as_ref(), &prefix, &format!("/db/{n}.sql.zst")).await.len(), 1, "{n}");
    }
    let manifest = common::keys_ending(store.as_ref(), &prefix, "/manifest.json").await;
    let raw = store.get_object(&manifest[0]).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains(&format!("external 127.0.0.1:{port}")) && !text.contains(PASSWORD), "{text}");
}
