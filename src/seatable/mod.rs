//! What we know of the SeaTable install we protect (SEATABLE.md): which of its two layouts it
//! has, where its compose directory, `.env` and data directory are, which database server and
//! database names it uses, where dtable-storage-server and seafile keep their objects, and
//! which app container runs it.
//!
//! [`Install::detect`] reads files only (no network, no Docker); [`Install::apply`] lays what
//! it found under the configuration, where every detected item can be overridden. The facts
//! that need Docker (the app container, its image version) come from [`app_container`].
//!
//! Every default path is taken under `seatable.root` (`/`), so a mounted snapshot of a server,
//! or a test fixture, is read exactly like the live host.

pub mod dotenv;
pub mod ini;
pub mod storage;

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::config::{Config, DbAccess, LayoutChoice, Secret, DEFAULT_DATABASES, LOG_TABLES};
use crate::error::{Class, Failure};
use crate::source::docker::Docker;
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

impl Install {
    /// Reads the install's files under `seatable.root`. Fails on a file that exists but cannot
    /// be read or parsed (SeaTable could not start with it either), never on a missing one.
    pub fn detect(config: &Config) -> anyhow::Result<Install> {
        let st = &config.seatable;
        let root = st.root.clone();
        let new_compose = root.join(NEW_COMPOSE_DIR);
        let new_data = root.join(NEW_DATA_DIR);
        let old_compose = root.join(OLD_COMPOSE_DIR);
        let old_data = root.join(OLD_DATA_DIR);
        let new_env = new_compose.join(".env");
        let old_yml = old_compose.join("docker-compose.yml");
        let mut notes = Vec::new();

        let new_found = if new_env.is_file() {
            Some(format!("found `{}`", new_env.display()))
        } else if new_data.is_dir() {
            Some(format!("found `{}`", new_data.display()))
        } else {
            None
        };
        let old_found = if old_yml.is_file() {
            Some(format!("found `{}`", old_yml.display()))
        } else if old_data.is_dir() {
            Some(format!("found `{}`", old_data.display()))
        } else {
            None
        };
        let (layout, layout_source) = match st.layout {
            LayoutChoice::New => (Layout::New, "configured (`seatable.layout = \"new\"`)".to_string()),
            LayoutChoice::Old => (Layout::Old, "configured (`seatable.layout = \"old\"`)".to_string()),
            LayoutChoice::Custom => (Layout::Custom, "configured (`seatable.layout = \"custom\"`)".to_string()),
            LayoutChoice::Auto => match (&new_found, &old_found) {
                (Some(n), Some(o)) => {
                    notes.push(format!(
                        "the old layout's files are there too ({o}); they are ignored (a leftover of an upgrade to 4.3?)"
                    ));
                    (Layout::New, n.clone())
                }
                (Some(n), None) => (Layout::New, n.clone()),
                (None, Some(o)) => (Layout::Old, o.clone()),
                (None, None) => (
                    Layout::Custom,
                    format!("no SeaTable install found under `{}`: only what is configured is used", root.display()),
                ),
            },
        };

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
            Some(p) => {
                let text = read_optional(p)?.unwrap_or_default();
                let lookup = |k: &str| std::env::var(k).ok();
                Some(
                    DotEnv::parse_with(&text, &lookup)
                        .map_err(|e| source_err(format!("SeaTable's `{}`: {e}", p.display())))?,
                )
            }
            None => None,
        };

        let data_dir = config.data.dir.clone().or(match layout {
            Layout::New => Some(new_data),
            Layout::Old => Some(old_data),
            Layout::Custom => None,
        });

        let env_databases = env.as_ref().and_then(|e| {
            if DB_NAME_KEYS.iter().any(|k| e.get_nonempty(k).is_some()) {
                Some(
                    DB_NAME_KEYS
                        .iter()
                        .zip(DEFAULT_DATABASES)
                        .map(|(k, d)| e.get_nonempty(k).unwrap_or(d).trim().to_string())
                        .collect(),
                )
            } else {
                None
            }
        });

        let external_db = match env.as_ref().and_then(|e| e.get_nonempty("MARIADB_HOST")) {
            Some(h) if h.trim() != "mariadb" => {
                let port = match env.as_ref().and_then(|e| e.get_nonempty("MARIADB_PORT")) {
                    Some(p) => p.trim().parse::<u16>().map_err(|_| {
                        source_err(format!(
                            "SeaTable's `{}`: MARIADB_PORT `{p}` is not a port number",
                            env_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                        ))
                    })?,
                    None => 3306,
                };
                Some(ExternalDb { host: h.trim().to_string(), port })
            }
            _ => None,
        };
        let env_db_password = match (&external_db, &env) {
            (Some(_), Some(e)) => DB_PASSWORD_KEYS.iter().find_map(|k| e.get_nonempty(k)).map(Secret::new),
            _ => None,
        };
        let env_image = env.as_ref().and_then(|e| e.get_nonempty("SEATABLE_IMAGE")).map(|s| s.trim().to_string());

        let storage = match &data_dir {
            Some(d) if d.is_dir() => {
                let conf = d.join("conf");
                let storage_conf = read_optional(&conf.join("dtable-storage-server.conf"))?;
                let seafile_conf = read_optional(&conf.join("seafile.conf"))?;
                Some(
                    storage::detect(env.as_ref(), storage_conf.as_deref(), seafile_conf.as_deref())
                        .map_err(|e| source_err(format!("SeaTable's storage settings in `{}`: {e}", d.display())))?,
                )
            }
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
        if !db.access_configured {
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
        if !db.databases_configured {
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
        if config.database.databases_configured {
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
