//! The validated settings the program runs on, and the enums a key, a flag and an environment
//! variable share (serde reads them from the file, clap from flags and the environment, with
//! the same spellings).

use std::fmt;
use std::path::PathBuf;

use clap::ValueEnum;
use serde::Deserialize;

#[cfg(doc)]
use crate::seatable::defaults::{ALWAYS_EXCLUDED, DEFAULT_DATA_DIRS, DEFAULT_DB_CONTAINERS, LOG_TABLES};

use super::Secret;

pub(super) const MIB: u64 = 1024 * 1024;
/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;

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
    /// Which of the settings that the SeaTable install may fill in were given by the user.
    pub configured: Configured,
}

/// What the user configured (flag, environment or file) among the settings that install
/// detection (`Install::apply`) would otherwise fill in: provenance, not a setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Configured {
    /// `database.mode`, `host` or `port`: the install's `.env` does not switch the DB access.
    pub db_access: bool,
    /// `database.databases`: the `.env` names and `scheduler` are not added.
    pub databases: bool,
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

/// Which SeaTable layout to assume (`seatable.layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum LayoutChoice {
    /// Look at the files (the default).
    Auto,
    /// SeaTable 4.3 and later.
    New,
    /// SeaTable up to 4.2.
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
    pub object_lock_mode: LockMode,
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
            object_lock_mode: LockMode::Governance,
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

/// `storage.request_checksums`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum RequestChecksums {
    /// The SDK's default: CRC32 checksums with every part.
    WhenSupported,
    /// Only where the API requires them, for stores that reject the SDK's default checksums.
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
    pub databases: Vec<String>,
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

/// `compression.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
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

/// `database.mode`: where the dump runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum DbMode {
    /// Inside the DB container, through the Docker Engine API.
    Container,
    /// The dump binary on this host, against a TCP server.
    Host,
}

/// `retention.object_lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ObjectLock {
    /// Lock a new set's objects when the bucket has Object Lock enabled.
    Auto,
    /// Never lock.
    Off,
}

/// `retention.object_lock_mode`: the Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` can still delete.
    Governance,
    /// Nobody can delete before the date, not even the account's root user.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}
