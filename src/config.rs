//! Configuration: the TOML file, environment variables and flags, merged into one validated
//! [`Config`]. Precedence: flag > environment > file > default. The runtime never sees clap.
//!
//! Flags and environment variables arrive together in [`SettingArgs`] (clap reads both);
//! secrets have no flag and are read from the environment here.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::SettingArgs;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/seatable-backup/config.toml";
pub const DEFAULT_DESTINATION: &str = "file:///var/backups/seatable-backup";
/// Data directories of the two SeaTable layouts, newest first.
pub const DEFAULT_DATA_DIRS: [&str; 2] = ["/opt/seatable-server/seatable", "/opt/seatable/seatable-data/seatable"];
/// Container names of the two layouts, newest first.
pub const DEFAULT_DB_CONTAINERS: [&str; 2] = ["mariadb", "seatable-mysql"];
pub const DEFAULT_DATABASES: [&str; 3] = ["ccnet_db", "seafile_db", "dtable_db"];
/// What restore creates at the top of a data directory that is a mount point (its staging
/// directory, the previous content): a backup leaves such entries out.
pub const TOOL_ENTRY_PREFIX: &str = ".seatable-backup-";
/// Parts of the data directory that are never archived (SEATABLE.md).
pub const ALWAYS_EXCLUDED: [&str; 5] = ["ccnet", "logs", "db-data", "pids", "scripts"];

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file `{path}` is malformed: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file `{path}` holds {what} but is readable by group or others (mode {mode:o}); run `chmod 600 {path}` or move the secret to the environment")]
    InsecureSecrets { path: PathBuf, what: String, mode: u32 },
    #[error("invalid `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl crate::error::Classify for ConfigError {
    fn class(&self) -> crate::error::Class {
        crate::error::Class::Usage
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

// ---------------------------------------------------------------------------------------------
// The file, as written by the user.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    host: Option<String>,
    lock_file: Option<PathBuf>,
    #[serde(default)]
    monitoring: FileMonitoring,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    database: FileDatabase,
    #[serde(default)]
    data: FileData,
    #[serde(default)]
    compression: FileCompression,
    #[serde(default)]
    seatable: FileSeatable,
    #[serde(default)]
    retention: FileRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSeatable {
    root: Option<PathBuf>,
    layout: Option<String>,
    compose_dir: Option<PathBuf>,
    app_container: Option<String>,
    big_data_backup: Option<bool>,
    config_component: Option<bool>,
    mirror_object_storage: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMonitoring {
    ping_url: Option<String>,
    ping_start_url: Option<String>,
    ping_success_url: Option<String>,
    ping_failure_url: Option<String>,
    webhook_url: Option<String>,
    textfile: Option<PathBuf>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetention {
    daily: Option<u32>,
    weekly: Option<u32>,
    monthly: Option<u32>,
    keep_last: Option<u32>,
    object_lock: Option<String>,
    object_lock_mode: Option<String>,
    object_lock_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    destination: Option<String>,
    prefix: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    path_style: Option<bool>,
    request_checksums: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    part_size: Option<SizeValue>,
    fixed_part_size: Option<bool>,
    parts_in_flight: Option<usize>,
    part_retries: Option<u32>,
    max_parts: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    enabled: Option<bool>,
    mode: Option<String>,
    container: Option<String>,
    databases: Option<Vec<String>>,
    user: Option<String>,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    dump_binary: Option<String>,
    exclude_tables: Option<Vec<String>>,
    exclude_log_tables: Option<bool>,
    log_tables_separately: Option<bool>,
    docker_host: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileData {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
    exclude: Option<Vec<String>>,
    follow_symlinks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCompression {
    algorithm: Option<String>,
    level: Option<i32>,
    threads: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

// ---------------------------------------------------------------------------------------------
// The validated configuration the program runs on.

#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
    /// This server's name in object keys.
    pub host: String,
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    pub data: DataConfig,
    pub compression: CompressionConfig,
    pub seatable: SeatableConfig,
    pub retention: RetentionConfig,
    /// Held (flock) while a backup, restore, prune or `retention apply` runs.
    pub lock_file: PathBuf,
    pub monitoring: MonitoringConfig,
}

/// Where a run reports to. URLs may carry tokens: they are never logged whole and have no flag.
#[derive(Debug, Clone, Default)]
pub struct MonitoringConfig {
    /// Pinged (GET) when a backup starts.
    pub ping_start: Option<Secret>,
    /// Pinged (GET) when a backup succeeded.
    pub ping_success: Option<Secret>,
    /// Pinged (POST, the cause and the last log lines as body) when a backup failed.
    pub ping_failure: Option<Secret>,
    /// Receives the run's summary as JSON (POST), success or failure.
    pub webhook: Option<Secret>,
    /// A Prometheus node-exporter textfile, rewritten atomically after every backup.
    pub textfile: Option<PathBuf>,
    pub timeout: std::time::Duration,
}

/// The lock file when none is configured: `/run/lock` where it can be written (root), else the
/// temporary directory, per user.
pub fn default_lock_file() -> PathBuf {
    let run_lock = Path::new("/run/lock");
    if dir_writable(run_lock) {
        run_lock.join("seatable-backup.lock")
    } else {
        // SAFETY: geteuid has no preconditions and cannot fail.
        std::env::temp_dir().join(format!("seatable-backup-{}.lock", unsafe { libc::geteuid() }))
    }
}

/// Which SeaTable layout to assume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutChoice {
    /// Look at the files (the default).
    Auto,
    New,
    Old,
    /// Neither: only what is configured.
    Custom,
}

#[derive(Debug, Clone)]
pub struct SeatableConfig {
    /// SeaTable's default paths are taken under this directory (`/`).
    pub root: PathBuf,
    pub layout: LayoutChoice,
    /// `None`: the layout's (`/opt/seatable-compose`, old `/opt/seatable`).
    pub compose_dir: Option<PathBuf>,
    /// `None`: the layout's (`seatable-server`, old `seatable`).
    pub app_container: Option<String>,
    /// Run `seatable.sh backup-all` before archiving the data directory.
    pub big_data_backup: bool,
    /// Archive the compose directory as the `config` component.
    pub config_component: bool,
    /// Copy the buckets SeaTable keeps its objects in into the set (incrementally).
    pub mirror_object_storage: bool,
}

/// How many days the sets of each class are kept, and how they are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    /// `prune` keeps at least this many complete sets of each host, however old (0: only the
    /// newest, which is always kept).
    pub keep_last: u32,
    /// Put an Object Lock retention on every object of a new set when the bucket has Object
    /// Lock enabled (`auto`), or never (`off`).
    pub object_lock: bool,
    pub object_lock_mode: crate::store::LockMode,
    /// Days a set is locked; `None`: its class's keep days.
    pub object_lock_days: Option<u32>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            daily: 7,
            weekly: 35,
            monthly: 365,
            keep_last: 0,
            object_lock: true,
            object_lock_mode: crate::store::LockMode::Governance,
            object_lock_days: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    S3 { bucket: String },
    Local { root: PathBuf },
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::S3 { bucket } => write!(f, "s3://{bucket}"),
            Destination::Local { root } => write!(f, "file://{}", root.display()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestChecksums {
    WhenSupported,
    WhenRequired,
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub request_checksums: RequestChecksums,
    /// A key pair from the config file (the file is then mode 0600); else the AWS default chain.
    pub credentials: Option<(String, Secret)>,
}

/// How objects are cut into parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// First part size (or every part's, when `fixed`).
    pub part_size: u64,
    pub fixed: bool,
    /// Most parts the store accepts in one upload.
    pub max_parts: u32,
    /// Parts in flight at once (the memory budget is `part_size * parts_in_flight`).
    pub parts_in_flight: usize,
    pub part_retries: u32,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy { part_size: 8 * MIB, fixed: false, max_parts: 10_000, parts_in_flight: 4, part_retries: 3 }
    }
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub destination: Destination,
    /// Without leading or trailing slash; may be empty.
    pub prefix: String,
    pub s3: S3Settings,
    pub upload: UploadPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbAccess {
    /// Run the dump inside a container through the Docker Engine API.
    Container {
        /// `None`: the first that exists of [`DEFAULT_DB_CONTAINERS`].
        container: Option<String>,
        docker_host: Option<String>,
    },
    /// Run the dump binary on this host against a TCP server.
    Host { host: String, port: u16 },
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub enabled: bool,
    pub access: DbAccess,
    /// `database.mode` (or a host/port) was configured: the install's `.env` does not override it.
    pub access_configured: bool,
    pub databases: Vec<String>,
    /// `database.databases` was configured: the `.env` names and `scheduler` are not added.
    pub databases_configured: bool,
    pub user: String,
    /// `None` in container mode: the container's own root password, read inside it.
    pub password: Option<Secret>,
    /// `None`: probe, `mariadb-dump` first.
    pub dump_binary: Option<String>,
    /// `db.table` names.
    pub exclude_tables: Vec<String>,
    /// The Docker Engine API address (also used for the app container in host mode).
    pub docker_host: Option<String>,
    /// Leave SeaTable's log tables ([`LOG_TABLES`]) out of the dtable database's dump.
    pub exclude_log_tables: bool,
    /// Dump the log tables into an object of their own instead (`db/<db>.log-tables.sql.*`).
    pub log_tables_separately: bool,
}

/// SeaTable's log tables in dtable_db, which grow large (SEATABLE.md).
pub const LOG_TABLES: [&str; 4] = ["operation_log", "delete_operation_log", "session_log", "activities"];

#[derive(Debug, Clone)]
pub struct DataConfig {
    pub enabled: bool,
    /// `None`: the first that exists of [`DEFAULT_DATA_DIRS`].
    pub dir: Option<PathBuf>,
    /// Relative paths, besides [`ALWAYS_EXCLUDED`].
    pub exclude: Vec<PathBuf>,
    /// Symlinks (relative paths) archived as what they point to, under their own name.
    pub follow_symlinks: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Zstd,
    Gzip,
}

impl Algorithm {
    pub fn extension(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zst",
            Algorithm::Gzip => "gz",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Gzip => "gzip",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    pub algorithm: Algorithm,
    pub level: i32,
    /// zstd worker threads for the data archives.
    pub threads: u32,
    /// zstd worker threads for database dumps (`threads` when that is set explicitly).
    pub dump_threads: u32,
}

impl CompressionConfig {
    /// The settings for a database dump.
    pub fn for_dumps(&self) -> CompressionConfig {
        CompressionConfig { threads: self.dump_threads, ..*self }
    }
}

/// Parses `8MiB`, `16 MB`, `5242880`, `1G` into bytes (binary units; `MB` is taken as MiB too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size like `8MiB`"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        other => return Err(format!("unknown unit `{other}` in `{s}` (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

fn parse_destination(s: &str) -> Result<Destination, ConfigError> {
    if let Some(rest) = s.strip_prefix("s3://") {
        let bucket = rest.trim_end_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return Err(invalid(
                "storage.destination",
                format!("`{s}`: give the bucket alone, as `s3://BUCKET`; put the key prefix in `storage.prefix`"),
            ));
        }
        Ok(Destination::S3 { bucket: bucket.to_string() })
    } else if let Some(rest) = s.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(invalid(
                "storage.destination",
                format!("`{s}`: a file destination needs an absolute path, as `file:///PATH`"),
            ));
        }
        Ok(Destination::Local { root: PathBuf::from(rest) })
    } else {
        Err(invalid("storage.destination", format!("`{s}`: expected `s3://BUCKET` or `file:///PATH`")))
    }
}

/// A name safe as one path segment of a key: letters, digits, `.`, `_`, `-`.
pub fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'-')
}

/// This machine's host name, reduced to a key-safe segment.
pub fn system_hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c } else { '-' })
        .collect();
    if valid_segment(&name) {
        name
    } else {
        "seatable".to_string()
    }
}

/// Settings that may hold a secret, so they have no flag: read from the environment only.
#[derive(Debug, Default)]
struct EnvSecrets {
    db_password: Option<String>,
    ping_url: Option<String>,
    ping_start_url: Option<String>,
    ping_success_url: Option<String>,
    ping_failure_url: Option<String>,
    webhook_url: Option<String>,
}

impl EnvSecrets {
    fn read() -> EnvSecrets {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        EnvSecrets {
            db_password: var("SEATABLE_BACKUP_DB_PASSWORD"),
            ping_url: var("SEATABLE_BACKUP_PING_URL"),
            ping_start_url: var("SEATABLE_BACKUP_PING_START_URL"),
            ping_success_url: var("SEATABLE_BACKUP_PING_SUCCESS_URL"),
            ping_failure_url: var("SEATABLE_BACKUP_PING_FAILURE_URL"),
            webhook_url: var("SEATABLE_BACKUP_WEBHOOK_URL"),
        }
    }
}

/// `dir` exists and this process may create files in it.
pub fn dir_writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: access() only reads its NUL-terminated argument.
    dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0
}

impl Config {
    /// Loads the file (if any), then lays the environment and flags over it.
    ///
    /// `explicit_path`: from `--config` / `SEATABLE_BACKUP_CONFIG`; it must exist. Without it the
    /// default path is read when present.
    pub fn load(explicit_path: Option<&Path>, args: &SettingArgs) -> Result<Config, ConfigError> {
        let (file, path) = match explicit_path {
            Some(p) => (read_file(p)?, Some(p.to_path_buf())),
            None => {
                let p = Path::new(DEFAULT_CONFIG_PATH);
                if p.exists() {
                    (read_file(p)?, Some(p.to_path_buf()))
                } else {
                    (FileConfig::default(), None)
                }
            }
        };
        Config::merge(file, path, args, &EnvSecrets::read())
    }

    /// Parses a config file's text alone (no environment, no flags); for tests and `plan`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = parse_file(text, path)?;
        Config::merge(file, Some(path.to_path_buf()), &SettingArgs::default(), &EnvSecrets::default())
    }

    fn merge(
        file: FileConfig,
        path: Option<PathBuf>,
        a: &SettingArgs,
        env: &EnvSecrets,
    ) -> Result<Config, ConfigError> {
        let host = a.host_name.clone().or(file.host).unwrap_or_else(system_hostname);
        if !valid_segment(&host) {
            return Err(invalid("host", format!("`{host}`: use letters, digits, `.`, `_` and `-` only")));
        }

        // Storage.
        let fs = file.storage;
        let destination =
            parse_destination(a.destination.as_deref().or(fs.destination.as_deref()).unwrap_or(DEFAULT_DESTINATION))?;
        let prefix = a.prefix.clone().or(fs.prefix).unwrap_or_else(|| "seatable".to_string());
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() && !prefix.split('/').all(valid_segment) {
            return Err(invalid(
                "storage.prefix",
                format!("`{prefix}`: segments may hold letters, digits, `.`, `_`, `-`"),
            ));
        }
        let request_checksums = match a.s3_request_checksums.as_deref().or(fs.request_checksums.as_deref()) {
            None | Some("when_supported") => RequestChecksums::WhenSupported,
            Some("when_required") => RequestChecksums::WhenRequired,
            Some(other) => {
                return Err(invalid(
                    "storage.request_checksums",
                    format!("`{other}`: expected `when_supported` or `when_required`"),
                ))
            }
        };
        let credentials = match (fs.access_key_id, fs.secret_access_key) {
            (None, None) => None,
            (Some(id), Some(secret)) => Some((id, Secret::new(secret))),
            _ => return Err(invalid(
                "storage.access_key_id",
                "give both `access_key_id` and `secret_access_key`, or neither (then the AWS default chain is used)",
            )),
        };
        let mut upload = UploadPolicy::default();
        if let Some(s) = a.part_size.as_deref() {
            upload.part_size = parse_size(s).map_err(|m| invalid("storage.part_size", m))?;
        } else if let Some(v) = fs.part_size {
            upload.part_size = match v {
                SizeValue::Bytes(n) => n,
                SizeValue::Text(s) => parse_size(&s).map_err(|m| invalid("storage.part_size", m))?,
            };
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&upload.part_size) {
            return Err(invalid("storage.part_size", "must be between 5MiB and 5GiB (S3's part limits)"));
        }
        upload.fixed = a.fixed_part_size.or(fs.fixed_part_size).unwrap_or(false);
        upload.max_parts = a.max_parts.or(fs.max_parts).unwrap_or(10_000);
        if !(10..=10_000).contains(&upload.max_parts) {
            return Err(invalid("storage.max_parts", "must be between 10 and 10000"));
        }
        upload.parts_in_flight = a.parts_in_flight.or(fs.parts_in_flight).unwrap_or(4);
        if !(1..=64).contains(&upload.parts_in_flight) {
            return Err(invalid("storage.parts_in_flight", "must be between 1 and 64"));
        }
        upload.part_retries = a.part_retries.or(fs.part_retries).unwrap_or(3);
        if upload.part_retries > 20 {
            return Err(invalid("storage.part_retries", "must be at most 20"));
        }
        let s3 = S3Settings {
            endpoint: a.s3_endpoint.clone().or(fs.endpoint),
            region: a.s3_region.clone().or(fs.region),
            path_style: a.s3_path_style.or(fs.path_style).unwrap_or(false),
            request_checksums,
            credentials,
        };
        if let Some(ep) = &s3.endpoint {
            if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                return Err(invalid("storage.endpoint", format!("`{ep}`: expected an `http://` or `https://` URL")));
            }
        }

        // Database.
        let fd = file.database;
        let access_configured = a.db_mode.is_some()
            || fd.mode.is_some()
            || a.db_host.is_some()
            || fd.host.is_some()
            || a.db_port.is_some()
            || fd.port.is_some();
        let mode = a.db_mode.clone().or(fd.mode).unwrap_or_else(|| "container".to_string());
        let docker_host = a.docker_host.clone().or(fd.docker_host);
        let access = match mode.as_str() {
            "container" => DbAccess::Container {
                container: a.db_container.clone().or(fd.container),
                docker_host: docker_host.clone(),
            },
            "host" => DbAccess::Host {
                host: a.db_host.clone().or(fd.host).unwrap_or_else(|| "127.0.0.1".to_string()),
                port: a.db_port.or(fd.port).unwrap_or(3306),
            },
            other => return Err(invalid("database.mode", format!("`{other}`: expected `container` or `host`"))),
        };
        let databases_configured = a.databases.is_some() || fd.databases.is_some();
        let databases = a
            .databases
            .clone()
            .or(fd.databases)
            .unwrap_or_else(|| DEFAULT_DATABASES.iter().map(|s| s.to_string()).collect());
        for db in &databases {
            if !valid_identifier(db) {
                return Err(invalid("database.databases", format!("`{db}` is not a plain database name")));
            }
        }
        let exclude_tables = a.db_exclude_tables.clone().or(fd.exclude_tables).unwrap_or_default();
        for t in &exclude_tables {
            match t.split_once('.') {
                Some((d, tb)) if valid_identifier(d) && valid_identifier(tb) => {}
                _ => return Err(invalid("database.exclude_tables", format!("`{t}`: expected `database.table`"))),
            }
        }
        let dump_binary = a.db_dump_binary.clone().or(fd.dump_binary);
        if let Some(b) = &dump_binary {
            if b != "mariadb-dump" && b != "mysqldump" {
                return Err(invalid("database.dump_binary", format!("`{b}`: expected `mariadb-dump` or `mysqldump`")));
            }
        }
        let file_password = fd.password.clone();
        let password = env.db_password.clone().or(fd.password).map(Secret::new);
        let user = a.db_user.clone().or(fd.user).unwrap_or_else(|| "root".to_string());
        let database = DatabaseConfig {
            enabled: a.db_enabled.or(fd.enabled).unwrap_or(true),
            access,
            access_configured,
            databases,
            databases_configured,
            user,
            password,
            dump_binary,
            exclude_tables,
            docker_host,
            exclude_log_tables: a.db_exclude_log_tables.or(fd.exclude_log_tables).unwrap_or(false),
            log_tables_separately: a.db_log_tables_separately.or(fd.log_tables_separately).unwrap_or(false),
        };

        // Data.
        let fdata = file.data;
        let exclude: Vec<PathBuf> =
            a.data_exclude.clone().or(fdata.exclude).unwrap_or_default().into_iter().map(PathBuf::from).collect();
        for e in &exclude {
            if e.is_absolute() || e.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                return Err(invalid(
                    "data.exclude",
                    format!("`{}`: give a path relative to the data directory, without `..`", e.display()),
                ));
            }
        }
        let follow_symlinks: Vec<PathBuf> = a
            .data_follow_symlinks
            .clone()
            .or(fdata.follow_symlinks)
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect();
        for f in &follow_symlinks {
            if f.is_absolute() || f.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                return Err(invalid(
                    "data.follow_symlinks",
                    format!("`{}`: give the symlink's path relative to the data directory, without `..`", f.display()),
                ));
            }
        }
        let data = DataConfig {
            enabled: a.data_enabled.or(fdata.enabled).unwrap_or(true),
            dir: a.data_dir.clone().or(fdata.dir),
            exclude,
            follow_symlinks,
        };

        // Compression.
        let fc = file.compression;
        let algorithm = match a.compression.as_deref().or(fc.algorithm.as_deref()).unwrap_or("zstd") {
            "zstd" => Algorithm::Zstd,
            "gzip" => Algorithm::Gzip,
            other => return Err(invalid("compression.algorithm", format!("`{other}`: expected `zstd` or `gzip`"))),
        };
        let level = a.compression_level.or(fc.level).unwrap_or(match algorithm {
            Algorithm::Zstd => 3,
            Algorithm::Gzip => 6,
        });
        let range = match algorithm {
            Algorithm::Zstd => 1..=19,
            Algorithm::Gzip => 1..=9,
        };
        if !range.contains(&level) {
            return Err(invalid(
                "compression.level",
                format!("{level} is outside {}..={} for {}", range.start(), range.end(), algorithm.name()),
            ));
        }
        let explicit_threads = a.compression_threads.or(fc.threads);
        let threads = explicit_threads.unwrap_or(0);
        // By default a dump gets one zstd worker: zstd's single-threaded streaming mode
        // compresses almost everything through its slower external-dictionary path (its input
        // ring wraps), which costs a sixth more CPU while the database and the container
        // runtime need both cores; the worker mode keeps each job contiguous. It holds about
        // 30 MiB more, which the data archive (with its parts and read-ahead) is not given.
        let dump_threads = explicit_threads.unwrap_or(if algorithm == Algorithm::Zstd { 1 } else { 0 });
        if threads > 64 {
            return Err(invalid("compression.threads", "must be at most 64"));
        }
        if threads > 0 && algorithm == Algorithm::Gzip {
            return Err(invalid("compression.threads", "worker threads apply to zstd only"));
        }

        // SeaTable.
        let fst = file.seatable;
        let root = a.seatable_root.clone().or(fst.root).unwrap_or_else(|| PathBuf::from("/"));
        if !root.is_absolute() {
            return Err(invalid("seatable.root", format!("`{}`: give an absolute path", root.display())));
        }
        let layout = match a.seatable_layout.as_deref().or(fst.layout.as_deref()).unwrap_or("auto") {
            "auto" => LayoutChoice::Auto,
            "new" => LayoutChoice::New,
            "old" => LayoutChoice::Old,
            "custom" => LayoutChoice::Custom,
            other => {
                return Err(invalid(
                    "seatable.layout",
                    format!("`{other}`: expected `auto`, `new` (4.3+), `old` (up to 4.2) or `custom`"),
                ))
            }
        };
        let app_container = a.app_container.clone().or(fst.app_container);
        if let Some(c) = &app_container {
            if !valid_segment(c) {
                return Err(invalid("seatable.app_container", format!("`{c}` is not a container name")));
            }
        }
        let seatable = SeatableConfig {
            root,
            layout,
            compose_dir: a.compose_dir.clone().or(fst.compose_dir),
            app_container,
            big_data_backup: a.big_data_backup.or(fst.big_data_backup).unwrap_or(true),
            config_component: a.config_component.or(fst.config_component).unwrap_or(true),
            mirror_object_storage: a.mirror_object_storage.or(fst.mirror_object_storage).unwrap_or(false),
        };
        let fr = file.retention;
        let d = RetentionConfig::default();
        let object_lock = match a.object_lock.as_deref().or(fr.object_lock.as_deref()).unwrap_or("auto") {
            "auto" => true,
            "off" => false,
            other => {
                return Err(invalid(
                    "retention.object_lock",
                    format!("`{other}`: expected `auto` (lock when the bucket has Object Lock) or `off`"),
                ))
            }
        };
        let object_lock_mode =
            match a.object_lock_mode.as_deref().or(fr.object_lock_mode.as_deref()).unwrap_or("governance") {
                "governance" => crate::store::LockMode::Governance,
                "compliance" => crate::store::LockMode::Compliance,
                other => {
                    return Err(invalid(
                        "retention.object_lock_mode",
                        format!("`{other}`: expected `governance` or `compliance`"),
                    ))
                }
            };
        let retention = RetentionConfig {
            daily: a.keep_daily.or(fr.daily).unwrap_or(d.daily),
            weekly: a.keep_weekly.or(fr.weekly).unwrap_or(d.weekly),
            monthly: a.keep_monthly.or(fr.monthly).unwrap_or(d.monthly),
            keep_last: a.keep_last.or(fr.keep_last).unwrap_or(d.keep_last),
            object_lock,
            object_lock_mode,
            object_lock_days: a.object_lock_days.or(fr.object_lock_days),
        };
        if retention.keep_last > 10_000 {
            return Err(invalid("retention.keep_last", "must be at most 10000"));
        }
        if let Some(days) = retention.object_lock_days {
            if !(1..=36_500).contains(&days) {
                return Err(invalid("retention.object_lock_days", "must be between 1 and 36500 days"));
            }
        }
        for (k, v) in [
            ("retention.daily", retention.daily),
            ("retention.weekly", retention.weekly),
            ("retention.monthly", retention.monthly),
        ] {
            if !(1..=36_500).contains(&v) {
                return Err(invalid(k, "must be between 1 and 36500 days"));
            }
        }

        // Monitoring. URLs come from the file or the environment, never a flag (they may hold
        // tokens); a base `ping_url` works like healthchecks.io: `/start`, itself, `/fail`.
        let fm = file.monitoring;
        let check_url = |key: &str, v: Option<String>| -> Result<Option<Secret>, ConfigError> {
            match v {
                None => Ok(None),
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                    Ok(Some(Secret::new(u.trim_end_matches('/').to_string())))
                }
                Some(_) => Err(invalid(key, "expected an `http://` or `https://` URL")),
            }
        };
        let base = check_url("monitoring.ping_url", env.ping_url.clone().or(fm.ping_url))?;
        let derived = |suffix: &str| base.as_ref().map(|b| Secret::new(format!("{}{suffix}", b.expose())));
        let monitoring = MonitoringConfig {
            ping_start: check_url("monitoring.ping_start_url", env.ping_start_url.clone().or(fm.ping_start_url))?
                .or_else(|| derived("/start")),
            ping_success: check_url(
                "monitoring.ping_success_url",
                env.ping_success_url.clone().or(fm.ping_success_url),
            )?
            .or_else(|| derived("")),
            ping_failure: check_url(
                "monitoring.ping_failure_url",
                env.ping_failure_url.clone().or(fm.ping_failure_url),
            )?
            .or_else(|| derived("/fail")),
            webhook: check_url("monitoring.webhook_url", env.webhook_url.clone().or(fm.webhook_url))?,
            textfile: a.metrics_textfile.clone().or(fm.textfile),
            timeout: std::time::Duration::from_secs(a.ping_timeout.or(fm.timeout_secs).unwrap_or(10)),
        };
        if let Some(t) = &monitoring.textfile {
            if !t.is_absolute() || t.file_name().is_none() {
                return Err(invalid("monitoring.textfile", format!("`{}`: give an absolute file path", t.display())));
            }
        }
        if !(1..=300).contains(&monitoring.timeout.as_secs()) {
            return Err(invalid("monitoring.timeout_secs", "must be between 1 and 300 seconds"));
        }
        let lock_file = a.lock_file.clone().or(file.lock_file).unwrap_or_else(default_lock_file);
        if !lock_file.is_absolute() {
            return Err(invalid("lock_file", format!("`{}`: give an absolute path", lock_file.display())));
        }

        // Secrets in the file demand a private file.
        if let Some(p) = &path {
            let mut secrets = Vec::new();
            if s3.credentials.is_some() {
                secrets.push("an S3 key pair");
            }
            if file_password.is_some() {
                secrets.push("a database password");
            }
            if !secrets.is_empty() {
                let mode = std::fs::metadata(p)
                    .map_err(|e| ConfigError::Read { path: p.clone(), source: e })?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(ConfigError::InsecureSecrets {
                        path: p.clone(),
                        what: secrets.join(" and "),
                        mode: mode & 0o7777,
                    });
                }
            }
        }

        Ok(Config {
            file: path,
            host,
            storage: StorageConfig { destination, prefix, s3, upload },
            database,
            data,
            compression: CompressionConfig { algorithm, level, threads, dump_threads },
            seatable,
            retention,
            lock_file,
            monitoring,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?;
    parse_file(&text, path)
}

fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        // toml's message spans several lines (with a caret); keep it on one.
        message: e.to_string().split_whitespace().collect::<Vec<_>>().join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SettingArgs {
        SettingArgs::default()
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 * MIB);
        assert_eq!(parse_size("16 MB").unwrap(), 16 * MIB);
        assert_eq!(parse_size("5242880").unwrap(), 5 * MIB);
        assert_eq!(parse_size("1G").unwrap(), 1024 * MIB);
        assert!(parse_size("8 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn defaults_are_sane() {
        let c = Config::merge(FileConfig::default(), None, &args(), &EnvSecrets::default()).unwrap();
        assert_eq!(c.storage.destination, parse_destination(DEFAULT_DESTINATION).unwrap());
        assert_eq!(c.storage.prefix, "seatable");
        assert_eq!(c.database.databases, DEFAULT_DATABASES);
        assert_eq!(
            c.compression,
            CompressionConfig { algorithm: Algorithm::Zstd, level: 3, threads: 0, dump_threads: 1 }
        );
        assert!(valid_segment(&c.host));
    }

    #[test]
    fn flag_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let file = parse_file("[storage]\ndestination = \"s3://from-file\"\nprefix = \"a/b\"\n", &p).unwrap();
        let mut a = args();
        a.destination = Some("s3://from-flag".into());
        let c = Config::merge(file, None, &a, &EnvSecrets::default()).unwrap();
        assert_eq!(c.storage.destination, Destination::S3 { bucket: "from-flag".into() });
        assert_eq!(c.storage.prefix, "a/b");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let p = Path::new("/x/c.toml");
        let e = parse_file("[storage]\nbukket = \"x\"\n", p).unwrap_err().to_string();
        assert!(e.contains("bukket"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse_file("[storage\n", p).unwrap_err().to_string();
        assert!(e.contains("malformed"), "{e}");
    }

    #[test]
    fn secrets_need_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let text = "[storage]\ndestination = \"s3://b\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n";
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Config::from_toml(text, &p).unwrap_err().to_string();
        assert!(e.contains("readable by group or others"), "{e}");
        assert!(!e.contains("SK"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::from_toml(text, &p).unwrap();
        assert!(format!("{c:?}").contains("Secret(***)"));
        assert!(!format!("{c:?}").contains("\"SK\""));
    }

    #[test]
    fn bad_values_are_named() {
        let p = Path::new("/x/c.toml");
        for (text, key) in [
            ("[storage]\ndestination = \"ftp://x\"", "storage.destination"),
            ("[storage]\ndestination = \"s3://b/prefix\"", "storage.destination"),
            ("[storage]\npart_size = \"1MiB\"", "storage.part_size"),
            ("[storage]\nparts_in_flight = 0", "storage.parts_in_flight"),
            ("[database]\nmode = \"ssh\"", "database.mode"),
            ("[database]\ndatabases = [\"a; DROP\"]", "database.databases"),
            ("[database]\nexclude_tables = [\"nodot\"]", "database.exclude_tables"),
            ("[data]\nexclude = [\"../etc\"]", "data.exclude"),
            ("[data]\nfollow_symlinks = [\"/mnt/disk\"]", "data.follow_symlinks"),
            ("[data]\nfollow_symlinks = [\"a/../../b\"]", "data.follow_symlinks"),
            ("[compression]\nlevel = 40", "compression.level"),
            ("host = \"a/b\"", "host"),
            ("[retention]\nobject_lock = \"on\"", "retention.object_lock"),
            ("[retention]\nobject_lock_mode = \"strict\"", "retention.object_lock_mode"),
            ("[retention]\ndaily = 0", "retention.daily"),
            ("[monitoring]\nping_url = \"ftp://x\"", "monitoring.ping_url"),
            ("[monitoring]\ntextfile = \"rel.prom\"", "monitoring.textfile"),
            ("lock_file = \"rel.lock\"", "lock_file"),
            ("[seatable]\nlayout = \"newest\"", "seatable.layout"),
            ("[seatable]\nroot = \"rel\"", "seatable.root"),
        ] {
            let e = Config::from_toml(text, p).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}

#[cfg(test)]
mod monitoring {
    #[test]
    fn a_base_ping_url_gives_start_success_and_failure() {
        let p = std::path::Path::new("/x/c.toml");
        let text = "lock_file = \"/tmp/x.lock\"\n[monitoring]\nping_url = \"https://hc-ping.com/u/\"\nping_failure_url = \"http://m/fail\"\ntextfile = \"/var/lib/x.prom\"\ntimeout_secs = 3\n";
        let c = super::Config::from_toml(text, p).unwrap();
        let m = &c.monitoring;
        assert_eq!(m.ping_start.as_ref().unwrap().expose(), "https://hc-ping.com/u/start");
        assert_eq!(m.ping_success.as_ref().unwrap().expose(), "https://hc-ping.com/u");
        assert_eq!(m.ping_failure.as_ref().unwrap().expose(), "http://m/fail");
        assert_eq!(m.timeout.as_secs(), 3);
        assert_eq!(c.lock_file, std::path::PathBuf::from("/tmp/x.lock"));
        assert!(!format!("{c:?}").contains("hc-ping"), "a ping URL in Debug output");
    }
}

#[cfg(test)]
mod example {
    /// The shipped example must stay valid.
    #[test]
    fn example_config_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = super::Config::from_toml(&text, &path).unwrap();
        assert_eq!(c.storage.destination, super::Destination::S3 { bucket: "my-seatable-backups".into() });
    }
}
