//! From the merged [`Layer`] to the runtime settings: one function per section fills in the
//! defaults and checks every value, naming the key of the first one that is wrong.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::layer::{
    CompressionLayer, DataLayer, DatabaseLayer, Layer, MonitoringLayer, RetentionLayer, SeatableLayer, SizeValue,
    StorageLayer,
};
use super::settings::*;
use super::{invalid, ConfigError, Secret, DEFAULT_DESTINATION};
use crate::seatable::defaults::DEFAULT_DATABASES;

/// The runtime configuration of a merged layer; `file` is where the file layer came from.
pub(super) fn config(layer: Layer, file: Option<PathBuf>) -> Result<Config, ConfigError> {
    let db = &layer.database;
    let configured = Configured {
        db_access: db.mode.is_some() || db.host.is_some() || db.port.is_some(),
        databases: db.databases.is_some(),
    };
    let host = layer.host.unwrap_or_else(system_hostname);
    if !valid_segment(&host) {
        return Err(invalid("host", format!("`{host}`: use letters, digits, `.`, `_` and `-` only")));
    }
    let storage = storage(layer.storage)?;
    let database = database(layer.database)?;
    let data = data(layer.data)?;
    let compression = compression(layer.compression)?;
    let seatable = seatable(layer.seatable)?;
    let retention = retention(layer.retention)?;
    let monitoring = monitoring(layer.monitoring)?;
    let lock_file = layer.lock_file.unwrap_or_else(default_lock_file);
    if !lock_file.is_absolute() {
        return Err(invalid("lock_file", format!("`{}`: give an absolute path", lock_file.display())));
    }
    Ok(Config {
        file,
        host,
        storage,
        database,
        data,
        compression,
        seatable,
        retention,
        lock_file,
        monitoring,
        configured,
    })
}

fn storage(l: StorageLayer) -> Result<StorageConfig, ConfigError> {
    let destination = parse_destination(l.destination.as_deref().unwrap_or(DEFAULT_DESTINATION))?;
    let prefix = l.prefix.as_deref().unwrap_or("seatable").trim_matches('/').to_string();
    if !prefix.is_empty() && !prefix.split('/').all(valid_segment) {
        return Err(invalid("storage.prefix", format!("`{prefix}`: segments may hold letters, digits, `.`, `_`, `-`")));
    }
    let credentials =
        match (l.access_key_id.clone(), l.secret_access_key.clone()) {
            (None, None) => None,
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => return Err(invalid(
                "storage.access_key_id",
                "give both `access_key_id` and `secret_access_key`, or neither (then the AWS default chain is used)",
            )),
        };
    let upload = upload_policy(&l)?;
    let s3 = S3Settings {
        endpoint: l.endpoint,
        region: l.region,
        path_style: l.path_style.unwrap_or(false),
        request_checksums: l.request_checksums.unwrap_or(RequestChecksums::WhenSupported),
        credentials,
    };
    if let Some(ep) = &s3.endpoint {
        if !(ep.starts_with("http://") || ep.starts_with("https://")) {
            return Err(invalid("storage.endpoint", format!("`{ep}`: expected an `http://` or `https://` URL")));
        }
    }
    Ok(StorageConfig { destination, prefix, s3, upload })
}

fn upload_policy(l: &StorageLayer) -> Result<UploadPolicy, ConfigError> {
    let d = UploadPolicy::default();
    let part_size = match &l.part_size {
        None => d.part_size,
        Some(SizeValue::Bytes(n)) => *n,
        Some(SizeValue::Text(s)) => parse_size(s).map_err(|m| invalid("storage.part_size", m))?,
    };
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        return Err(invalid("storage.part_size", "must be between 5MiB and 5GiB (S3's part limits)"));
    }
    let max_parts = l.max_parts.unwrap_or(d.max_parts);
    if !(10..=10_000).contains(&max_parts) {
        return Err(invalid("storage.max_parts", "must be between 10 and 10000"));
    }
    let parts_in_flight = l.parts_in_flight.unwrap_or(d.parts_in_flight);
    if !(1..=64).contains(&parts_in_flight) {
        return Err(invalid("storage.parts_in_flight", "must be between 1 and 64"));
    }
    let part_retries = l.part_retries.unwrap_or(d.part_retries);
    if part_retries > 20 {
        return Err(invalid("storage.part_retries", "must be at most 20"));
    }
    Ok(UploadPolicy {
        part_size,
        fixed: l.fixed_part_size.unwrap_or(d.fixed),
        max_parts,
        parts_in_flight,
        part_retries,
    })
}

fn database(l: DatabaseLayer) -> Result<DatabaseConfig, ConfigError> {
    let access = match l.mode.unwrap_or(DbMode::Container) {
        DbMode::Container => DbAccess::Container { container: l.container, docker_host: l.docker_host.clone() },
        DbMode::Host => {
            DbAccess::Host { host: l.host.unwrap_or_else(|| "127.0.0.1".to_string()), port: l.port.unwrap_or(3306) }
        }
    };
    let databases = l.databases.unwrap_or_else(|| DEFAULT_DATABASES.iter().map(|s| s.to_string()).collect());
    if let Some(db) = databases.iter().find(|db| !valid_db_name(db)) {
        return Err(invalid("database.databases", format!("`{db}` is not a plain database name")));
    }
    let exclude_tables = l.exclude_tables.unwrap_or_default();
    let qualified = |t: &String| matches!(t.split_once('.'), Some((d, tb)) if valid_db_name(d) && valid_table_name(tb));
    if let Some(t) = exclude_tables.iter().find(|t| !qualified(t)) {
        return Err(invalid("database.exclude_tables", format!("`{t}`: expected `database.table`")));
    }
    if let Some(b) = l.dump_binary.as_ref().filter(|b| *b != "mariadb-dump" && *b != "mysqldump") {
        return Err(invalid("database.dump_binary", format!("`{b}`: expected `mariadb-dump` or `mysqldump`")));
    }
    Ok(DatabaseConfig {
        enabled: l.enabled.unwrap_or(true),
        access,
        databases,
        user: l.user.unwrap_or_else(|| "root".to_string()),
        password: l.password,
        dump_binary: l.dump_binary,
        exclude_tables,
        docker_host: l.docker_host,
        exclude_log_tables: l.exclude_log_tables.unwrap_or(false),
        log_tables_separately: l.log_tables_separately.unwrap_or(false),
    })
}

fn data(l: DataLayer) -> Result<DataConfig, ConfigError> {
    let exclude = relative_paths("data.exclude", l.exclude, "a path")?;
    let follow_symlinks = relative_paths("data.follow_symlinks", l.follow_symlinks, "the symlink's path")?;
    Ok(DataConfig { enabled: l.enabled.unwrap_or(true), dir: l.dir, exclude, follow_symlinks })
}

/// Paths inside the data directory: relative, without `..`.
fn relative_paths(key: &str, paths: Option<Vec<PathBuf>>, what: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let paths = paths.unwrap_or_default();
    let outside = |p: &&PathBuf| p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_)));
    if let Some(p) = paths.iter().find(outside) {
        return Err(invalid(
            key,
            format!("`{}`: give {what} relative to the data directory, without `..`", p.display()),
        ));
    }
    Ok(paths)
}

fn compression(l: CompressionLayer) -> Result<CompressionConfig, ConfigError> {
    let algorithm = l.algorithm.unwrap_or(Algorithm::Zstd);
    let (default_level, range) = match algorithm {
        Algorithm::Zstd => (3, 1..=19),
        Algorithm::Gzip => (6, 1..=9),
    };
    let level = l.level.unwrap_or(default_level);
    if !range.contains(&level) {
        return Err(invalid(
            "compression.level",
            format!("{level} is outside {}..={} for {}", range.start(), range.end(), algorithm.name()),
        ));
    }
    let threads = l.threads.unwrap_or(0);
    // By default a dump gets one zstd worker: zstd's single-threaded streaming mode compresses
    // almost everything through its slower external-dictionary path (its input ring wraps),
    // which costs a sixth more CPU while the database and the container runtime need both
    // cores; the worker mode keeps each job contiguous. It holds about 30 MiB more, which the
    // data archive (with its parts and read-ahead) is not given.
    let dump_threads = l.threads.unwrap_or(if algorithm == Algorithm::Zstd { 1 } else { 0 });
    if threads > 64 {
        return Err(invalid("compression.threads", "must be at most 64"));
    }
    if threads > 0 && algorithm == Algorithm::Gzip {
        return Err(invalid("compression.threads", "worker threads apply to zstd only"));
    }
    Ok(CompressionConfig { algorithm, level, threads, dump_threads })
}

fn seatable(l: SeatableLayer) -> Result<SeatableConfig, ConfigError> {
    let root = l.root.unwrap_or_else(|| PathBuf::from("/"));
    if !root.is_absolute() {
        return Err(invalid("seatable.root", format!("`{}`: give an absolute path", root.display())));
    }
    if let Some(c) = l.app_container.as_ref().filter(|c| !valid_segment(c)) {
        return Err(invalid("seatable.app_container", format!("`{c}` is not a container name")));
    }
    Ok(SeatableConfig {
        root,
        layout: l.layout.unwrap_or(LayoutChoice::Auto),
        compose_dir: l.compose_dir,
        app_container: l.app_container,
        big_data_backup: l.big_data_backup.unwrap_or(true),
        config_component: l.config_component.unwrap_or(true),
        mirror_object_storage: l.mirror_object_storage.unwrap_or(false),
    })
}

fn retention(l: RetentionLayer) -> Result<RetentionConfig, ConfigError> {
    let d = RetentionConfig::default();
    let retention = RetentionConfig {
        daily: l.daily.unwrap_or(d.daily),
        weekly: l.weekly.unwrap_or(d.weekly),
        monthly: l.monthly.unwrap_or(d.monthly),
        keep_last: l.keep_last.unwrap_or(d.keep_last),
        object_lock: l.object_lock.map_or(d.object_lock, |o| o == ObjectLock::Auto),
        object_lock_mode: l.object_lock_mode.unwrap_or(d.object_lock_mode),
        object_lock_days: l.object_lock_days,
    };
    if retention.keep_last > 10_000 {
        return Err(invalid("retention.keep_last", "must be at most 10000"));
    }
    let days = [
        ("retention.object_lock_days", retention.object_lock_days),
        ("retention.daily", Some(retention.daily)),
        ("retention.weekly", Some(retention.weekly)),
        ("retention.monthly", Some(retention.monthly)),
    ];
    if let Some((key, _)) = days.iter().find(|(_, v)| v.is_some_and(|v| !(1..=36_500).contains(&v))) {
        return Err(invalid(key, "must be between 1 and 36500 days"));
    }
    Ok(retention)
}

/// URLs come from the file or the environment, never a flag (they may hold tokens); a base
/// `ping_url` works like healthchecks.io: `/start`, itself, `/fail`.
fn monitoring(l: MonitoringLayer) -> Result<MonitoringConfig, ConfigError> {
    let base = http_url("monitoring.ping_url", l.ping_url)?;
    let derived = |suffix: &str| base.as_ref().map(|b| Secret::new(format!("{}{suffix}", b.expose())));
    let monitoring = MonitoringConfig {
        ping_start: http_url("monitoring.ping_start_url", l.ping_start_url)?.or_else(|| derived("/start")),
        ping_success: http_url("monitoring.ping_success_url", l.ping_success_url)?.or_else(|| derived("")),
        ping_failure: http_url("monitoring.ping_failure_url", l.ping_failure_url)?.or_else(|| derived("/fail")),
        webhook: http_url("monitoring.webhook_url", l.webhook_url)?,
        textfile: l.textfile,
        timeout: Duration::from_secs(l.timeout_secs.unwrap_or(10)),
    };
    if let Some(t) = monitoring.textfile.as_ref().filter(|t| !t.is_absolute() || t.file_name().is_none()) {
        return Err(invalid("monitoring.textfile", format!("`{}`: give an absolute file path", t.display())));
    }
    if !(1..=300).contains(&monitoring.timeout.as_secs()) {
        return Err(invalid("monitoring.timeout_secs", "must be between 1 and 300 seconds"));
    }
    Ok(monitoring)
}

/// An `http(s)://` URL without its trailing slashes.
fn http_url(key: &str, url: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
    match url {
        None => Ok(None),
        Some(u) if u.expose().starts_with("http://") || u.expose().starts_with("https://") => {
            Ok(Some(Secret::new(u.expose().trim_end_matches('/'))))
        }
        Some(_) => Err(invalid(key, "expected an `http://` or `https://` URL")),
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

/// A database name this tool accepts from a manifest, `.env` or the configuration: a plain
/// identifier of ASCII letters, digits and `_`, 1 to 64 characters. Such a name can never be
/// read as a client option (no leading `-`), needs no quoting, and cannot name another schema
/// (no `.`).
pub fn valid_db_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A table name in `database.exclude_tables`: letters, digits, `_`, `$` and `-`, 1 to 64.
fn valid_table_name(s: &str) -> bool {
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

/// `dir` exists and this process may create files in it.
pub fn dir_writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: access() only reads its NUL-terminated argument.
    dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0
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
