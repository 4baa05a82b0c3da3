//! Fake SeaTable installs and app-container stand-ins for the integration tests.
//!
//! A [`Fixture`] is a temp dir laid out like a real host's `/` (the tool's `seatable.root`, env
//! `SEATABLE_BACKUP_SEATABLE_ROOT`), with the files SeaTable would have there:
//!
//! ```text
//! Fixture::old()                                    old layout (<= 4.2), compose file with the DB password
//! Fixture::new_layout([ccnet, seafile, dtable])     4.3-5.x, .env with SEATABLE_MYSQL_ROOT_PASSWORD
//! Fixture::v61_s3(&S3Fixture, [..])                 6.1, STORAGE_TYPE=s3, storage-server and seafile on S3
//! Fixture::v62(&S3Fixture, [..])                    6.2, STORAGE_SERVER_BACKEND_TYPE=s3, no dtable-storage-server.conf
//! Fixture::external_db(host, port, password, [..])  5.3+, MARIADB_HOST/PORT/PASSWORD: a DB outside any container
//! fixture.root() / data_dir() / compose_dir() / big_data_backups() / db_password()
//! Kind::version() / app_container() / db_container()
//! ```
//!
//! Every data dir holds `conf/` (`dtable_web_settings.py` 0600 with `SECRET_KEY` and
//! `PLUGINS_REPO_ID`), `seafile-data/`, `seahub-data/`, `storage-data/`, and the never-archived
//! [`SKIPPED_DIRS`], one file each at least. `.env` and `seatable-license.txt` are 0600.
//!
//! [`AppContainer::start`] runs a stand-in for SeaTable's app container (`seatable-server`, or
//! `seatable` in the old layout) from the testenv image re-tagged as
//! `docker.io/seatable/seatable-enterprise:<version>`, with the fixture's data mounted at `/shared`
//! like SeaTable does and a fake `/opt/seatable/scripts/seatable.sh` whose `backup-all` writes
//! `/shared/seatable/storage-data/big-data-backups/backup-all-<unix time>.txt` ([`BackupAll`]).
//! Dropping it removes the container. Container names are global: hold [`lock`] for the whole
//! test when using the fixed names (`seatable-server`, `seatable`, the `mariadb` DB container);
//! it may be held across `.await`.
//!
//! [`create_databases`] / [`drop_databases`] make small databases ([`FIXTURE_TABLES`], and the
//! [`LOG_TABLES`] in the third one) in a testenv DB container.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::env;

/// The testenv's base image (host `/usr` inside an empty root).
pub const HOSTBIN_IMAGE: &str = "localhost/hostbin:latest";
/// The label every stand-in container carries; only such containers are ever removed.
pub const LABEL: &str = "seatable-backup-test";
/// Data-dir subdirectories that are never archived.
pub const SKIPPED_DIRS: [&str; 5] = ["logs", "ccnet", "db-data", "pids", "scripts"];
/// Data-dir subdirectories that are archived (with `storage-data` unless it lives in S3).
pub const ARCHIVED_DIRS: [&str; 4] = ["conf", "seafile-data", "seahub-data", "storage-data"];
/// The default database names (old layout, and new layouts without custom names).
pub const DEFAULT_DB_NAMES: [&str; 3] = ["ccnet_db", "seafile_db", "dtable_db"];
/// The two small tables [`create_databases`] puts into every database.
pub const FIXTURE_TABLES: [&str; 2] = ["fixture_users", "fixture_items"];
/// SeaTable's large log tables, created in the third (dtable) database on request.
pub const LOG_TABLES: [&str; 4] = ["operation_log", "delete_operation_log", "session_log", "activities"];
/// Rows in each table [`create_databases`] creates.
pub const ROWS_PER_TABLE: usize = 3;

/// The root password written into the old layout's `docker-compose.yml`.
pub const OLD_ROOT_PASSWORD: &str = "old-Compose#pw 1";
/// The DB password written into the new layouts' `.env` (a `#` and a space inside: it must be quoted).
pub const NEW_ROOT_PASSWORD: &str = "New#Env pw 2";
pub const HOSTNAME: &str = "seatable.example.com";
pub const SECRET_KEY: &str = "fixture-secret-key-6b1f0c2e9d7a4f3b8e5c1a0d9f8e7c6b";
pub const PLUGINS_REPO_ID: &str = "3c1e2a4b-5d6f-4a8b-9c0d-1e2f3a4b5c6d";
/// A base's uuid in `storage-data/bases/`.
pub const BASE_UUID: &str = "0f8a6b3c-2d4e-4f1a-9b7c-5e6d8a9b0c1d";
/// A library (repo) id in `seafile-data/storage/*/`.
pub const REPO_ID: &str = "8d2b7e4a-1c3f-4e5d-a6b7-c8d9e0f1a2b3";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Old layout (up to 4.2): `/opt/seatable/docker-compose.yml`, data in `/opt/seatable/seatable-data/seatable`.
    Old,
    /// New layout, 4.3-5.x: `/opt/seatable-compose/.env`, data in `/opt/seatable-server/seatable`, filesystem storage.
    New,
    /// New layout, 6.1, dtable-storage-server and seafile objects in S3 (`STORAGE_TYPE=s3`).
    V61S3,
    /// New layout, 6.2: `STORAGE_SERVER_BACKEND_TYPE=s3`, no `conf/dtable-storage-server.conf`.
    V62,
    /// New layout whose `.env` names an external DB (`MARIADB_HOST`, `MARIADB_PORT`, `MARIADB_PASSWORD`).
    ExternalDb,
}

impl Kind {
    /// The SeaTable version the fixture's files describe (the image tag).
    pub fn version(self) -> &'static str {
        match self {
            Kind::Old => "4.2.3",
            Kind::New => "5.2.7",
            Kind::V61S3 => "6.1.5",
            Kind::V62 => "6.2.3",
            Kind::ExternalDb => "5.3.9",
        }
    }

    /// SeaTable's app container name in this layout.
    pub fn app_container(self) -> &'static str {
        match self {
            Kind::Old => "seatable",
            _ => "seatable-server",
        }
    }

    /// SeaTable's DB container name in this layout (`None`: the DB is external).
    pub fn db_container(self) -> Option<&'static str> {
        match self {
            Kind::Old => Some("seatable-mysql"),
            Kind::ExternalDb => None,
            _ => Some("mariadb"),
        }
    }

    pub fn is_old_layout(self) -> bool {
        self == Kind::Old
    }
}

/// Where a fixture's S3 storage points (the test's Garage, its keys and buckets).
#[derive(Clone, Debug)]
pub struct S3Fixture {
    /// `host:port`, no scheme (SeaTable's `S3_HOST` / `host`).
    pub host: String,
    pub region: String,
    pub key_id: String,
    pub secret: String,
    /// storage, commit, fs, block, avatar.
    pub buckets: [String; 5],
}

impl S3Fixture {
    /// From an endpoint URL such as `http://127.0.0.1:3900` (the scheme is dropped).
    pub fn new(endpoint: &str, region: &str, key_id: &str, secret: &str, buckets: [&str; 5]) -> S3Fixture {
        let host = endpoint.split_once("://").map(|(_, h)| h).unwrap_or(endpoint).trim_end_matches('/');
        S3Fixture {
            host: host.to_string(),
            region: region.to_string(),
            key_id: key_id.to_string(),
            secret: secret.to_string(),
            buckets: buckets.map(str::to_string),
        }
    }
    pub fn storage_bucket(&self) -> &str {
        &self.buckets[0]
    }
    pub fn commit_bucket(&self) -> &str {
        &self.buckets[1]
    }
    pub fn fs_bucket(&self) -> &str {
        &self.buckets[2]
    }
    pub fn block_bucket(&self) -> &str {
        &self.buckets[3]
    }
    pub fn avatar_bucket(&self) -> &str {
        &self.buckets[4]
    }
}

/// A fake SeaTable install under a temp root (removed on drop).
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub kind: Kind,
    /// ccnet, seafile, dtable.
    pub db_names: [String; 3],
    /// The DB password the fixture's settings hold (compose file or `.env`).
    pub db_password: String,
}

struct ExternalDb<'a> {
    host: &'a str,
    port: u16,
}

impl Fixture {
    /// Old layout (up to 4.2), default database names, DB container `seatable-mysql`.
    pub fn old() -> Fixture {
        let f = Fixture::empty(Kind::Old, DEFAULT_DB_NAMES, OLD_ROOT_PASSWORD);
        f.write_old_compose();
        // The DB's own data dir next to the SeaTable data: never backed up.
        f.file("opt/seatable/mysql-data/ibdata1", &[0x5a; 4096], 0o660);
        f.file("opt/seatable/mysql-data/mysql/user.MAI", b"fake mariadb table\n", 0o660);
        f.write_data_dir(None);
        f.file(&format!("{}/seatable-license.txt", f.data_rel()), license().as_bytes(), 0o600);
        f
    }

    /// New layout (4.3-5.x), filesystem storage, the DB in the `mariadb` container.
    pub fn new_layout<S: AsRef<str>>(db_names: [S; 3]) -> Fixture {
        let f = Fixture::empty(Kind::New, db_names, NEW_ROOT_PASSWORD);
        f.write_new_compose(None);
        f.write_data_dir(None);
        f
    }

    /// New layout, 6.1, storage server and seafile objects in `s3`.
    pub fn v61_s3<S: AsRef<str>>(s3: &S3Fixture, db_names: [S; 3]) -> Fixture {
        let f = Fixture::empty(Kind::V61S3, db_names, NEW_ROOT_PASSWORD);
        f.write_new_compose(Some(s3));
        f.write_data_dir(Some(s3));
        f
    }

    /// New layout, 6.2: storage server configured by `.env` only, seafile objects in `s3`.
    pub fn v62<S: AsRef<str>>(s3: &S3Fixture, db_names: [S; 3]) -> Fixture {
        let f = Fixture::empty(Kind::V62, db_names, NEW_ROOT_PASSWORD);
        f.write_new_compose(Some(s3));
        f.write_data_dir(Some(s3));
        f
    }

    /// New layout (5.3) whose `.env` points at a DB outside any container.
    pub fn external_db<S: AsRef<str>>(host: &str, port: u16, password: &str, db_names: [S; 3]) -> Fixture {
        let f = Fixture::empty(Kind::ExternalDb, db_names, password);
        f.write_new_compose_with(None, Some(ExternalDb { host, port }));
        f.write_data_dir(None);
        f
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The SeaTable data dir on the "host" (`<root>/opt/seatable-server/seatable` or
    /// `<root>/opt/seatable/seatable-data/seatable`).
    pub fn data_dir(&self) -> PathBuf {
        self.root().join(self.data_rel())
    }

    /// The directory mounted at `/shared` in the app container (the data dir's parent).
    pub fn shared_dir(&self) -> PathBuf {
        self.data_dir().parent().expect("data dir parent").to_path_buf()
    }

    /// `<root>/opt/seatable-compose` (new layouts) or `<root>/opt/seatable` (old: `docker-compose.yml`).
    pub fn compose_dir(&self) -> PathBuf {
        self.root().join(if self.kind.is_old_layout() { "opt/seatable" } else { "opt/seatable-compose" })
    }

    /// Where the stand-in's `seatable.sh backup-all` writes its file.
    pub fn big_data_backups(&self) -> PathBuf {
        self.data_dir().join("storage-data/big-data-backups")
    }

    pub fn db_password(&self) -> &str {
        &self.db_password
    }

    pub fn db_names(&self) -> [&str; 3] {
        [&self.db_names[0], &self.db_names[1], &self.db_names[2]]
    }

    // ---------------------------------------------------------------- writing

    fn empty<S: AsRef<str>>(kind: Kind, db_names: [S; 3], password: &str) -> Fixture {
        let root = tempfile::Builder::new().prefix("seatable-fixture-").tempdir().expect("fixture temp root");
        // A real host's `/` is 0755; tempfile makes 0700.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod fixture root");
        Fixture { root, kind, db_names: db_names.map(|n| n.as_ref().to_string()), db_password: password.to_string() }
    }

    fn data_rel(&self) -> &'static str {
        if self.kind.is_old_layout() {
            "opt/seatable/seatable-data/seatable"
        } else {
            "opt/seatable-server/seatable"
        }
    }

    /// Writes `rel` (relative to the root) with `mode`, creating parents (0755).
    fn file(&self, rel: &str, content: &[u8], mode: u32) {
        write_file(&self.root().join(rel), content, mode);
    }

    fn text(&self, rel: &str, content: &str) {
        self.file(rel, content.as_bytes(), 0o644);
    }

    fn write_old_compose(&self) {
        let pw = &self.db_password;
        let version = self.kind.version();
        self.text(
            "opt/seatable/docker-compose.yml",
            &format!(
                r#"version: '2.0'
services:
  db:
    image: mariadb:10.11
    container_name: seatable-mysql
    environment:
      - MYSQL_ROOT_PASSWORD={pw}  # Required, set the root's password of MySQL service.
      - MYSQL_LOG_CONSOLE=true
    volumes:
      - /opt/seatable/mysql-data:/var/lib/mysql  # Required, specifies the path to MySQL data persistent store.
    networks:
      - seatable-net

  memcached:
    image: memcached:1.6.18
    container_name: seatable-memcached
    entrypoint: memcached -m 256
    networks:
      - seatable-net

  redis:
    image: redis:6.2.7
    container_name: seatable-redis
    networks:
      - seatable-net

  seatable:
    image: seatable/seatable-enterprise:{version}
    container_name: seatable
    ports:
      - "80:80"
      - "443:443"
    volumes:
      - /opt/seatable/seatable-data:/shared  # Requested, specifies the path to Seafile data persistent store.
    environment:
      - DB_HOST=db
      - DB_ROOT_PASSWD={pw}  # Required, the value should be root's password of MySQL service.
      - TIME_ZONE=Europe/Berlin
      - SEATABLE_SERVER_LETSENCRYPT=False
      - SEATABLE_SERVER_HOSTNAME={HOSTNAME}
    depends_on:
      - db
      - memcached
      - redis
    networks:
      - seatable-net

networks:
  seatable-net:
"#
            ),
        );
    }

    fn write_new_compose(&self, s3: Option<&S3Fixture>) {
        self.write_new_compose_with(s3, None);
    }

    fn write_new_compose_with(&self, s3: Option<&S3Fixture>, external: Option<ExternalDb>) {
        let [ccnet, seafile, dtable] = self.db_names();
        let pw = &self.db_password;
        let version = self.kind.version();
        let mut env = format!(
            "# components to be used; IMPORTANT: there should be no space between the files names !\n\
             COMPOSE_FILE='caddy.yml,seatable-server.yml'\n\
             COMPOSE_PATH_SEPARATOR=','\n\
             \n\
             # system settings\n\
             TIME_ZONE='Europe/Berlin'\n\
             \n\
             # images\n\
             SEATABLE_IMAGE='seatable/seatable-enterprise:{version}'\n\
             \n\
             # seatable server url\n\
             SEATABLE_SERVER_HOSTNAME={HOSTNAME}\n\
             SEATABLE_SERVER_PROTOCOL='https'\n\
             \n\
             # initial web admin\n\
             SEATABLE_ADMIN_EMAIL='admin@example.com'\n\
             SEATABLE_ADMIN_PASSWORD='admin-Pw-not-for-the-db'\n\
             \n\
             # database\n"
        );
        match (self.kind, &external) {
            (Kind::New, _) => env.push_str(&format!("SEATABLE_MYSQL_ROOT_PASSWORD=\"{pw}\"\n")),
            (_, Some(ext)) => env.push_str(&format!(
                "MARIADB_HOST={}\nMARIADB_PORT={}\nMARIADB_PASSWORD=\"{pw}\"\n",
                ext.host, ext.port
            )),
            _ => env.push_str(&format!("MARIADB_PASSWORD=\"{pw}\"\n")),
        }
        env.push_str(&format!(
            "SEATABLE_MYSQL_DB_CCNET_DB_NAME={ccnet}\n\
             SEATABLE_MYSQL_DB_SEAFILE_DB_NAME={seafile}\n\
             SEATABLE_MYSQL_DB_DTABLE_DB_NAME={dtable}\n"
        ));
        if let Some(s3) = s3 {
            env.push_str("\n# S3 storage\n");
            match self.kind {
                Kind::V62 => env.push_str("STORAGE_SERVER_BACKEND_TYPE=s3\n"),
                _ => env.push_str("STORAGE_TYPE=s3\n"),
            }
            env.push_str(&format!(
                "S3_STORAGE_BUCKET={}\nS3_COMMIT_BUCKET={}\nS3_FS_BUCKET={}\nS3_BLOCK_BUCKET={}\n",
                s3.storage_bucket(),
                s3.commit_bucket(),
                s3.fs_bucket(),
                s3.block_bucket()
            ));
            if self.kind == Kind::V62 {
                env.push_str(&format!("S3_AVATAR_BUCKET={}\n", s3.avatar_bucket()));
            }
            env.push_str(&format!(
                "S3_KEY_ID={}\nS3_SECRET_KEY={}\nS3_HOST={}\nS3_AWS_REGION={}\nS3_USE_HTTPS=false\n\
                 S3_PATH_STYLE_REQUEST=true\nS3_SSE_C_KEY=\n",
                s3.key_id, s3.secret, s3.host, s3.region
            ));
        }
        self.file("opt/seatable-compose/.env", env.as_bytes(), 0o600);
        self.file("opt/seatable-compose/seatable-license.txt", license().as_bytes(), 0o600);
        self.text("opt/seatable-compose/caddy.yml", CADDY_YML);
        let mariadb_service = if external.is_some() {
            String::new()
        } else {
            format!(
                r#"
  mariadb:
    image: ${{SEATABLE_DB_IMAGE:-mariadb:10.11.6-jammy}}
    restart: unless-stopped
    container_name: mariadb
    environment:
      - MYSQL_ROOT_PASSWORD=${{{pw_var}:?Variable is not set or empty}}
      - MYSQL_LOG_CONSOLE=true
      - MARIADB_AUTO_UPGRADE=1
    volumes:
      - "/opt/mariadb:/var/lib/mysql"
    networks:
      - backend-seatable-net
"#,
                pw_var = if self.kind == Kind::New { "SEATABLE_MYSQL_ROOT_PASSWORD" } else { "MARIADB_PASSWORD" }
            )
        };
        self.text(
            "opt/seatable-compose/seatable-server.yml",
            &format!(
                r#"---
services:
  seatable-server:
    image: ${{SEATABLE_IMAGE:-seatable/seatable-enterprise:{version}}}
    restart: unless-stopped
    container_name: seatable-server
    volumes:
      - "/opt/seatable-server:/shared"
      - type: bind
        source: "./seatable-license.txt"
        target: "/shared/seatable/seatable-license.txt"
        read_only: ${{SEATABLE_LICENSE_FORCE_READ_ONLY:-false}}
    environment:
      - DB_HOST=${{MARIADB_HOST:-mariadb}}
      - DB_ROOT_PASSWD=${{SEATABLE_MYSQL_ROOT_PASSWORD:-${{MARIADB_PASSWORD:-}}}}
      - SEATABLE_MYSQL_DB_CCNET_DB_NAME=${{SEATABLE_MYSQL_DB_CCNET_DB_NAME:-ccnet_db}}
      - SEATABLE_MYSQL_DB_SEAFILE_DB_NAME=${{SEATABLE_MYSQL_DB_SEAFILE_DB_NAME:-seafile_db}}
      - SEATABLE_MYSQL_DB_DTABLE_DB_NAME=${{SEATABLE_MYSQL_DB_DTABLE_DB_NAME:-dtable_db}}
      - SEATABLE_SERVER_HOSTNAME=${{SEATABLE_SERVER_HOSTNAME:?Variable is not set or empty}}
      - SEATABLE_SERVER_PROTOCOL=${{SEATABLE_SERVER_PROTOCOL:-https}}
      - TIME_ZONE=${{TIME_ZONE}}
    labels:
      caddy: ${{SEATABLE_SERVER_PROTOCOL:-https}}://${{SEATABLE_SERVER_HOSTNAME:?Variable is not set or empty}}
      caddy.reverse_proxy: "{{{{upstreams 80}}}}"
    networks:
      - frontend-net
      - backend-seatable-net
{mariadb_service}
  memcached:
    image: ${{SEATABLE_MEMCACHED_IMAGE:-memcached:1.6.29}}
    restart: unless-stopped
    container_name: memcached
    entrypoint: memcached -m 256
    networks:
      - backend-seatable-net

  redis:
    image: ${{SEATABLE_REDIS_IMAGE:-redis:7.2.5-bookworm}}
    restart: unless-stopped
    container_name: redis
    networks:
      - backend-seatable-net

networks:
  frontend-net:
    name: frontend-net
  backend-seatable-net:
    name: backend-seatable-net
"#
            ),
        );
        if external.is_none() {
            // The DB's own data dir: never backed up.
            self.file("opt/mariadb/ibdata1", &[0x5a; 4096], 0o660);
        }
        // Caddy's certificates (optionally backed up).
        self.text(
            &format!("opt/caddy/caddy/certificates/acme-v02.api.letsencrypt.org-directory/{HOSTNAME}/{HOSTNAME}.crt"),
            "-----BEGIN CERTIFICATE-----\nZmFrZSBjZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----\n",
        );
    }

    fn write_data_dir(&self, s3: Option<&S3Fixture>) {
        let d = self.data_rel();
        let [ccnet, seafile, dtable] = self.db_names();
        let pw = &self.db_password;
        let db_host = if self.kind.is_old_layout() { "db" } else { "mariadb" };

        // conf/
        self.file(
            &format!("{d}/conf/dtable_web_settings.py"),
            format!(
                "# -*- coding: utf-8 -*-\n\
                 SECRET_KEY = \"{SECRET_KEY}\"\n\
                 PLUGINS_REPO_ID = \"{PLUGINS_REPO_ID}\"\n\
                 \n\
                 DATABASES = {{\n    'default': {{\n        'ENGINE': 'django.db.backends.mysql',\n        \
                 'NAME': '{dtable}',\n        'USER': 'root',\n        'PASSWORD': '{pw}',\n        \
                 'HOST': '{db_host}',\n        'PORT': '3306',\n    }}\n}}\n\
                 ENABLE_USER_TO_SET_NUMBER_SEPARATOR = True\n\
                 TIME_ZONE = 'Europe/Berlin'\n"
            )
            .as_bytes(),
            0o600,
        );
        if self.kind != Kind::V62 {
            let backend = match s3 {
                Some(s3) => format!(
                    "[storage backend]\ntype = s3\nbucket = {}\nkey_id = {}\nkey = {}\nuse_v4_signature = true\n\
                     aws_region = {}\nhost = {}\npath_style_request = true\nuse_https = false\n",
                    s3.storage_bucket(),
                    s3.key_id,
                    s3.secret,
                    s3.region,
                    s3.host
                ),
                None => "[storage backend]\ntype = filesystem\npath = /opt/seatable/storage-data\n".to_string(),
            };
            self.text(
                &format!("{d}/conf/dtable-storage-server.conf"),
                &format!(
                    "[general]\nlog_dir = /opt/seatable/logs\ntemp_file_dir = /tmp/tmp-storage-data\n\n{backend}\n\
                     [snapshot]\ninterval = 86400\nkeep_days = 180\n"
                ),
            );
        }
        let mut seafile_conf = format!(
            "[fileserver]\nport = 8082\n\n[database]\ntype = mysql\nhost = {db_host}\nport = 3306\nuser = root\n\
             password = {pw}\ndb_name = {seafile}\nconnection_charset = utf8\n\n[notification]\nenabled = false\n"
        );
        if let Some(s3) = s3 {
            for (section, bucket) in [
                ("commit_object_backend", s3.commit_bucket()),
                ("fs_object_backend", s3.fs_bucket()),
                ("block_backend", s3.block_bucket()),
            ] {
                seafile_conf.push_str(&format!(
                    "\n[{section}]\nname = s3\nbucket = {bucket}\nkey_id = {}\nkey = {}\nhost = {}\naws_region = {}\n\
                     use_v4_signature = true\npath_style_request = true\nuse_https = false\n",
                    s3.key_id, s3.secret, s3.host, s3.region
                ));
            }
        }
        self.text(&format!("{d}/conf/seafile.conf"), &seafile_conf);
        self.text(
            &format!("{d}/conf/ccnet.conf"),
            &format!(
                "[General]\nSERVICE_URL = https://{HOSTNAME}\n\n[Database]\nENGINE = mysql\nHOST = {db_host}\n\
                 PORT = 3306\nUSER = root\nPASSWD = {pw}\nDB = {ccnet}\nCONNECTION_CHARSET = utf8\n"
            ),
        );
        self.text(
            &format!("{d}/conf/dtable-db.conf"),
            "[general]\nhost = 127.0.0.1\nport = 7777\nlog_dir = /opt/seatable/logs\n\n\
             [storage]\ndata_dir = /opt/seatable/db-data\ncleanup_at = 00:00\n\n\
             [dtable cache]\nprivate_key = \"fixture-dtable-db-private-key\"\ndtable_server_url = \"http://127.0.0.1:5000\"\n\
             total_cache_size = 1\n\n\
             [backup]\ndtable_storage_server = http://127.0.0.1:6666\nbackup_interval = 1440\nkeep_backup_num = 3\n",
        );

        // seafile-data/
        let r = REPO_ID;
        self.file(
            &format!("{d}/seafile-data/storage/commits/{r}/3f/a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"),
            br#"{"commit_id":"3fa1b2c3d4e5f60718293a4b5c6d7e8f9012345678","root_id":"0000000000000000000000000000000000000000","repo_name":"Template","creator_name":"admin@example.com"}"#,
            0o644,
        );
        self.file(
            &format!("{d}/seafile-data/storage/fs/{r}/9c/0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0"),
            &pseudo_random(1500, 1),
            0o644,
        );
        self.file(
            &format!("{d}/seafile-data/storage/blocks/{r}/5e/6f7a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6"),
            &pseudo_random(4096, 2),
            0o644,
        );
        self.file(
            &format!("{d}/seafile-data/storage/blocks/{r}/a7/b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7"),
            &pseudo_random(2048, 3),
            0o644,
        );
        self.text(&format!("{d}/seafile-data/library-template/x"), "library template file\n");

        // seahub-data/
        self.file(&format!("{d}/seahub-data/avatars/a.png"), &fake_png(7), 0o644);
        self.file(&format!("{d}/seahub-data/custom/logo.png"), &fake_png(8), 0o644);

        // storage-data/
        let b = BASE_UUID;
        self.text(
            &format!("{d}/storage-data/bases/{b}/content.json"),
            r#"{"version":42,"format_version":8,"statistics":[],"links":[],"tables":[{"_id":"0000","name":"Table1","rows":[{"_id":"Ab1","0000":"hello"}],"columns":[{"key":"0000","name":"Name","type":"text"}]}]}"#,
        );
        self.file(&format!("{d}/storage-data/snapshots/{b}/{b}-1700000000.dtable"), &pseudo_random(3000, 4), 0o644);

        // Never archived.
        self.text(&format!("{d}/logs/dtable-web.log"), "2024-01-01 00:00:00 INFO fixture log line\n");
        self.text(&format!("{d}/ccnet/mykey.peer"), "fake ccnet key\n");
        self.file(&format!("{d}/db-data/{b}/data.sst"), &pseudo_random(2048, 5), 0o644);
        self.text(&format!("{d}/pids/dtable-web.pid"), "4242\n");
        self.file(&format!("{d}/scripts/custom-script.sh"), b"#!/bin/sh\necho fixture\n", 0o755);
    }
}

fn write_file(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Deterministic bytes that do not compress away (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn fake_png(seed: u64) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(pseudo_random(600, seed));
    v
}

fn license() -> String {
    format!("#SeaTable Enterprise license (test fixture)\nName = \"Fixture GmbH\"\nLicencetype = \"User\"\nLicenceKEY = \"1700000000\"\nProductID = \"SeaTable server\"\nExpiration = \"2099-12-31\"\nMaxUsers = \"10\"\nMode = \"subscription\"\nHash = \"{}\"\n", "ab".repeat(64))
}

const CADDY_YML: &str = r#"---
services:
  caddy:
    image: ${SEATABLE_CADDY_IMAGE:-lucaslorentz/caddy-docker-proxy:2.9-alpine}
    restart: unless-stopped
    container_name: caddy
    ports:
      - 80:80
      - 443:443
    environment:
      - CADDY_INGRESS_NETWORKS=frontend-net
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - "/opt/caddy:/data/caddy"
    networks:
      - frontend-net

networks:
  frontend-net:
    name: frontend-net
"#;

// ------------------------------------------------------------------ containers

/// Serializes the tests of one test binary that use the fixed container names; hold the guard for
/// the whole test. Works in plain and in `#[tokio::test]` tests alike (each of those has its own
/// runtime on its own thread, so waiting here blocks no other test), and the guard may be held
/// across `.await` (a tokio guard). A test that panics releases it (no poisoning).
pub fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    loop {
        if let Ok(guard) = LOCK.try_lock() {
            return guard;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What the stand-in's `seatable.sh backup-all` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupAll {
    /// Prints progress, writes `storage-data/big-data-backups/backup-all-<unix time>.txt`, exits 0.
    Succeeds,
    /// Prints an error to stderr, writes nothing, exits 1.
    Fails,
}

/// A running stand-in for SeaTable's app container; removed on drop (by id: a later stand-in of
/// the same name is left alone).
pub struct AppContainer {
    pub name: String,
    pub id: String,
    pub image: String,
    _script_dir: tempfile::TempDir,
}

/// The testenv's `podman run` options (runc; rlimits within this sandbox's hard limits).
pub const PODMAN_RUN_OPTS: [&str; 6] =
    ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"];

/// Runs `podman args...` and returns its output (panics when podman cannot be started).
pub fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().unwrap_or_else(|e| panic!("podman {}: {e}", args.join(" ")))
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes container `name` if it exists and carries [`LABEL`]; panics when it exists without.
pub fn remove_test_container(name: &str) {
    if !podman(&["container", "exists", name]).status.success() {
        return;
    }
    let format = format!("{{{{index .Config.Labels \"{LABEL}\"}}}}");
    let label = podman_ok(&["inspect", "-f", &format, name]);
    assert_eq!(
        label.trim(),
        "1",
        "a container named `{name}` exists and was not made by the tests (no label {LABEL}=1): \
         refusing to remove it; remove or rename it yourself"
    );
    podman_ok(&["rm", "-f", "-t", "0", name]);
}

const SEATABLE_SH: &str = r#"#!/bin/sh
# Stand-in for SeaTable's /opt/seatable/scripts/seatable.sh (seatable-backup tests).
BEHAVIOUR=@BEHAVIOUR@
case "${1:-}" in
backup-all)
    if [ "$BEHAVIOUR" = fails ]; then
        echo "Backing up all bases ..."
        echo "Error: backup-all failed: dtable-db is not running" >&2
        exit 1
    fi
    echo "Backing up all bases ..."
    t=$(date +%s)
    dir=/shared/seatable/storage-data/big-data-backups
    mkdir -p "$dir"
    printf 'backup-all at %s\n' "$t" >"$dir/backup-all-$t.txt"
    echo "Backup of all bases done (1 base)."
    ;;
*)
    echo "Usage: seatable.sh { start | stop | restart | backup-all | restore-all }" >&2
    exit 2
    ;;
esac
"#;

impl AppContainer {
    /// Starts container `name` from `docker.io/seatable/seatable-enterprise:<version>` (the testenv
    /// image re-tagged), the fixture's data mounted at `/shared`, `seatable.sh` behaving as `behaviour`.
    pub fn start(name: &str, fixture: &Fixture, version: &str, behaviour: BackupAll) -> AppContainer {
        let _ = env(); // the testenv must be up (podman, the hostbin image)
        let image = format!("docker.io/seatable/seatable-enterprise:{version}");
        podman_ok(&["tag", HOSTBIN_IMAGE, &image]);
        remove_test_container(name);

        let script_dir = tempfile::Builder::new().prefix("seatable-sh-").tempdir().expect("script temp dir");
        let behaviour = match behaviour {
            BackupAll::Succeeds => "succeeds",
            BackupAll::Fails => "fails",
        };
        let script = script_dir.path().join("seatable.sh");
        write_file(&script, SEATABLE_SH.replace("@BEHAVIOUR@", behaviour).as_bytes(), 0o755);

        let shared = fixture.shared_dir();
        let label = format!("{LABEL}=1");
        let shared_mount = format!("{}:/shared", shared.display());
        let script_mount = format!("{}:/opt/seatable/scripts/seatable.sh:ro", script.display());
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(&PODMAN_RUN_OPTS);
        args.extend_from_slice(&[
            "--name",
            name,
            "--network",
            "none",
            "--label",
            &label,
            "-v",
            "/usr:/usr:ro",
            "-v",
            "/etc/passwd:/etc/passwd:ro",
            "-v",
            "/etc/group:/etc/group:ro",
            "-v",
            &shared_mount,
            "-v",
            &script_mount,
            &image,
            "/usr/bin/sleep",
            "infinity",
        ]);
        let id = podman_ok(&args).trim().to_string();
        AppContainer { name: name.to_string(), id, image, _script_dir: script_dir }
    }

    /// `podman exec <name> args...`.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        podman(&all)
    }
}

impl Drop for AppContainer {
    fn drop(&mut self) {
        let out = podman(&["rm", "-f", "-t", "0", &self.id]);
        if !out.status.success() && !std::thread::panicking() {
            panic!("podman rm -f {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

// ------------------------------------------------------------------- databases

/// Creates (after dropping) each of `names` in `container`, utf8mb4, with the [`FIXTURE_TABLES`]
/// of [`ROWS_PER_TABLE`] rows each; the third one also gets the [`LOG_TABLES`] when `with_log_tables`.
pub fn create_databases(container: &str, names: &[&str], with_log_tables: bool) {
    let mut sql = String::new();
    for (i, db) in names.iter().enumerate() {
        sql.push_str(&format!(
            "DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; \
             CREATE TABLE `{db}`.fixture_users (id INT PRIMARY KEY, email VARCHAR(255) NOT NULL, name VARCHAR(255)) ENGINE=InnoDB; \
             INSERT INTO `{db}`.fixture_users VALUES (1, 'a@example.com', 'Anna'), (2, 'b@example.com', 'Bj\u{f6}rn \u{1f600}'), (3, 'c@example.com', NULL); \
             CREATE TABLE `{db}`.fixture_items (id INT AUTO_INCREMENT PRIMARY KEY, owner INT, data BLOB, created DATETIME) ENGINE=InnoDB; \
             INSERT INTO `{db}`.fixture_items (owner, data, created) VALUES (1, X'00ff10', '2024-01-01 10:00:00'), (2, 'text', '2024-02-02 11:00:00'), (1, NULL, '2024-03-03 12:00:00');\n"
        ));
        if with_log_tables && i == 2 {
            sql.push_str(&format!(
                "CREATE TABLE `{db}`.operation_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, dtable_uuid CHAR(32) NOT NULL, op_id BIGINT NOT NULL, op_time BIGINT NOT NULL, operation LONGTEXT NOT NULL, author VARCHAR(255)) ENGINE=InnoDB; \
                 INSERT INTO `{db}`.operation_log (dtable_uuid, op_id, op_time, operation, author) VALUES ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 1, 1700000000000, '{{\"op_type\":\"insert_row\"}}', 'a@example.com'), ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 2, 1700000001000, '{{\"op_type\":\"modify_row\"}}', 'b@example.com'), ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 3, 1700000002000, '{{\"op_type\":\"delete_row\"}}', 'a@example.com'); \
                 CREATE TABLE `{db}`.delete_operation_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, dtable_uuid CHAR(32) NOT NULL, op_id BIGINT NOT NULL, op_time BIGINT NOT NULL, operation LONGTEXT NOT NULL, author VARCHAR(255)) ENGINE=InnoDB; \
                 INSERT INTO `{db}`.delete_operation_log (dtable_uuid, op_id, op_time, operation, author) VALUES ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 1, 1690000000000, '{{}}', 'a@example.com'), ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 2, 1690000001000, '{{}}', 'a@example.com'), ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 3, 1690000002000, '{{}}', 'b@example.com'); \
                 CREATE TABLE `{db}`.session_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(255) NOT NULL, session_key VARCHAR(40) NOT NULL, op_time DATETIME NOT NULL) ENGINE=InnoDB; \
                 INSERT INTO `{db}`.session_log (username, session_key, op_time) VALUES ('a@example.com', 's1', '2024-01-01 09:00:00'), ('b@example.com', 's2', '2024-01-01 09:05:00'), ('a@example.com', 's3', '2024-01-02 09:00:00'); \
                 CREATE TABLE `{db}`.activities (id BIGINT AUTO_INCREMENT PRIMARY KEY, dtable_uuid CHAR(32) NOT NULL, row_id CHAR(36) NOT NULL, op_user VARCHAR(255) NOT NULL, op_type VARCHAR(36) NOT NULL, op_time DATETIME NOT NULL, detail TEXT) ENGINE=InnoDB; \
                 INSERT INTO `{db}`.activities (dtable_uuid, row_id, op_user, op_type, op_time, detail) VALUES ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 'Ab1', 'a@example.com', 'insert_row', '2024-01-01 10:00:00', '{{}}'), ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 'Ab1', 'b@example.com', 'modify_row', '2024-01-01 10:01:00', '{{}}'), ('0f8a6b3c2d4e4f1a9b7c5e6d8a9b0c1d', 'Ab2', 'a@example.com', 'insert_row', '2024-01-01 10:02:00', NULL);\n"
            ));
        }
    }
    env().sql_at(container, "", &sql);
}

/// Drops each of `names` in `container` (if it exists).
pub fn drop_databases(container: &str, names: &[&str]) {
    let sql: String = names.iter().map(|db| format!("DROP DATABASE IF EXISTS `{db}`;\n")).collect();
    env().sql_at(container, "", &sql);
}

/// The names of the base tables of `db` in `container`, sorted.
pub fn tables(container: &str, db: &str) -> Vec<String> {
    env()
        .sql_at(
            container,
            "",
            &format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='{db}' AND TABLE_TYPE='BASE TABLE' ORDER BY 1"
            ),
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A per-test set of three database names (`<tag>_{ccnet,seafile,dtable}_<pid>_<n>`).
pub fn unique_db_names(tag: &str) -> [String; 3] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    ["ccnet", "seafile", "dtable"].map(|k| format!("{tag}_{k}_{pid}_{n}"))
}
