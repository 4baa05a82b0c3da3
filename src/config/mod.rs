//! Configuration: what this module owns is every setting's key, flag type, default and check,
//! and the one validated [`Config`] the program runs on (the runtime never sees clap or TOML).
//!
//! Precedence: flag > environment > file > default. Each source is a partial [`Layer`]
//! (`layer.rs`): the TOML file is deserialized into one; `cli.rs` turns the flags into another
//! (clap has already put each flag over its environment variable); the secrets, which have no
//! flag, are read from the environment into a third ([`Layer::from_env_secrets`]). The layers
//! are laid over each other with [`Layer::or`], then `build.rs` fills in the defaults and checks
//! each section. The runtime settings and the enums that keys and flags share are in
//! `settings.rs`; SeaTable's own default names and paths are in [`crate::seatable::defaults`].
//!
//! Not here: what is detected on the SeaTable install (its compose `.env`, its ini files) is
//! parsed in `src/seatable` and laid under this configuration by `Install::apply`.

mod build;
mod layer;
mod settings;

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use build::{default_lock_file, dir_writable, parse_size, system_hostname, valid_db_name, valid_segment};
pub use layer::{
    CompressionLayer, DataLayer, DatabaseLayer, Layer, MonitoringLayer, RetentionLayer, SeatableLayer, SizeValue,
    StorageLayer,
};
pub use settings::*;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/seatable-backup/config.toml";
pub const DEFAULT_DESTINATION: &str = "file:///var/backups/seatable-backup";

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
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
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

impl Config {
    /// Loads the file (if any), then lays the environment's secrets and `flags` (the flags with
    /// their environment variables) over it.
    ///
    /// `explicit_path`: from `--config` / `SEATABLE_BACKUP_CONFIG`; it must exist. Without it the
    /// default path is read when present.
    pub fn load(explicit_path: Option<&Path>, flags: Layer) -> Result<Config, ConfigError> {
        let (file, path) = match explicit_path {
            Some(p) => (read_file(p)?, Some(p.to_path_buf())),
            None => {
                let p = Path::new(DEFAULT_CONFIG_PATH);
                if p.exists() {
                    (read_file(p)?, Some(p.to_path_buf()))
                } else {
                    (Layer::default(), None)
                }
            }
        };
        Config::from_layers(file, path, flags, Layer::from_env_secrets())
    }

    /// Parses a config file's text alone (no environment, no flags); for tests and `plan`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = parse_file(text, path)?;
        Config::from_layers(file, Some(path.to_path_buf()), Layer::default(), Layer::default())
    }

    /// Flags over secrets over the file; a file holding a secret must be private.
    fn from_layers(file: Layer, path: Option<PathBuf>, flags: Layer, secrets: Layer) -> Result<Config, ConfigError> {
        let file_secrets = file.secrets();
        let config = build::config(flags.or(secrets).or(file), path.clone())?;
        if let Some(p) = path.filter(|_| !file_secrets.is_empty()) {
            check_private(&p, &file_secrets)?;
        }
        Ok(config)
    }
}

/// A file that holds `secrets` must not be readable by group or others.
fn check_private(path: &Path, secrets: &[&str]) -> Result<(), ConfigError> {
    let mode = std::fs::metadata(path)
        .map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::InsecureSecrets {
            path: path.to_path_buf(),
            what: secrets.join(" and "),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?;
    parse_file(&text, path)
}

/// The syntax is checked on the text (its errors name the line); the meaning on the parsed
/// table, whose errors name the key (`in `compression.algorithm``), which toml's positioned
/// errors leave out.
fn parse_file(text: &str, path: &Path) -> Result<Layer, ConfigError> {
    // toml's message spans several lines (with a caret); keep it on one.
    let malformed = |e: toml::de::Error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let table: toml::Table = toml::from_str(text).map_err(malformed)?;
    Layer::deserialize(table).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seatable::defaults::DEFAULT_DATABASES;
    use clap::ValueEnum;

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
        let c = Config::from_layers(Layer::default(), None, Layer::default(), Layer::default()).unwrap();
        assert_eq!(c.storage.destination, Destination::Local { root: "/var/backups/seatable-backup".into() });
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
        let mut flags = Layer::default();
        flags.storage.destination = Some("s3://from-flag".into());
        let c = Config::from_layers(file, None, flags, Layer::default()).unwrap();
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
    fn what_was_configured_is_kept_apart() {
        let p = Path::new("/x/c.toml");
        let c = Config::from_toml("[database]\nport = 3307\n", p).unwrap();
        assert_eq!(c.configured, Configured { db_access: true, databases: false });
        assert!(matches!(c.database.access, DbAccess::Container { .. }), "port alone keeps the default mode");
        let c = Config::from_toml("[database]\ndatabases = [\"a\"]\n", p).unwrap();
        assert_eq!(c.configured, Configured { db_access: false, databases: true });
        assert_eq!(Config::from_toml("", p).unwrap().configured, Configured::default());
    }

    /// A flag (clap) and a key (serde) spell each value the same way.
    #[test]
    fn flags_and_keys_share_spellings() {
        fn same<T: clap::ValueEnum + serde::de::DeserializeOwned + PartialEq + fmt::Debug>() {
            for v in T::value_variants() {
                let name = v.to_possible_value().unwrap().get_name().to_string();
                let parsed: T = serde::Deserialize::deserialize(toml::Value::String(name.clone())).unwrap();
                assert_eq!(&parsed, v, "{name}");
            }
        }
        same::<RequestChecksums>();
        same::<LayoutChoice>();
        same::<Algorithm>();
        same::<LockMode>();
        same::<DbMode>();
        same::<ObjectLock>();
        let names: Vec<_> = RequestChecksums::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(names, ["when_supported", "when_required"]);
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
