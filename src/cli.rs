//! Command-line types (clap). Nothing outside `main.rs` sees these: [`SettingArgs::layer`]
//! turns the setting flags into a [`config::Layer`], which `config` lays over the file.
//!
//! Every configuration key can also be given as a flag or an environment variable; the flags
//! here carry `env = ...`, so clap already applies "flag over env". Enum values are the config's
//! own types (`config::Algorithm`, ...), spelled as in the file. Secrets (the DB password, S3
//! keys, monitoring URLs) have NO flag: a flag is visible in `ps`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Algorithm, DbMode, LayoutChoice, LockMode, ObjectLock, RequestChecksums};

#[derive(Debug, Parser)]
#[command(
    name = "seatable-backup",
    version,
    about = "Offsite backups of a self-hosted SeaTable server, streamed straight into S3-compatible storage",
    after_help = "Exit codes: 0 ok, 2 usage/config, 3 source (Docker, database, files), 4 storage, 5 integrity, 75 another run holds the lock, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(flatten)]
    pub settings: SettingArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up the databases, then the data directory, then write the set's manifest.
    Backup(BackupArgs),
    /// List the backup sets in the destination, complete or not.
    List(ListArgs),
    /// Show what would be backed up from where, and check every connection. Writes nothing.
    Plan(PlanArgs),
    /// Restore a backup set: stage everything, check it, then swap it in.
    Restore(RestoreArgs),
    /// Read a set back and check every object against its manifest.
    Verify(VerifyArgs),
    /// Server-side retention: the bucket's lifecycle rules (`show`, `apply`).
    Retention(RetentionArgs),
    /// Client-side retention, for stores without lifecycle rules: delete expired sets (the
    /// manifest first) and abort this tool's uploads left open for over a day.
    Prune(PruneArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `seatable-backup man > seatable-backup.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(subcommand)]
    pub action: RetentionAction,
}

#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// The bucket's lifecycle rules, which are this tool's, whether they match the config, and
    /// which sets expire next.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Install one expiration rule per class and one that aborts stale uploads, merged with
    /// the bucket's other rules (never dropped). Applying twice changes nothing.
    Apply {
        /// Show the rules before and after; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be deleted and kept, and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The set: its stamp (as `list` shows it) or `latest` (the newest complete set).
    #[arg(value_name = "SET", default_value = "latest")]
    pub set: String,
    /// The newest complete set made before this date (`2026-11-29`, RFC 3339, or a stamp).
    #[arg(long, value_name = "DATE")]
    pub before: Option<String>,
    /// Sets written by this host name (default: this host's `host_name`), e.g. for a migration.
    #[arg(long, value_name = "NAME")]
    pub from_host: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub set: SetArgs,
    /// Restore only this part: `db`, `data`, `config` or `objects` (mirrored S3 buckets).
    #[arg(long, value_enum)]
    pub only: Option<RestorePart>,
    /// Restore only this database of the set (repeatable).
    #[arg(long = "db", value_name = "NAME")]
    pub only_databases: Vec<String>,
    /// Restore a set without a manifest (nothing can be checked; a warning says so).
    #[arg(long)]
    pub allow_incomplete: bool,
    /// No longer needed (kept so that scripts passing it still run): every database, with its
    /// views, triggers, routines and events, is restored with the atomic swap.
    #[arg(long, value_enum, default_value = "swap", hide = true)]
    pub db_restore: DbModeArg,
    /// Remove the previous data directory after the swap instead of keeping it under a dated name.
    #[arg(long)]
    pub replace: bool,
    /// Restore into a non-empty directory that does not look like a SeaTable data directory.
    #[arg(long)]
    pub force: bool,
    /// Create device files and FIFOs found in the archive (refused otherwise).
    #[arg(long)]
    pub allow_devices: bool,
    /// No longer needed: symlinks are restored as they were archived, wherever they point.
    /// Still accepted (hidden) so that scripts passing it keep working; it only logs a warning.
    #[arg(long, hide = true)]
    pub allow_external_symlinks: bool,
    /// Run `seatable.sh restore-all` in the SeaTable app container afterwards.
    #[arg(long)]
    pub seatable_restore_all: bool,
    /// Show what would be downloaded, to where, and what would be replaced. Changes nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestorePart {
    Db,
    Data,
    Config,
    /// SeaTable's S3 buckets, mirrored into the set (`seatable.mirror_object_storage`).
    Objects,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DbModeArg {
    Swap,
    Recreate,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub set: SetArgs,
    /// Also load each dump into a throw-away database and count its tables and rows.
    #[arg(long)]
    pub deep: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Back up only this part: `db` (the databases), `data` (the data directory) or `config`
    /// (SeaTable's compose directory).
    #[arg(long, value_enum)]
    pub only: Option<Only>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    Db,
    Data,
    Config,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only the sets of this host name (default: all hosts).
    #[arg(long, value_name = "NAME")]
    pub of_host: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, for journald and log collectors.
    Json,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (default `/etc/seatable-backup/config.toml`; it is optional there).
    #[arg(long, short = 'c', global = true, env = "SEATABLE_BACKUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text", env = "SEATABLE_BACKUP_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info`, `debug`, `seatable_backup=debug`.
    #[arg(long, global = true, default_value = "info", env = "SEATABLE_BACKUP_LOG")]
    pub log_level: String,
}

/// One flag per configuration key (see `config.example.toml` for what each means).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Settings (each overrides the config file)")]
pub struct SettingArgs {
    /// `host`: this server's name in object keys (default: the hostname).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_HOST_NAME", value_name = "NAME")]
    pub host_name: Option<String>,

    /// `lock_file`: held while a backup, restore, prune or `retention apply` runs, so that two
    /// never overlap (default `/run/lock/seatable-backup.lock`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_LOCK_FILE", value_name = "FILE")]
    pub lock_file: Option<PathBuf>,
    /// `monitoring.textfile`: Prometheus node-exporter textfile written after every backup.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_METRICS_TEXTFILE", value_name = "FILE")]
    pub metrics_textfile: Option<PathBuf>,
    /// `monitoring.timeout_secs`: timeout of each ping and webhook call (the URLs themselves
    /// come from the config file or SEATABLE_BACKUP_PING_URL / _WEBHOOK_URL: no flag).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_PING_TIMEOUT", value_name = "SECS")]
    pub ping_timeout: Option<u64>,

    /// `storage.destination`: `s3://BUCKET` or `file:///PATH`.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DESTINATION", value_name = "URL")]
    pub destination: Option<String>,
    /// `storage.prefix`: key prefix inside the bucket.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_PREFIX", value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// `storage.endpoint`: S3 endpoint URL (default: AWS).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// `storage.region`: S3 region.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// `storage.path_style`: path-style addressing (MinIO, Garage, Ceph).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_S3_PATH_STYLE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub s3_path_style: Option<bool>,
    /// `storage.request_checksums`: which requests carry checksums (default `when_supported`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_S3_REQUEST_CHECKSUMS", value_name = "WHEN", value_enum)]
    pub s3_request_checksums: Option<RequestChecksums>,
    /// `storage.part_size`: first (or fixed) multipart part size, e.g. `8MiB`.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_PART_SIZE", value_name = "SIZE")]
    pub part_size: Option<String>,
    /// `storage.fixed_part_size`: never grow the part size (stores that need equal parts).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_FIXED_PART_SIZE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub fixed_part_size: Option<bool>,
    /// `storage.parts_in_flight`: parts uploaded concurrently.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_PARTS_IN_FLIGHT", value_name = "N")]
    pub parts_in_flight: Option<usize>,
    /// `storage.part_retries`: retries of one failed S3 request (a part, a ranged read, ...)
    /// before the operation fails.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_PART_RETRIES", value_name = "N")]
    pub part_retries: Option<u32>,
    /// `storage.max_parts`: part count limit of the store (S3: 10000).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_MAX_PARTS", value_name = "N")]
    pub max_parts: Option<u32>,

    /// `database.enabled`: back up the databases.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_ENABLED", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub db_enabled: Option<bool>,
    /// `database.mode`: where the dump runs (default `container`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_MODE", value_name = "MODE", value_enum)]
    pub db_mode: Option<DbMode>,
    /// `database.container`: DB container name (default: first of `mariadb`, `seatable-mysql`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_CONTAINER", value_name = "NAME")]
    pub db_container: Option<String>,
    /// `database.databases`: comma-separated database names.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DATABASES", value_name = "LIST", value_delimiter = ',')]
    pub databases: Option<Vec<String>>,
    /// `database.user`: database user.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_USER", value_name = "USER")]
    pub db_user: Option<String>,
    /// `database.host`: database host (host mode).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_HOST", value_name = "HOST")]
    pub db_host: Option<String>,
    /// `database.port`: database port (host mode).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_PORT", value_name = "PORT")]
    pub db_port: Option<u16>,
    /// `database.dump_binary`: `mariadb-dump` or `mysqldump` (default: probe, mariadb-dump first).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_DUMP_BINARY", value_name = "NAME")]
    pub db_dump_binary: Option<String>,
    /// `database.exclude_tables`: comma-separated `db.table` names left out of the dumps.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_EXCLUDE_TABLES", value_name = "LIST", value_delimiter = ',')]
    pub db_exclude_tables: Option<Vec<String>>,
    /// `database.docker_host`: Docker Engine API address (default: `DOCKER_HOST`, else the unix socket).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,

    /// `data.enabled`: back up the data directory.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DATA_ENABLED", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub data_enabled: Option<bool>,
    /// `data.dir`: the SeaTable data directory.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `data.exclude`: comma-separated paths (relative to the data dir) left out, besides the defaults.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DATA_EXCLUDE", value_name = "LIST", value_delimiter = ',')]
    pub data_exclude: Option<Vec<String>>,
    /// `data.follow_symlinks`: comma-separated symlinks (relative to the data dir) archived as
    /// what they point to (a directory recursively, or a file) instead of as links.
    #[arg(
        long,
        global = true,
        env = "SEATABLE_BACKUP_DATA_FOLLOW_SYMLINKS",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub data_follow_symlinks: Option<Vec<String>>,

    /// `database.exclude_log_tables`: leave SeaTable's log tables (`operation_log`,
    /// `delete_operation_log`, `session_log`, `activities`) out of the dtable_db dump.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_EXCLUDE_LOG_TABLES", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub db_exclude_log_tables: Option<bool>,
    /// `database.log_tables_separately`: dump SeaTable's log tables into an object of their own
    /// (`db/<dtable_db>.log-tables.sql.zst`) instead of the dtable_db dump.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_DB_LOG_TABLES_SEPARATELY", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub db_log_tables_separately: Option<bool>,

    /// `seatable.root`: the directory SeaTable's default paths are taken under (default `/`;
    /// e.g. a mounted snapshot of the server).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_SEATABLE_ROOT", value_name = "DIR")]
    pub seatable_root: Option<PathBuf>,
    /// `seatable.layout`: which SeaTable layout to assume (default `auto`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_SEATABLE_LAYOUT", value_name = "LAYOUT", value_enum)]
    pub seatable_layout: Option<LayoutChoice>,
    /// `seatable.compose_dir`: SeaTable's compose directory (default: `/opt/seatable-compose`,
    /// old layout `/opt/seatable`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_COMPOSE_DIR", value_name = "DIR")]
    pub compose_dir: Option<PathBuf>,
    /// `seatable.app_container`: SeaTable's app container (default: `seatable-server`, old
    /// layout `seatable`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_APP_CONTAINER", value_name = "NAME")]
    pub app_container: Option<String>,
    /// `seatable.big_data_backup`: run `seatable.sh backup-all` in the app container before
    /// archiving the data directory.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_BIG_DATA_BACKUP", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub big_data_backup: Option<bool>,
    /// `seatable.config_component`: archive the compose directory (`.env`, license, yml) as the
    /// set's `config` component.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_CONFIG_COMPONENT", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub config_component: Option<bool>,

    /// `seatable.mirror_object_storage`: copy the S3 buckets SeaTable keeps its bases and files
    /// in into the set (incrementally: unchanged objects are referenced from earlier sets).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_MIRROR_OBJECT_STORAGE", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub mirror_object_storage: Option<bool>,

    /// `retention.daily`: days a daily set is kept.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_KEEP_DAILY", value_name = "DAYS")]
    pub keep_daily: Option<u32>,
    /// `retention.weekly`: days a weekly set (the first of an ISO week) is kept.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_KEEP_WEEKLY", value_name = "DAYS")]
    pub keep_weekly: Option<u32>,
    /// `retention.monthly`: days a monthly set (the first of a month) is kept.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_KEEP_MONTHLY", value_name = "DAYS")]
    pub keep_monthly: Option<u32>,

    /// `retention.keep_last`: `prune` keeps at least this many complete sets of each host.
    #[arg(long, global = true, env = "SEATABLE_BACKUP_KEEP_LAST", value_name = "N")]
    pub keep_last: Option<u32>,
    /// `retention.object_lock`: whether a new set's objects get an Object Lock retention
    /// (default `auto`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_OBJECT_LOCK", value_name = "WHEN", value_enum)]
    pub object_lock: Option<ObjectLock>,
    /// `retention.object_lock_mode`: the Object Lock mode (default `governance`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_OBJECT_LOCK_MODE", value_name = "MODE", value_enum)]
    pub object_lock_mode: Option<LockMode>,
    /// `retention.object_lock_days`: days a new set is locked (default: its class's keep days).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_OBJECT_LOCK_DAYS", value_name = "DAYS")]
    pub object_lock_days: Option<u32>,

    /// `compression.algorithm` (default `zstd`).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_COMPRESSION", value_name = "ALGO", value_enum)]
    pub compression: Option<Algorithm>,
    /// `compression.level`: zstd 1-19 (default 3), gzip 1-9 (default 6).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_COMPRESSION_LEVEL", value_name = "N")]
    pub compression_level: Option<i32>,
    /// `compression.threads`: zstd worker threads (0: compress on the pipeline's own thread).
    #[arg(long, global = true, env = "SEATABLE_BACKUP_COMPRESSION_THREADS", value_name = "N")]
    pub compression_threads: Option<u32>,
}

impl SettingArgs {
    /// The flags (and their environment variables) as a configuration layer.
    pub fn layer(&self) -> config::Layer {
        let paths = |v: Option<Vec<String>>| v.map(|v| v.into_iter().map(PathBuf::from).collect());
        let a = self.clone();
        config::Layer {
            host: a.host_name,
            lock_file: a.lock_file,
            monitoring: config::MonitoringLayer {
                textfile: a.metrics_textfile,
                timeout_secs: a.ping_timeout,
                ..Default::default()
            },
            storage: config::StorageLayer {
                destination: a.destination,
                prefix: a.prefix,
                endpoint: a.s3_endpoint,
                region: a.s3_region,
                path_style: a.s3_path_style,
                request_checksums: a.s3_request_checksums,
                part_size: a.part_size.map(config::SizeValue::Text),
                fixed_part_size: a.fixed_part_size,
                parts_in_flight: a.parts_in_flight,
                part_retries: a.part_retries,
                max_parts: a.max_parts,
                ..Default::default()
            },
            database: config::DatabaseLayer {
                enabled: a.db_enabled,
                mode: a.db_mode,
                container: a.db_container,
                databases: a.databases,
                user: a.db_user,
                host: a.db_host,
                port: a.db_port,
                dump_binary: a.db_dump_binary,
                exclude_tables: a.db_exclude_tables,
                exclude_log_tables: a.db_exclude_log_tables,
                log_tables_separately: a.db_log_tables_separately,
                docker_host: a.docker_host,
                ..Default::default()
            },
            data: config::DataLayer {
                enabled: a.data_enabled,
                dir: a.data_dir,
                exclude: paths(a.data_exclude),
                follow_symlinks: paths(a.data_follow_symlinks),
            },
            compression: config::CompressionLayer {
                algorithm: a.compression,
                level: a.compression_level,
                threads: a.compression_threads,
            },
            seatable: config::SeatableLayer {
                root: a.seatable_root,
                layout: a.seatable_layout,
                compose_dir: a.compose_dir,
                app_container: a.app_container,
                big_data_backup: a.big_data_backup,
                config_component: a.config_component,
                mirror_object_storage: a.mirror_object_storage,
            },
            retention: config::RetentionLayer {
                daily: a.keep_daily,
                weekly: a.keep_weekly,
                monthly: a.keep_monthly,
                keep_last: a.keep_last,
                object_lock: a.object_lock,
                object_lock_mode: a.object_lock_mode,
                object_lock_days: a.object_lock_days,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// A subcommand field named like a global setting would share its id (and its env var).
    #[test]
    fn subcommand_options_do_not_collide_with_settings() {
        let cli = Cli::try_parse_from([
            "seatable-backup",
            "restore",
            "--databases",
            "a,b",
            "--db-mode",
            "container",
            "--only",
            "data",
        ])
        .unwrap();
        let Command::Restore(r) = cli.command else { panic!("not restore") };
        assert!(r.only_databases.is_empty());
        assert_eq!(r.db_restore, DbModeArg::Swap);
        assert_eq!(cli.settings.databases, Some(vec!["a".to_string(), "b".to_string()]));
        let cli = Cli::try_parse_from(["seatable-backup", "restore", "--db", "x", "--db-restore", "recreate"]).unwrap();
        let Command::Restore(r) = cli.command else { panic!("not restore") };
        assert_eq!(r.only_databases, ["x"]);
        assert_eq!(r.db_restore, DbModeArg::Recreate);
    }

    #[test]
    fn setting_flags_become_a_layer() {
        let cli = Cli::try_parse_from([
            "seatable-backup",
            "--compression",
            "gzip",
            "--seatable-layout",
            "old",
            "--object-lock",
            "off",
            "--part-size",
            "16MiB",
            "--data-exclude",
            "a,b/c",
            "plan",
        ])
        .unwrap();
        let layer = cli.settings.layer();
        assert_eq!(layer.compression.algorithm, Some(Algorithm::Gzip));
        assert_eq!(layer.seatable.layout, Some(LayoutChoice::Old));
        assert_eq!(layer.retention.object_lock, Some(ObjectLock::Off));
        assert!(matches!(layer.storage.part_size, Some(config::SizeValue::Text(s)) if s == "16MiB"));
        assert_eq!(layer.data.exclude, Some(vec![PathBuf::from("a"), PathBuf::from("b/c")]));
        assert!(layer.database.password.is_none() && layer.monitoring.ping_url.is_none());
        let e = Cli::try_parse_from(["seatable-backup", "--compression", "lz4", "plan"]).unwrap_err().to_string();
        assert!(e.contains("--compression") && e.contains("zstd, gzip"), "{e}");
    }
}
