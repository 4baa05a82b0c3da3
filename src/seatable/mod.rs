//! What we know of the SeaTable install we protect (SEATABLE.md): which of its two layouts it
//! has, where its compose directory, `.env` and data directory are, which database server and
//! database names it uses, where dtable-storage-server and seafile keep their objects, and
//! which app container runs it.
//!
//! [`Install::detect`] reads files only (no network, no Docker); [`Install::apply`] lays what
//! it found under the configuration, where every detected item can be overridden.
//! [`Install::detect_for_restore`] reads the same files but turns each one it cannot read or
//! parse into a warning: a broken live install must not block the restore that repairs it.
//! The facts that need Docker (the app container, its image version) come from
//! [`app_container`].
//!
//! Every default path is taken under `seatable.root` (`/`), so a mounted snapshot of a server,
//! or a test fixture, is read exactly like the live host.

pub mod defaults;
pub mod dotenv;
pub mod ini;
pub mod storage;

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::config::{Config, DbAccess, LayoutChoice, Secret};
use crate::error::{Class, Failure};
use crate::source::docker::Docker;
use defaults::{DEFAULT_DATABASES, LOG_TABLES};
use dotenv::DotEnv;
use storage::StorageBackends;

/// 4.3+: compose files and `.env`.
pub const NEW_COMPOSE_DIR: &str = "opt/seatable-compose";
/// 4.3+: the data directory.
pub const NEW_DATA_DIR: &str = "opt/seatable-server/seatable";
/// Up to 4.2: `docker-compose.yml` (with the DB password) and, below it, the data.
pub const OLD_COMPOSE_DIR: &str = "opt/seatable";
pub const OLD_DATA_DIR: &str = "opt/seatable/seatable-data/seatable";
/// Where SeaTable's own script sits inside the app container.
pub const SEATABLE_SH: &str = "/opt/seatable/scripts/seatable.sh";

/// The `.env` keys that name the three databases (5.3+), in [`DEFAULT_DATABASES`] order.
const DB_NAME_KEYS: [&str; 3] =
    ["SEATABLE_MYSQL_DB_CCNET_DB_NAME", "SEATABLE_MYSQL_DB_SEAFILE_DB_NAME", "SEATABLE_MYSQL_DB_DTABLE_DB_NAME"];
/// The `.env` keys that may hold the DB root password, newest first.
const DB_PASSWORD_KEYS: [&str; 3] = ["MARIADB_ROOT_PASSWORD", "MARIADB_PASSWORD", "SEATABLE_MYSQL_ROOT_PASSWORD"];
/// The optional Python Pipeline's database, in the same server.
pub const SCHEDULER_DB: &str = "scheduler";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 4.3+: `/opt/seatable-compose` and `/opt/seatable-server/seatable`.
    New,
    /// Up to 4.2: `/opt/seatable/docker-compose.yml` and `/opt/seatable/seatable-data/seatable`.
    Old,
    /// Neither: only what is configured.
    Custom,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::New => "new",
            Layout::Old => "old",
            Layout::Custom => "custom",
        }
    }
    /// The DB container SeaTable names in this layout.
    pub fn db_container(self) -> Option<&'static str> {
        match self {
            Layout::New => Some("mariadb"),
            Layout::Old => Some("seatable-mysql"),
            Layout::Custom => None,
        }
    }
    /// The app container(s) to look for, in order.
    pub fn app_containers(self) -> &'static [&'static str] {
        match self {
            Layout::New => &["seatable-server"],
            Layout::Old => &["seatable"],
            Layout::Custom => &["seatable-server", "seatable"],
        }
    }
}

/// A database server outside any container (`MARIADB_HOST` in `.env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalDb {
    pub host: String,
    pub port: u16,
}

/// What a path of the data directory is left out for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    /// Relative to the data directory.
    pub path: String,
    pub why: String,
}

/// The install as its files describe it.
#[derive(Debug, Clone)]
pub struct Install {
    pub root: PathBuf,
    pub layout: Layout,
    /// Why this layout (which file was found, or that it was configured).
    pub layout_source: String,
    /// The compose directory, when it exists.
    pub compose_dir: Option<PathBuf>,
    /// The `.env` read, when there is one.
    pub env_file: Option<PathBuf>,
    pub env: Option<DotEnv>,
    /// The data directory of the layout (configured, or detected; it may not exist).
    pub data_dir: Option<PathBuf>,
    /// Database names from `.env` (5.3+), when it names any.
    pub env_databases: Option<Vec<String>>,
    /// `MARIADB_HOST` naming a server that is not the `mariadb` container.
    pub external_db: Option<ExternalDb>,
    /// The DB root password from `.env`, for an external server only.
    pub env_db_password: Option<Secret>,
    /// `SEATABLE_IMAGE` from `.env`.
    pub env_image: Option<String>,
    /// Where bases and files are kept; `None` when there is no data directory to read.
    pub storage: Option<StorageBackends>,
    /// Notes for `plan` (other layouts' leftovers, ...).
    pub notes: Vec<String>,
}

fn source_err(msg: String) -> anyhow::Error {
    Failure::new(Class::Source, msg).into()
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(source_err(format!("cannot read `{}`: {e}", path.display()))),
    }
}

/// Reads and parses a `.env` (`${VAR}` falls back to this process's environment).
fn read_env(path: &Path) -> anyhow::Result<DotEnv> {
    let text = read_optional(path)?.unwrap_or_default();
    let lookup = |k: &str| std::env::var(k).ok();
    DotEnv::parse_with(&text, &lookup).map_err(|e| source_err(format!("SeaTable's `{}`: {e}", path.display())))
}

/// Where SeaTable keeps its objects, from the data directory's conf files and `.env`.
fn read_storage(data_dir: &Path, env: Option<&DotEnv>) -> anyhow::Result<StorageBackends> {
    let conf = data_dir.join("conf");
    let storage_conf = read_optional(&conf.join("dtable-storage-server.conf"))?;
    let seafile_conf = read_optional(&conf.join("seafile.conf"))?;
    storage::detect(env, storage_conf.as_deref(), seafile_conf.as_deref())
        .map_err(|e| source_err(format!("SeaTable's storage settings in `{}`: {e}", data_dir.display())))
}

/// In strict mode (`lenient` is `None`) the error; else `None`, with the error and what is
/// assumed instead as one warning line.
fn soften<T>(
    result: anyhow::Result<T>,
    lenient: &mut Option<&mut Vec<String>>,
    instead: &str,
) -> anyhow::Result<Option<T>> {
    match (result, lenient) {
        (Ok(v), _) => Ok(Some(v)),
        (Err(e), None) => Err(e),
        (Err(e), Some(warnings)) => {
            warnings.push(format!("{e:#}; {instead}"));
            Ok(None)
        }
    }
}

/// The layout: configured, or recognised by its files under `root` (the new one wins when
/// both are there, with a note).
fn choose_layout(choice: LayoutChoice, root: &Path, notes: &mut Vec<String>) -> (Layout, String) {
    let found = |marker: PathBuf, data: PathBuf| {
        if marker.is_file() {
            Some(format!("found `{}`", marker.display()))
        } else if data.is_dir() {
            Some(format!("found `{}`", data.display()))
        } else {
            None
        }
    };
    let new_found = found(root.join(NEW_COMPOSE_DIR).join(".env"), root.join(NEW_DATA_DIR));
    let old_found = found(root.join(OLD_COMPOSE_DIR).join("docker-compose.yml"), root.join(OLD_DATA_DIR));
    match choice {
        LayoutChoice::New => (Layout::New, "configured (`seatable.layout = \"new\"`)".to_string()),
        LayoutChoice::Old => (Layout::Old, "configured (`seatable.layout = \"old\"`)".to_string()),
        LayoutChoice::Custom => (Layout::Custom, "configured (`seatable.layout = \"custom\"`)".to_string()),
        LayoutChoice::Auto => match (new_found, old_found) {
            (Some(n), Some(o)) => {
                notes.push(format!(
                    "the old layout's files are there too ({o}); they are ignored (a leftover of an upgrade to 4.3?)"
                ));
                (Layout::New, n)
            }
            (Some(n), None) => (Layout::New, n),
            (None, Some(o)) => (Layout::Old, o),
            (None, None) => (
                Layout::Custom,
                format!("no SeaTable install found under `{}`: only what is configured is used", root.display()),
            ),
        },
    }
}

/// The database names the `.env` gives (5.3+), in [`DEFAULT_DATABASES`] order, defaults filling
/// the gaps; `None` when it names none.
fn env_databases(env: &DotEnv) -> Option<Vec<String>> {
    if !DB_NAME_KEYS.iter().any(|k| env.get_nonempty(k).is_some()) {
        return None;
    }
    Some(
        DB_NAME_KEYS
            .iter()
            .zip(DEFAULT_DATABASES)
            .map(|(k, d)| env.get_nonempty(k).unwrap_or(d).trim().to_string())
            .collect(),
    )
}

/// The external database server the `.env` names (`MARIADB_HOST` other than the bundled
/// `mariadb`), if any.
fn external_db(
    env: &DotEnv,
    env_file: &Path,
    lenient: &mut Option<&mut Vec<String>>,
) -> anyhow::Result<Option<ExternalDb>> {
    let Some(h) = env.get_nonempty("MARIADB_HOST").filter(|h| h.trim() != "mariadb") else { return Ok(None) };
    let port = match env.get_nonempty("MARIADB_PORT") {
        Some(p) => {
            let parsed = p.trim().parse::<u16>().map_err(|_| {
                source_err(format!("SeaTable's `{}`: MARIADB_PORT `{p}` is not a port number", env_file.display()))
            });
            soften(parsed, lenient, "port 3306 is assumed (set `database.port` to override)")?.unwrap_or(3306)
        }
        None => 3306,
    };
    Ok(Some(ExternalDb { host: h.trim().to_string(), port }))
}

impl Install {
    /// Reads the install's files under `seatable.root`. Fails on a file that exists but cannot
    /// be read or parsed (SeaTable could not start with it either), never on a missing one.
    pub fn detect(config: &Config) -> anyhow::Result<Install> {
        Install::read(config, None)
    }

    /// For `restore`, which brings back the files a broken install lacks: what can be read of
    /// the live install, plus one warning line per file that could not be read or parsed (what,
    /// which file, why, and what is assumed instead). Never fails: what the restore needs comes
    /// from the set's manifest and the configuration.
    pub fn detect_for_restore(config: &Config) -> (Install, Vec<String>) {
        let mut warnings = Vec::new();
        match Install::read(config, Some(&mut warnings)) {
            Ok(install) => (install, warnings),
            // In lenient mode every failure becomes a warning; should one slip through, the
            // install is what the configuration alone says.
            Err(e) => {
                warnings.push(format!("the live SeaTable install could not be read: {e:#}"));
                (Install::bare(config), warnings)
            }
        }
    }

    /// The install of a custom layout with nothing read.
    fn bare(config: &Config) -> Install {
        Install {
            root: config.seatable.root.clone(),
            layout: Layout::Custom,
            layout_source: "nothing of the live install could be read: only what is configured is used".into(),
            compose_dir: None,
            env_file: None,
            env: None,
            data_dir: config.data.dir.clone(),
            env_databases: None,
            external_db: None,
            env_db_password: None,
            env_image: None,
            storage: None,
            notes: Vec::new(),
        }
    }

    /// [`Install::detect`] when `lenient` is `None`; else every file that cannot be read or
    /// parsed is left out with a line in `lenient`.
    fn read(config: &Config, mut lenient: Option<&mut Vec<String>>) -> anyhow::Result<Install> {
        let st = &config.seatable;
        let root = st.root.clone();
        let new_compose = root.join(NEW_COMPOSE_DIR);
        let new_data = root.join(NEW_DATA_DIR);
        let old_compose = root.join(OLD_COMPOSE_DIR);
        let old_data = root.join(OLD_DATA_DIR);
        let mut notes = Vec::new();
        let (layout, layout_source) = choose_layout(st.layout, &root, &mut notes);
        let compose_dir = match (&st.compose_dir, layout) {
            (Some(d), _) => Some(d.clone()),
            (None, Layout::New) => Some(new_compose),
            (None, Layout::Old) => Some(old_compose),
            (None, Layout::Custom) => None,
        }
        .filter(|d| d.is_dir());

        // `.env`: the new layout's settings and secrets (the old layout may have one too).
        let env_file = compose_dir.as_ref().map(|d| d.join(".env")).filter(|p| p.is_file());
        let env = match &env_file {
            Some(p) => soften(
                read_env(p),
                &mut lenient,
                "its database names, MARIADB_HOST and storage settings are not used (the configuration's and SeaTable's defaults are)",
            )?,
            None => None,
        };

        let data_dir = config.data.dir.clone().or(match layout {
            Layout::New => Some(new_data),
            Layout::Old => Some(old_data),
            Layout::Custom => None,
        });

        let env_databases = env.as_ref().and_then(env_databases);
        let external_db = match (&env, &env_file) {
            (Some(e), Some(f)) => external_db(e, f, &mut lenient)?,
            _ => None,
        };
        let env_db_password = match (&external_db, &env) {
            (Some(_), Some(e)) => DB_PASSWORD_KEYS.iter().find_map(|k| e.get_nonempty(k)).map(Secret::new),
            _ => None,
        };
        let env_image = env.as_ref().and_then(|e| e.get_nonempty("SEATABLE_IMAGE")).map(|s| s.trim().to_string());

        let storage = match &data_dir {
            Some(d) if d.is_dir() => soften(
                read_storage(d, env.as_ref()),
                &mut lenient,
                "where this install keeps its objects is unknown (S3 buckets mirrored in the set are not restored into it)",
            )?,
            _ => None,
        };

        Ok(Install {
            root,
            layout,
            layout_source,
            compose_dir,
            env_file,
            env,
            data_dir,
            env_databases,
            external_db,
            env_db_password,
            env_image,
            storage,
            notes,
        })
    }

    /// The configuration with what was detected filled in where nothing was configured.
    pub fn apply(&self, config: &Config) -> Config {
        let mut c = config.clone();
        if c.data.dir.is_none() {
            c.data.dir = self.data_dir.clone();
        }
        let db = &mut c.database;
        if !c.configured.db_access {
            if let Some(x) = &self.external_db {
                db.access = DbAccess::Host { host: x.host.clone(), port: x.port };
                if db.password.is_none() {
                    db.password = self.env_db_password.clone();
                }
            }
        }
        if let DbAccess::Container { container: container @ None, .. } = &mut db.access {
            *container = self.layout.db_container().map(str::to_string);
        }
        if !c.configured.databases {
            if let Some(names) = &self.env_databases {
                db.databases = names.clone();
            }
        }
        if db.exclude_log_tables || db.log_tables_separately {
            let dtable = self.dtable_db(config);
            for t in LOG_TABLES {
                let full = format!("{dtable}.{t}");
                if !db.exclude_tables.contains(&full) {
                    db.exclude_tables.push(full);
                }
            }
        }
        c
    }

    /// The name of the dtable database (the third of SeaTable's three).
    pub fn dtable_db(&self, config: &Config) -> String {
        if config.configured.databases {
            return config
                .database
                .databases
                .iter()
                .find(|d| d.contains("dtable"))
                .cloned()
                .unwrap_or_else(|| DEFAULT_DATABASES[2].to_string());
        }
        self.env_databases.as_ref().map(|n| n[2].clone()).unwrap_or_else(|| DEFAULT_DATABASES[2].to_string())
    }

    /// The app containers to look for, in order.
    pub fn app_containers(&self, config: &Config) -> Vec<String> {
        match &config.seatable.app_container {
            Some(n) => vec![n.clone()],
            None => self.layout.app_containers().iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Paths of the data directory that hold nothing worth archiving because SeaTable keeps
    /// those objects in S3.
    pub fn storage_exclusions(&self) -> Vec<Exclusion> {
        let Some(st) = &self.storage else { return Vec::new() };
        let mut out = Vec::new();
        if let Some(loc) = st.dtable_storage.value.s3() {
            out.push(Exclusion {
                path: "storage-data".into(),
                why: format!(
                    "dtable-storage-server keeps bases, snapshots and Big Data backups in S3 bucket `{}`{} ({})",
                    loc.bucket,
                    loc.endpoint().map(|e| format!(" at {e}")).unwrap_or_default(),
                    st.dtable_storage.source
                ),
            });
        }
        for (kind, b) in &st.seafile {
            if let Some(loc) = b.value.s3() {
                out.push(Exclusion {
                    path: kind.data_path().to_string(),
                    why: format!(
                        "seafile keeps its {} objects in S3 bucket `{}`{} ({})",
                        kind.name(),
                        loc.bucket,
                        loc.endpoint().map(|e| format!(" at {e}")).unwrap_or_default(),
                        b.source
                    ),
                });
            }
        }
        out
    }

    /// What goes into the `config` component: the compose directory, and what is left out of
    /// it. In the old layout `/opt/seatable` also holds the data (and the DB's files), so only
    /// its top-level files are taken.
    pub fn config_source(&self) -> anyhow::Result<Option<(PathBuf, Vec<PathBuf>)>> {
        let Some(dir) = &self.compose_dir else { return Ok(None) };
        let mut excludes = Vec::new();
        if self.layout == Layout::Old {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| source_err(format!("compose directory `{}`: {e}", dir.display())))?;
            for e in entries {
                let e = e.map_err(|e| source_err(format!("compose directory `{}`: {e}", dir.display())))?;
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    excludes.push(PathBuf::from(e.file_name()));
                }
            }
            excludes.sort();
        }
        Ok(Some((dir.clone(), excludes)))
    }
}

/// SeaTable's app container as the Docker Engine API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppContainer {
    pub name: String,
    pub running: bool,
    /// The image it was created from (`seatable/seatable-enterprise:5.2.7`).
    pub image: String,
    /// The image's version tag, when it has one (`5.2.7`).
    pub version: Option<String>,
}

/// The first of `names` that exists, with its image; `None` when there is none (or no Docker).
pub async fn app_container(docker: &Docker, names: &[String]) -> anyhow::Result<Option<AppContainer>> {
    for name in names {
        if let Some(info) = docker.container_info(name).await? {
            let version = image_version(&info.image).or(info.version_label);
            return Ok(Some(AppContainer { name: name.clone(), running: info.running, image: info.image, version }));
        }
    }
    Ok(None)
}

/// `seatable/seatable-enterprise:5.2.7` -> `5.2.7`; `...:latest` or no tag -> `None`.
pub fn image_version(image: &str) -> Option<String> {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    let (_, tag) = last.split_once(':')?;
    let tag = tag.trim_start_matches('v');
    if tag.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        Some(tag.to_string())
    } else {
        None
    }
}

/// The leading numbers of a version (`10.11.6-MariaDB-0+deb12u1` -> 10, 11, 6).
fn version_numbers(v: &str) -> Vec<u64> {
    let head: String = v.trim().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    head.split('.').filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// Compares two versions by their leading numbers; `None` when either has none.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    let (x, y) = (version_numbers(a), version_numbers(b));
    if x.is_empty() || y.is_empty() {
        return None;
    }
    let n = x.len().max(y.len());
    let pad = |v: &[u64]| (0..n).map(|i| v.get(i).copied().unwrap_or(0)).collect::<Vec<_>>();
    Some(pad(&x).cmp(&pad(&y)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_ENV: &str = "SEATABLE_IMAGE=seatable/seatable-enterprise:5.3.4\nSEATABLE_MYSQL_DB_CCNET_DB_NAME=c_db\nSEATABLE_MYSQL_DB_SEAFILE_DB_NAME=s_db\nSEATABLE_MYSQL_DB_DTABLE_DB_NAME=d_db\n";
    const GOOD_STORAGE: &str = "[general]\nlog_dir = /shared/seatable/logs\n\n[storage backend]\ntype = filesystem\npath = /opt/seatable/storage-data\n";
    const GOOD_SEAFILE: &str = "[fileserver]\nport = 8082\n";
    /// What an editor crash or a careless `sed` leaves: no INI, no dotenv.
    const GARBAGE: &str = "[commit_object_backend\nthis line is neither an option nor a section\n\u{1b}[31m\n";

    /// A new-layout install under a fresh root: `.env`, the data dir's two conf files.
    fn fixture(env: &str, storage_conf: &str, seafile_conf: &str) -> (tempfile::TempDir, Config) {
        let root = tempfile::tempdir().unwrap();
        let compose = root.path().join(NEW_COMPOSE_DIR);
        let conf = root.path().join(NEW_DATA_DIR).join("conf");
        std::fs::create_dir_all(&compose).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(compose.join(".env"), env).unwrap();
        std::fs::write(conf.join("dtable-storage-server.conf"), storage_conf).unwrap();
        std::fs::write(conf.join("seafile.conf"), seafile_conf).unwrap();
        let toml = format!("[seatable]\nroot = \"{}\"\n", root.path().display());
        let config = Config::from_toml(&toml, &root.path().join("c.toml")).unwrap();
        (root, config)
    }

    fn detect_err(config: &Config) -> String {
        match Install::detect(config) {
            Ok(i) => panic!("detected {i:?}"),
            Err(e) => {
                assert_eq!(crate::exit::class_of(&e), Class::Source, "{e:#}");
                format!("{e:#}")
            }
        }
    }

    #[test]
    fn a_readable_install_gives_no_warnings_and_the_same_install() {
        let (_root, config) = fixture(GOOD_ENV, GOOD_STORAGE, GOOD_SEAFILE);
        let strict = Install::detect(&config).unwrap();
        let (lenient, warnings) = Install::detect_for_restore(&config);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(format!("{strict:?}"), format!("{lenient:?}"));
        assert_eq!(lenient.env_databases.as_deref(), Some(&["c_db".to_string(), "s_db".into(), "d_db".into()][..]));
    }

    #[test]
    fn a_garbage_seafile_conf_is_a_warning_for_restore() {
        let (root, config) = fixture(GOOD_ENV, GOOD_STORAGE, GARBAGE);
        assert!(detect_err(&config).contains("seafile.conf"));
        let (install, warnings) = Install::detect_for_restore(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("conf/seafile.conf") && warnings[0].contains("line 1"), "{warnings:?}");
        assert!(warnings[0].contains("where this install keeps its objects is unknown"), "{warnings:?}");
        // The rest of the install is read as usual.
        assert_eq!(install.layout, Layout::New);
        assert_eq!(install.data_dir, Some(root.path().join(NEW_DATA_DIR)));
        assert_eq!(install.env_databases.as_ref().map(|d| d[2].as_str()), Some("d_db"));
        assert_eq!(install.env_image.as_deref(), Some("seatable/seatable-enterprise:5.3.4"));
        assert!(install.storage.is_none());
    }

    #[test]
    fn a_garbage_storage_server_conf_is_a_warning_for_restore() {
        let (_root, config) = fixture(GOOD_ENV, GARBAGE, GOOD_SEAFILE);
        assert!(detect_err(&config).contains("dtable-storage-server.conf"));
        let (install, warnings) = Install::detect_for_restore(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("conf/dtable-storage-server.conf"), "{warnings:?}");
        assert!(install.storage.is_none() && install.env.is_some());
    }

    #[test]
    fn a_garbage_env_is_a_warning_for_restore() {
        let env = format!("{GOOD_ENV}SEATABLE_SERVER_HOSTNAME=\"unterminated\n");
        let (root, config) = fixture(&env, GOOD_STORAGE, GOOD_SEAFILE);
        assert!(detect_err(&config).contains(".env"));
        let (install, warnings) = Install::detect_for_restore(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let env_path = root.path().join(NEW_COMPOSE_DIR).join(".env").display().to_string();
        assert!(warnings[0].contains(&env_path), "{warnings:?}");
        assert!(warnings[0].contains("database names"), "{warnings:?}");
        // Nothing of it is used; the conf files still are.
        assert!(install.env.is_none() && install.env_databases.is_none() && install.env_image.is_none());
        assert_eq!(install.layout, Layout::New);
        assert!(install.storage.is_some());
        assert_eq!(install.compose_dir, Some(root.path().join(NEW_COMPOSE_DIR)));
    }

    #[test]
    fn a_bad_port_and_unreadable_files_are_warnings_for_restore() {
        let env = format!("{GOOD_ENV}MARIADB_HOST=db.example.org\nMARIADB_PORT=33o6\n");
        let (root, config) = fixture(&env, GARBAGE, GOOD_SEAFILE);
        // seafile.conf a directory: it cannot be read at all.
        let seafile = root.path().join(NEW_DATA_DIR).join("conf/seafile.conf");
        std::fs::remove_file(&seafile).unwrap();
        std::fs::create_dir(&seafile).unwrap();
        assert!(detect_err(&config).contains("MARIADB_PORT"));
        let (install, warnings) = Install::detect_for_restore(&config);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("MARIADB_PORT `33o6`") && warnings[0].contains("3306"), "{warnings:?}");
        assert!(warnings[1].contains("cannot read") && warnings[1].contains("conf/seafile.conf"), "{warnings:?}");
        assert_eq!(install.external_db, Some(ExternalDb { host: "db.example.org".into(), port: 3306 }));
        assert!(install.storage.is_none());
    }

    #[test]
    fn image_versions() {
        assert_eq!(image_version("seatable/seatable-enterprise:5.2.7").as_deref(), Some("5.2.7"));
        assert_eq!(image_version("docker.io/seatable/seatable-enterprise:6.0.10").as_deref(), Some("6.0.10"));
        assert_eq!(image_version("localhost:5000/seatable/seatable-developer:latest"), None);
        assert_eq!(image_version("localhost:5000/seatable/seatable"), None);
        assert_eq!(image_version("seatable/seatable-enterprise:5.1.2@sha256:abcd").as_deref(), Some("5.1.2"));
    }

    #[test]
    fn versions_compare_by_numbers() {
        assert_eq!(compare_versions("10.11.6-MariaDB-0+deb12u1", "11.4.2-MariaDB"), Some(Ordering::Less));
        assert_eq!(compare_versions("5.2", "5.2.0"), Some(Ordering::Equal));
        assert_eq!(compare_versions("6.0.10", "6.0.9"), Some(Ordering::Greater));
        assert_eq!(compare_versions("latest", "5.2"), None);
    }
}
