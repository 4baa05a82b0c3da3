//! Where SeaTable keeps its bases and files: in the data directory, or in S3 buckets.
//!
//! A backup of the data directory is only complete for what actually lives there, and the parts
//! that live in S3 are not worth archiving (they are empty or stale). This module decides, from
//! the `.env` and the two `.conf` files, which store each part of SeaTable uses.
//!
//! # dtable-storage-server (bases, snapshots, Big Data backups)
//! First match wins:
//! 1. `.env` `STORAGE_SERVER_BACKEND_TYPE` (6.2, which reads no `dtable-storage-server.conf`):
//!    `filesystem` (path `STORAGE_SERVER_FS_PATH`) or `s3` (bucket `S3_STORAGE_BUCKET`).
//! 2. `.env` `STORAGE_TYPE=s3` with `S3_STORAGE_BUCKET` set (6.1).
//! 3. `conf/dtable-storage-server.conf` `[storage backend]` `type`: `filesystem` (`path`) or `s3`.
//! 4. The filesystem, with source `"default"`.
//!
//! # seafile (files and images of file/image columns), per kind of object
//! 1. `.env` `STORAGE_TYPE=s3` with the kind's `S3_COMMIT_BUCKET` / `S3_FS_BUCKET` /
//!    `S3_BLOCK_BUCKET` set.
//! 2. `conf/seafile.conf` `[commit_object_backend]` / `[fs_object_backend]` / `[block_backend]`
//!    with `name = s3`. Any other `name` counts as the filesystem (archiving a directory that turns
//!    out empty costs little; skipping one that is not would lose data).
//! 3. The filesystem (`seafile-data/storage/{commits,fs,blocks}`), source `"default"`.
//!
//! # Avatars (6.2)
//! In S3 when `.env` has `STORAGE_TYPE=s3` or `STORAGE_SERVER_BACKEND_TYPE=s3`, and
//! `S3_AVATAR_BUCKET`; otherwise they are in the data directory and need no special care.
//!
//! S3 settings come from `.env`'s shared `S3_*` keys or from the deciding conf section. Defaults:
//! `use_https` true, `path_style_request` false. A conf file is only parsed when the `.env` leaves
//! something to it, so a stale, broken one next to a 6.2 `.env` does no harm.

use super::dotenv::{parse_bool, DotEnv};
use super::ini::Ini;
use crate::config::Secret;

/// Paths of the conf files inside the data directory, as they appear in messages.
pub const STORAGE_CONF: &str = "conf/dtable-storage-server.conf";
pub const SEAFILE_CONF: &str = "conf/seafile.conf";
const STORAGE_SECTION: &str = "storage backend";

/// Where a bucket is and how to talk to it; nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// As configured: normally `host` or `host:port`, without a scheme.
    pub host: Option<String>,
    pub region: Option<String>,
    pub use_https: bool,
    pub path_style: bool,
    /// Objects are encrypted with a customer key (SSE-C); reading them needs that key.
    pub sse_c: bool,
}

impl S3Location {
    /// `https://host` or `http://host` after `use_https`; `None` without a host (AWS's default
    /// endpoint for the region). A host that already carries a scheme is returned as is.
    pub fn endpoint(&self) -> Option<String> {
        let host = self.host.as_deref()?;
        if host.contains("://") {
            return Some(host.to_string());
        }
        Some(format!("{}://{host}", if self.use_https { "https" } else { "http" }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub key_id: String,
    pub secret: Secret,
    pub sse_c_key: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `path` is the configured path, if any; it is the container's view, not the host's.
    Filesystem { path: Option<String> },
    /// `credentials` is `None` when neither key id nor secret is configured.
    S3 { location: S3Location, credentials: Option<S3Credentials> },
}

impl Backend {
    pub fn is_s3(&self) -> bool {
        matches!(self, Backend::S3 { .. })
    }

    pub fn s3(&self) -> Option<&S3Location> {
        match self {
            Backend::S3 { location, .. } => Some(location),
            Backend::Filesystem { .. } => None,
        }
    }

    pub fn credentials(&self) -> Option<&S3Credentials> {
        match self {
            Backend::S3 { credentials, .. } => credentials.as_ref(),
            Backend::Filesystem { .. } => None,
        }
    }
}

/// The three kinds of object seafile stores, each with its own backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeafileKind {
    Commit,
    Fs,
    Block,
}

impl SeafileKind {
    pub const ALL: [SeafileKind; 3] = [SeafileKind::Commit, SeafileKind::Fs, SeafileKind::Block];

    /// `"commits"`, `"fs"`, `"blocks"`: the directory name under `seafile-data/storage`.
    pub fn name(self) -> &'static str {
        match self {
            SeafileKind::Commit => "commits",
            SeafileKind::Fs => "fs",
            SeafileKind::Block => "blocks",
        }
    }

    /// Its section in `conf/seafile.conf`.
    pub fn section(self) -> &'static str {
        match self {
            SeafileKind::Commit => "commit_object_backend",
            SeafileKind::Fs => "fs_object_backend",
            SeafileKind::Block => "block_backend",
        }
    }

    /// Where it lives, relative to the data directory, when not in S3.
    pub fn data_path(self) -> &'static str {
        match self {
            SeafileKind::Commit => "seafile-data/storage/commits",
            SeafileKind::Fs => "seafile-data/storage/fs",
            SeafileKind::Block => "seafile-data/storage/blocks",
        }
    }

    /// Its bucket's key in `.env` (6.1+).
    pub fn env_bucket(self) -> &'static str {
        match self {
            SeafileKind::Commit => "S3_COMMIT_BUCKET",
            SeafileKind::Fs => "S3_FS_BUCKET",
            SeafileKind::Block => "S3_BLOCK_BUCKET",
        }
    }

    /// How `StorageBackends::buckets` names it: `"seafile commits"` etc.
    pub fn user(self) -> &'static str {
        match self {
            SeafileKind::Commit => "seafile commits",
            SeafileKind::Fs => "seafile fs",
            SeafileKind::Block => "seafile blocks",
        }
    }
}

/// A finding and what it rests on, for the user: "`.env` STORAGE_SERVER_BACKEND_TYPE",
/// "`conf/dtable-storage-server.conf` [storage backend]", "default", ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected<T> {
    pub value: T,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageBackends {
    pub dtable_storage: Detected<Backend>,
    /// Always all three kinds, in `SeafileKind::ALL` order.
    pub seafile: Vec<(SeafileKind, Detected<Backend>)>,
    pub avatar: Option<Detected<S3Location>>,
}

impl StorageBackends {
    /// Relative paths inside the data directory that hold nothing worth archiving because their
    /// objects live in S3: "storage-data" when dtable_storage is S3; each S3 seafile kind's
    /// data_path().
    pub fn excluded_paths(&self) -> Vec<&'static str> {
        let mut paths = Vec::new();
        if self.dtable_storage.value.is_s3() {
            paths.push("storage-data");
        }
        paths.extend(self.seafile.iter().filter(|(_, d)| d.value.is_s3()).map(|(kind, _)| kind.data_path()));
        paths
    }

    /// Every distinct S3 bucket SeaTable uses (by name, in order of first use), with its users:
    /// "dtable-storage-server", "seafile commits", "seafile fs", "seafile blocks", "avatars".
    /// The locations themselves are in the fields.
    pub fn buckets(&self) -> Vec<(String, Vec<&'static str>)> {
        let mut users: Vec<(&S3Location, &'static str)> = Vec::new();
        if let Some(location) = self.dtable_storage.value.s3() {
            users.push((location, "dtable-storage-server"));
        }
        for (kind, detected) in &self.seafile {
            if let Some(location) = detected.value.s3() {
                users.push((location, kind.user()));
            }
        }
        if let Some(avatar) = &self.avatar {
            users.push((&avatar.value, "avatars"));
        }
        let mut buckets: Vec<(String, Vec<&'static str>)> = Vec::new();
        for (location, user) in users {
            match buckets.iter_mut().find(|(name, _)| *name == location.bucket) {
                Some((_, list)) => list.push(user),
                None => buckets.push((location.bucket.clone(), vec![user])),
            }
        }
        buckets
    }

    /// The backend of one seafile kind.
    pub fn seafile_backend(&self, kind: SeafileKind) -> Option<&Detected<Backend>> {
        self.seafile.iter().find(|(k, _)| *k == kind).map(|(_, d)| d)
    }
}

/// The names the S3 settings go by in one kind of source.
struct Keys {
    host: &'static str,
    region: &'static str,
    use_https: &'static str,
    path_style: &'static str,
    key_id: &'static str,
    secret: &'static str,
    sse_c_key: &'static str,
}

const ENV_KEYS: Keys = Keys {
    host: "S3_HOST",
    region: "S3_AWS_REGION",
    use_https: "S3_USE_HTTPS",
    path_style: "S3_PATH_STYLE_REQUEST",
    key_id: "S3_KEY_ID",
    secret: "S3_SECRET_KEY",
    sse_c_key: "S3_SSE_C_KEY",
};

const CONF_KEYS: Keys = Keys {
    host: "host",
    region: "aws_region",
    use_https: "use_https",
    path_style: "path_style_request",
    key_id: "key_id",
    secret: "key",
    sse_c_key: "sse_c_key",
};

/// Reads the S3 settings for `bucket` from one source; `what` names the source in errors.
fn read_s3<'a>(
    what: &str,
    keys: &Keys,
    bucket: &str,
    get: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<(S3Location, Option<S3Credentials>), String> {
    let get = |key: &str| get(key).filter(|v| !v.trim().is_empty());
    let text = |key: &str| get(key).map(|v| v.trim().to_string());
    let flag = |key: &str, default: bool| match get(key) {
        None => Ok(default),
        // A guess here would mean the wrong protocol or addressing, so refuse instead.
        Some(v) => parse_bool(v).ok_or_else(|| format!("{what}: {key} = {:?} is not a boolean", v.trim())),
    };
    let sse_c_key = get(keys.sse_c_key).map(Secret::new);
    let location = S3Location {
        bucket: bucket.trim().to_string(),
        host: text(keys.host).map(|h| h.trim_end_matches('/').to_string()),
        region: text(keys.region),
        use_https: flag(keys.use_https, true)?,
        path_style: flag(keys.path_style, false)?,
        sse_c: sse_c_key.is_some(),
    };
    let credentials = match (text(keys.key_id), get(keys.secret)) {
        (Some(key_id), Some(secret)) => Some(S3Credentials { key_id, secret: Secret::new(secret), sse_c_key }),
        (None, None) => None,
        (Some(_), None) => return Err(format!("{what}: {} is set but {} is not", keys.key_id, keys.secret)),
        (None, Some(_)) => return Err(format!("{what}: {} is set but {} is not", keys.secret, keys.key_id)),
    };
    Ok((location, credentials))
}

fn s3_backend<'a>(
    what: &str,
    keys: &Keys,
    bucket: &str,
    get: &dyn Fn(&str) -> Option<&'a str>,
) -> Result<Backend, String> {
    let (location, credentials) = read_s3(what, keys, bucket, get)?;
    Ok(Backend::S3 { location, credentials })
}

fn env_s3(env: &DotEnv, bucket: &str) -> Result<Backend, String> {
    s3_backend("`.env`", &ENV_KEYS, bucket, &|k| env.get(k))
}

fn is_s3(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("s3"))
}

/// Parses a conf file the first time it is asked for.
struct LazyConf<'a> {
    name: &'static str,
    text: Option<&'a str>,
    parsed: Option<Ini>,
}

impl LazyConf<'_> {
    fn get(&mut self) -> Result<Option<&Ini>, String> {
        if self.parsed.is_none() {
            if let Some(text) = self.text {
                self.parsed = Some(Ini::parse(text).map_err(|e| format!("`{}` {e}", self.name))?);
            }
        }
        Ok(self.parsed.as_ref())
    }
}

fn detect_dtable_storage(env: Option<&DotEnv>, conf: &mut LazyConf<'_>) -> Result<Detected<Backend>, String> {
    if let Some(env) = env {
        if let Some(kind) = env.get_nonempty("STORAGE_SERVER_BACKEND_TYPE") {
            let value = match kind.trim().to_ascii_lowercase().as_str() {
                "filesystem" => Backend::Filesystem {
                    path: env.get_nonempty("STORAGE_SERVER_FS_PATH").map(|p| p.trim().to_string()),
                },
                "s3" => {
                    let bucket = env
                        .get_nonempty("S3_STORAGE_BUCKET")
                        .ok_or("`.env`: STORAGE_SERVER_BACKEND_TYPE = s3 but no S3_STORAGE_BUCKET")?;
                    env_s3(env, bucket)?
                }
                _ => {
                    return Err(format!(
                        "`.env`: unknown STORAGE_SERVER_BACKEND_TYPE {:?} (expected filesystem or s3)",
                        kind.trim()
                    ))
                }
            };
            return Ok(Detected { value, source: "`.env` STORAGE_SERVER_BACKEND_TYPE".into() });
        }
        if is_s3(env.get("STORAGE_TYPE")) {
            if let Some(bucket) = env.get_nonempty("S3_STORAGE_BUCKET") {
                return Ok(Detected { value: env_s3(env, bucket)?, source: "`.env` STORAGE_TYPE".into() });
            }
        }
    }
    if let Some(ini) = conf.get()? {
        let what = format!("`{STORAGE_CONF}` [{STORAGE_SECTION}]");
        if let Some(kind) = ini.get(STORAGE_SECTION, "type").filter(|t| !t.is_empty()) {
            let value = match kind.to_ascii_lowercase().as_str() {
                "filesystem" => Backend::Filesystem {
                    path: ini.get(STORAGE_SECTION, "path").filter(|p| !p.is_empty()).map(String::from),
                },
                "s3" => {
                    let bucket = ini
                        .get(STORAGE_SECTION, "bucket")
                        .filter(|b| !b.is_empty())
                        .ok_or_else(|| format!("{what}: type = s3 but no bucket"))?;
                    s3_backend(&what, &CONF_KEYS, bucket, &|k| ini.get(STORAGE_SECTION, k))?
                }
                _ => return Err(format!("{what}: unknown type {kind:?} (expected filesystem or s3)")),
            };
            return Ok(Detected { value, source: what });
        }
    }
    Ok(Detected { value: Backend::Filesystem { path: None }, source: "default".into() })
}

fn detect_seafile(
    kind: SeafileKind,
    env: Option<&DotEnv>,
    conf: &mut LazyConf<'_>,
) -> Result<Detected<Backend>, String> {
    if let Some(env) = env.filter(|env| is_s3(env.get("STORAGE_TYPE"))) {
        if let Some(bucket) = env.get_nonempty(kind.env_bucket()) {
            return Ok(Detected { value: env_s3(env, bucket)?, source: format!("`.env` {}", kind.env_bucket()) });
        }
    }
    if let Some(ini) = conf.get()? {
        let section = kind.section();
        if is_s3(ini.get(section, "name")) {
            let what = format!("`{SEAFILE_CONF}` [{section}]");
            let bucket = ini
                .get(section, "bucket")
                .filter(|b| !b.is_empty())
                .ok_or_else(|| format!("{what}: name = s3 but no bucket"))?;
            let value = s3_backend(&what, &CONF_KEYS, bucket, &|k| ini.get(section, k))?;
            return Ok(Detected { value, source: what });
        }
    }
    Ok(Detected { value: Backend::Filesystem { path: None }, source: "default".into() })
}

fn detect_avatar(env: Option<&DotEnv>) -> Result<Option<Detected<S3Location>>, String> {
    let Some(env) = env else { return Ok(None) };
    if !is_s3(env.get("STORAGE_TYPE")) && !is_s3(env.get("STORAGE_SERVER_BACKEND_TYPE")) {
        return Ok(None);
    }
    let Some(bucket) = env.get_nonempty("S3_AVATAR_BUCKET") else { return Ok(None) };
    let (location, _) = read_s3("`.env`", &ENV_KEYS, bucket, &|k| env.get(k))?;
    Ok(Some(Detected { value: location, source: "`.env` S3_AVATAR_BUCKET".into() }))
}

/// `env`: the parsed `.env` (None when there is none); `storage_conf` / `seafile_conf`: the text
/// of `conf/dtable-storage-server.conf` and `conf/seafile.conf` when they exist (None when
/// missing).
pub fn detect(
    env: Option<&DotEnv>,
    storage_conf: Option<&str>,
    seafile_conf: Option<&str>,
) -> Result<StorageBackends, String> {
    let mut storage = LazyConf { name: STORAGE_CONF, text: storage_conf, parsed: None };
    let mut seafile_ini = LazyConf { name: SEAFILE_CONF, text: seafile_conf, parsed: None };
    let dtable_storage = detect_dtable_storage(env, &mut storage)?;
    let seafile = SeafileKind::ALL
        .into_iter()
        .map(|kind| Ok((kind, detect_seafile(kind, env, &mut seafile_ini)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let avatar = detect_avatar(env)?;
    Ok(StorageBackends { dtable_storage, seafile, avatar })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> DotEnv {
        match DotEnv::parse(text) {
            Ok(env) => env,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn ok(env: Option<&DotEnv>, storage: Option<&str>, seafile: Option<&str>) -> StorageBackends {
        match detect(env, storage, seafile) {
            Ok(found) => found,
            Err(e) => panic!("{e}"),
        }
    }

    fn err(env: Option<&DotEnv>, storage: Option<&str>, seafile: Option<&str>) -> String {
        match detect(env, storage, seafile) {
            Ok(found) => panic!("detected {found:?}"),
            Err(e) => e,
        }
    }

    const FULL_S3_CONF: &str = "\
[general]
log_dir = /opt/seatable/logs
temp_file_dir = /tmp/tmp-storage-data

[storage backend]
type = s3
bucket = seatable-storage
key_id = AKIAIOSFODNN7EXAMPLE
key = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY
use_v4_signature = true
aws_region = eu-central-1
host = s3.eu-central-1.amazonaws.com
path_style_request = false
use_https = true
sse_c_key = SSECKEYSSECKEYSSECKEYSSECKEY0123
";

    const ENV_61: &str = "\
STORAGE_TYPE=s3
S3_STORAGE_BUCKET=st-storage
S3_COMMIT_BUCKET=st-commits
S3_FS_BUCKET=st-fs
S3_BLOCK_BUCKET=st-blocks
S3_KEY_ID=AKIAENV
S3_SECRET_KEY='env secret'
S3_HOST=minio.internal:9000
S3_USE_HTTPS=false
S3_PATH_STYLE_REQUEST=true
S3_AWS_REGION=us-east-1
";

    fn all_filesystem(found: &StorageBackends) -> bool {
        !found.dtable_storage.value.is_s3() && found.seafile.iter().all(|(_, d)| !d.value.is_s3())
    }

    #[test]
    fn nothing_means_filesystem_by_default() {
        let found = ok(None, None, None);
        assert_eq!(
            found.dtable_storage,
            Detected { value: Backend::Filesystem { path: None }, source: "default".into() }
        );
        assert_eq!(found.seafile.iter().map(|(k, _)| *k).collect::<Vec<_>>(), SeafileKind::ALL);
        assert!(found.seafile.iter().all(|(_, d)| d.source == "default"));
        assert!(all_filesystem(&found));
        assert_eq!(found.avatar, None);
        assert!(found.excluded_paths().is_empty());
        assert!(found.buckets().is_empty());
        assert!(all_filesystem(&ok(
            Some(&env("TIME_ZONE=UTC")),
            Some("[general]\n"),
            Some("[fileserver]\nport=8082\n")
        )));
    }

    #[test]
    fn conf_filesystem() {
        let found = ok(None, Some("[storage backend]\ntype = filesystem\npath = /opt/seatable/storage-data\n"), None);
        assert_eq!(found.dtable_storage.value, Backend::Filesystem { path: Some("/opt/seatable/storage-data".into()) });
        assert_eq!(found.dtable_storage.source, "`conf/dtable-storage-server.conf` [storage backend]");
        assert!(found.excluded_paths().is_empty());
    }

    #[test]
    fn conf_s3_with_every_key() {
        let found = ok(None, Some(FULL_S3_CONF), None);
        assert_eq!(found.dtable_storage.source, "`conf/dtable-storage-server.conf` [storage backend]");
        let Backend::S3 { location, credentials } = &found.dtable_storage.value else {
            panic!("not s3: {found:?}");
        };
        assert_eq!(
            *location,
            S3Location {
                bucket: "seatable-storage".into(),
                host: Some("s3.eu-central-1.amazonaws.com".into()),
                region: Some("eu-central-1".into()),
                use_https: true,
                path_style: false,
                sse_c: true,
            }
        );
        assert_eq!(location.endpoint().as_deref(), Some("https://s3.eu-central-1.amazonaws.com"));
        let credentials = credentials.as_ref().map(|c| (c.key_id.as_str(), c.secret.expose(), c.sse_c_key.clone()));
        assert_eq!(
            credentials,
            Some((
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
                Some(Secret::new("SSECKEYSSECKEYSSECKEYSSECKEY0123"))
            ))
        );
        assert_eq!(found.excluded_paths(), ["storage-data"]);
        assert_eq!(found.buckets(), [("seatable-storage".to_string(), vec!["dtable-storage-server"])]);

        let shown = format!("{found:?}");
        assert!(!shown.contains("wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"), "{shown}");
        assert!(!shown.contains("SSECKEYSSECKEYSSECKEYSSECKEY0123"), "{shown}");
        assert!(shown.contains("Secret(***)"));
    }

    #[test]
    fn s3_defaults_without_optional_keys() {
        let found = ok(None, Some("[storage backend]\ntype = S3\nbucket = b\n"), None);
        let Backend::S3 { location, credentials } = &found.dtable_storage.value else { panic!("{found:?}") };
        assert!(location.use_https && !location.path_style && !location.sse_c);
        assert_eq!((location.host.as_ref(), location.region.as_ref(), location.endpoint()), (None, None, None));
        assert_eq!(*credentials, None);
    }

    #[test]
    fn seafile_blocks_only_in_s3() {
        let seafile = "\
[fileserver]
port = 8082

[block_backend]
name = s3
bucket = seatable-blocks
key_id = id
key = secret
host = minio.example.com:9000
use_https = false
path_style_request = true
";
        let found = ok(None, None, Some(seafile));
        assert_eq!(found.excluded_paths(), ["seafile-data/storage/blocks"]);
        let block = found.seafile_backend(SeafileKind::Block).map(|d| (d.source.as_str(), d.value.s3().cloned()));
        let expected = S3Location {
            bucket: "seatable-blocks".into(),
            host: Some("minio.example.com:9000".into()),
            region: None,
            use_https: false,
            path_style: true,
            sse_c: false,
        };
        assert_eq!(block, Some(("`conf/seafile.conf` [block_backend]", Some(expected.clone()))));
        assert_eq!(expected.endpoint().as_deref(), Some("http://minio.example.com:9000"));
        for kind in [SeafileKind::Commit, SeafileKind::Fs] {
            assert_eq!(found.seafile_backend(kind).map(|d| d.source.as_str()), Some("default"));
        }
    }

    #[test]
    fn seafile_other_backend_names_count_as_filesystem() {
        let found = ok(None, None, Some("[commit_object_backend]\nname = ceph\nbucket = x\n"));
        assert!(all_filesystem(&found));
    }

    #[test]
    fn env_61_overrides_conf_files() {
        let e = env(ENV_61);
        let found = ok(
            Some(&e),
            Some("[storage backend]\ntype = filesystem\npath = /x\n"),
            Some("[block_backend]\nname = s3\nbucket = from-conf\n"),
        );
        assert_eq!(found.dtable_storage.source, "`.env` STORAGE_TYPE");
        let location = found.dtable_storage.value.s3().cloned();
        assert_eq!(
            location,
            Some(S3Location {
                bucket: "st-storage".into(),
                host: Some("minio.internal:9000".into()),
                region: Some("us-east-1".into()),
                use_https: false,
                path_style: true,
                sse_c: false,
            })
        );
        let credentials =
            found.dtable_storage.value.credentials().map(|c| (c.key_id.clone(), c.secret.expose().to_string()));
        assert_eq!(credentials, Some(("AKIAENV".to_string(), "env secret".to_string())));
        let buckets: Vec<_> =
            found.seafile.iter().map(|(_, d)| (d.source.as_str(), d.value.s3().map(|l| l.bucket.as_str()))).collect();
        assert_eq!(
            buckets,
            [
                ("`.env` S3_COMMIT_BUCKET", Some("st-commits")),
                ("`.env` S3_FS_BUCKET", Some("st-fs")),
                ("`.env` S3_BLOCK_BUCKET", Some("st-blocks")),
            ]
        );
        assert_eq!(
            found.excluded_paths(),
            ["storage-data", "seafile-data/storage/commits", "seafile-data/storage/fs", "seafile-data/storage/blocks"]
        );
        assert_eq!(found.avatar, None);
        assert!(!format!("{found:?}").contains("env secret"));
    }

    #[test]
    fn storage_type_s3_without_bucket_falls_through() {
        let e = env("STORAGE_TYPE=s3\nS3_BLOCK_BUCKET=blocks\n");
        let found = ok(Some(&e), Some("[storage backend]\ntype = filesystem\n"), None);
        assert_eq!(found.dtable_storage.source, "`conf/dtable-storage-server.conf` [storage backend]");
        assert_eq!(found.excluded_paths(), ["seafile-data/storage/blocks"]);
    }

    #[test]
    fn env_62_s3_with_avatars_and_no_conf_files() {
        let e = env("\
STORAGE_SERVER_BACKEND_TYPE=s3
S3_STORAGE_BUCKET=storage
S3_AVATAR_BUCKET=avatars
S3_KEY_ID=id
S3_SECRET_KEY=secret
S3_SSE_C_KEY=sseckey
S3_AWS_REGION=eu-west-1
");
        let found = ok(Some(&e), None, None);
        assert_eq!(found.dtable_storage.source, "`.env` STORAGE_SERVER_BACKEND_TYPE");
        let location = found.dtable_storage.value.s3();
        assert_eq!(location.map(|l| (l.bucket.as_str(), l.sse_c, l.endpoint())), Some(("storage", true, None)));
        let sse = found.dtable_storage.value.credentials().and_then(|c| c.sse_c_key.as_ref()).map(Secret::expose);
        assert_eq!(sse, Some("sseckey"));
        let avatar =
            found.avatar.as_ref().map(|a| (a.value.bucket.as_str(), a.value.region.as_deref(), a.source.as_str()));
        assert_eq!(avatar, Some(("avatars", Some("eu-west-1"), "`.env` S3_AVATAR_BUCKET")));
        // No STORAGE_TYPE: seafile stays on the filesystem.
        assert_eq!(found.excluded_paths(), ["storage-data"]);
        assert_eq!(
            found.buckets(),
            [("storage".to_string(), vec!["dtable-storage-server"]), ("avatars".into(), vec!["avatars"])]
        );
        let shown = format!("{found:?}");
        assert!(!shown.contains("sseckey") && !shown.contains("\"secret\""), "{shown}");
    }

    #[test]
    fn env_62_filesystem_with_path_ignores_a_broken_conf() {
        let e = env("STORAGE_SERVER_BACKEND_TYPE=filesystem\nSTORAGE_SERVER_FS_PATH=/opt/seatable/storage-data\n");
        let found = ok(Some(&e), Some("this is not an ini file"), None);
        assert_eq!(
            found.dtable_storage,
            Detected {
                value: Backend::Filesystem { path: Some("/opt/seatable/storage-data".into()) },
                source: "`.env` STORAGE_SERVER_BACKEND_TYPE".into()
            }
        );
        assert!(found.excluded_paths().is_empty());
    }

    #[test]
    fn s3_without_bucket_is_an_error() {
        assert_eq!(
            err(None, None, Some("[block_backend]\nname = s3\nkey_id = a\nkey = b\n")),
            "`conf/seafile.conf` [block_backend]: name = s3 but no bucket"
        );
        assert_eq!(
            err(None, Some("[storage backend]\ntype = s3\nbucket =\n"), None),
            "`conf/dtable-storage-server.conf` [storage backend]: type = s3 but no bucket"
        );
        assert_eq!(
            err(Some(&env("STORAGE_SERVER_BACKEND_TYPE=s3")), None, None),
            "`.env`: STORAGE_SERVER_BACKEND_TYPE = s3 but no S3_STORAGE_BUCKET"
        );
    }

    #[test]
    fn unknown_types_are_errors() {
        assert_eq!(
            err(None, Some("[storage backend]\ntype = ceph\n"), None),
            "`conf/dtable-storage-server.conf` [storage backend]: unknown type \"ceph\" (expected filesystem or s3)"
        );
        assert_eq!(
            err(Some(&env("STORAGE_SERVER_BACKEND_TYPE=swift")), None, None),
            "`.env`: unknown STORAGE_SERVER_BACKEND_TYPE \"swift\" (expected filesystem or s3)"
        );
    }

    #[test]
    fn other_errors_name_file_and_key() {
        assert_eq!(
            err(None, None, Some("[fs_object_backend]\nname = s3\nbucket = b\nuse_https = maybe\n")),
            "`conf/seafile.conf` [fs_object_backend]: use_https = \"maybe\" is not a boolean"
        );
        assert_eq!(
            err(Some(&env("STORAGE_TYPE=s3\nS3_FS_BUCKET=b\nS3_KEY_ID=id\n")), None, None),
            "`.env`: S3_KEY_ID is set but S3_SECRET_KEY is not"
        );
        assert_eq!(
            err(None, None, Some("[s]\nk = v\nbroken\n")),
            "`conf/seafile.conf` line 3: expected `[section]`, `key = value`, `key: value` or a comment"
        );
    }

    #[test]
    fn buckets_are_deduplicated() {
        let e = env("STORAGE_TYPE=s3\nS3_STORAGE_BUCKET=shared\nS3_COMMIT_BUCKET=shared\nS3_FS_BUCKET=shared\nS3_BLOCK_BUCKET=blocks\nS3_AVATAR_BUCKET=shared\n");
        let found = ok(Some(&e), None, None);
        assert_eq!(
            found.buckets(),
            [
                ("shared".to_string(), vec!["dtable-storage-server", "seafile commits", "seafile fs", "avatars"]),
                ("blocks".to_string(), vec!["seafile blocks"]),
            ]
        );
    }

    #[test]
    fn endpoint_keeps_an_explicit_scheme() {
        let location = S3Location {
            bucket: "b".into(),
            host: Some("https://s3.example.com".into()),
            region: None,
            use_https: false,
            path_style: false,
            sse_c: false,
        };
        assert_eq!(location.endpoint().as_deref(), Some("https://s3.example.com"));
    }

    #[test]
    fn kinds() {
        let names: Vec<_> = SeafileKind::ALL.iter().map(|k| (k.name(), k.section(), k.data_path())).collect();
        assert_eq!(
            names,
            [
                ("commits", "commit_object_backend", "seafile-data/storage/commits"),
                ("fs", "fs_object_backend", "seafile-data/storage/fs"),
                ("blocks", "block_backend", "seafile-data/storage/blocks"),
            ]
        );
    }

    #[test]
    fn garbage_never_panics() {
        const PIECES: &[&str] = &[
            "[storage backend]\n",
            "[block_backend]\n",
            "[fs_object_backend]\n",
            "type = s3\n",
            "type = filesystem\n",
            "name = s3\n",
            "bucket = b\n",
            "use_https = x\n",
            "key_id = k\n",
            "  cont\n",
            "= \n",
            "\n",
            "#\n",
            "[\n",
        ];
        let envs = [None, Some(env(ENV_61)), Some(env("STORAGE_SERVER_BACKEND_TYPE=s3\nS3_STORAGE_BUCKET=b"))];
        let mut seed = 0xdead_beef_cafe_f00du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5_000 {
            let mut text = String::new();
            for _ in 0..(next() % 8) {
                text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            for e in &envs {
                if let Ok(found) = detect(e.as_ref(), Some(&text), Some(&text)) {
                    let _ = (found.excluded_paths(), found.buckets());
                }
            }
        }
    }
}
