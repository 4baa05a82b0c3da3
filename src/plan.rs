//! `plan`: what would be backed up from where, with every check's result. Writes nothing.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backup::scope::Scope;
use crate::backup::storage_info;
use crate::catalog::{self, SetClass, SetId, StorageInfo};
use crate::config::{Config, DbAccess, Destination};
use crate::error::{one_line, Class as ErrClass, Failure};
use crate::exit::class_of;
use crate::seatable::defaults::ALWAYS_EXCLUDED;
use crate::seatable::{self, AppContainer};
use crate::source::data;
use crate::source::dump::{DbSource, DUMP_OPTIONS};
use crate::source::tar::{find_external_symlinks, MAX_EXTERNAL_LISTED};
use crate::store::Store;

#[derive(Debug, Serialize)]
pub struct Check {
    pub check: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip)]
    class: Option<ErrClass>,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub config_file: Option<String>,
    pub host: String,
    pub destination: String,
    pub set_prefix_example: String,
    pub databases: Vec<String>,
    pub dump_options: Vec<String>,
    pub data_dir: Option<String>,
    pub layout: String,
    pub excluded_paths: Vec<String>,
    pub compression: String,
    pub seatable: PlanSeatable,
    /// What a backup will hold, one line each.
    pub included: Vec<String>,
    /// What it will NOT hold, and why.
    pub not_included: Vec<String>,
    pub checks: Vec<Check>,
}

/// The install as detected.
#[derive(Debug, Serialize)]
pub struct PlanSeatable {
    pub layout_source: String,
    pub compose_dir: Option<String>,
    pub env_file: Option<String>,
    /// `container `mariadb`` or `external `host:port``.
    pub database: String,
    pub database_names_from: String,
    pub app_container: Option<String>,
    pub version: Option<String>,
    pub storage: Vec<StorageInfo>,
    pub big_data_backup: String,
    pub notes: Vec<String>,
}

fn pass(check: &str, detail: impl Into<String>) -> Check {
    Check { check: check.into(), ok: true, detail: detail.into(), class: None }
}

fn fail(check: &str, err: &anyhow::Error) -> Check {
    Check { check: check.into(), ok: false, detail: one_line(err), class: Some(class_of(err)) }
}

pub async fn run(config: &Config, store: &dyn Store, json: bool) -> anyhow::Result<()> {
    // Nothing else can be said reliably without the install; that is the command's error.
    let scope = Scope::new(config, None).map_err(|e| e.context("detecting the SeaTable install"))?;
    let config = &scope.config;
    let mut checks = vec![destination_check(store).await];
    let (databases, db_version) = database_checks(&scope, &mut checks).await;
    let data_dir = data_checks(config, &mut checks);
    let app = scope.app().await;
    checks.extend(mirror_checks(&scope).await);
    let contents = Contents::of(&scope, &databases, data_dir.as_deref());
    checks.push(lock_check(&config.lock_file));
    checks.extend(object_lock_check(config, store).await);
    checks.extend(monitoring_checks(&config.monitoring));

    let id = SetId { class: SetClass::Daily, host: config.host.clone(), stamp: catalog::stamp(crate::clock::now()) };
    let plan = Plan {
        config_file: config.file.as_ref().map(|p| p.display().to_string()),
        host: config.host.clone(),
        destination: store.describe(),
        set_prefix_example: id.dir(&config.storage.prefix),
        databases: if config.database.enabled { databases } else { vec![] },
        dump_options: DUMP_OPTIONS.iter().map(|s| s.to_string()).collect(),
        data_dir: data_dir.as_ref().map(|d| d.display().to_string()),
        layout: scope.install.layout.as_str().into(),
        excluded_paths: scope.data_tar_options().excludes.iter().map(|p| p.display().to_string()).collect(),
        compression: format!("{} level {}", config.compression.algorithm.name(), config.compression.level),
        seatable: seatable_plan(&scope, app.as_ref(), db_version, contents.storage),
        included: contents.included,
        not_included: contents.not_included,
        checks,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render(&plan));
    }
    first_failure(&plan.checks)
}

/// The command's error when a check failed: the first one, with the class of its cause.
fn first_failure(checks: &[Check]) -> anyhow::Result<()> {
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
    let Some(first) = failed.first() else { return Ok(()) };
    Err(Failure::new(
        first.class.unwrap_or(ErrClass::Internal),
        format!("{} of {} checks failed; first: {}: {}", failed.len(), checks.len(), first.check, first.detail),
    )
    .into())
}

async fn destination_check(store: &dyn Store) -> Check {
    match store.preflight().await {
        Ok(()) => pass("destination reachable", format!("{} answers with these credentials", store.describe())),
        Err(e) => fail("destination reachable", &anyhow::Error::from(e)),
    }
}

/// The database server, its login and each database; returns the databases a backup would dump
/// and the server's version.
async fn database_checks(scope: &Scope, checks: &mut Vec<Check>) -> (Vec<String>, Option<String>) {
    let config = &scope.config;
    if !config.database.enabled {
        return (config.database.databases.clone(), None);
    }
    let src = match DbSource::connect(&config.database).await {
        Ok(src) => src,
        Err(e) => {
            checks.push(fail("database server", &e));
            return (config.database.databases.clone(), None);
        }
    };
    if let DbAccess::Container { .. } = config.database.access {
        checks.push(pass("Docker Engine API reachable", "ping answered"));
        checks.push(pass("database container found", src.describe()));
    }
    checks.push(pass(
        "dump tool found",
        format!(
            "`{}` (client `{}`{}) in {}",
            src.dump_binary,
            src.client_binary,
            if src.output_buffered() { "; dump output through `stdbuf -o 1M`" } else { "" },
            src.describe()
        ),
    ));
    checks.push(pass(
        "database login",
        format!("user `{}` accepted; server {}", config.database.user, src.server_version),
    ));
    let databases = scope.databases(&src.databases);
    for db in &databases {
        match src.check_databases(std::slice::from_ref(db)) {
            Ok(()) => checks.push(pass(&format!("database `{db}` exists"), "yes")),
            Err(e) => checks.push(fail(&format!("database `{db}` exists"), &e)),
        }
    }
    (databases, Some(src.server_version.clone()))
}

/// The data directory and the symlinks to follow in it; returns the directory when found.
fn data_checks(config: &Config, checks: &mut Vec<Check>) -> Option<PathBuf> {
    if !config.data.enabled {
        return None;
    }
    let dir = match data::resolve_dir(&config.data) {
        Ok(d) => d,
        Err(e) => {
            checks.push(fail("data directory readable", &e));
            return None;
        }
    };
    checks.push(pass("data directory readable", dir.display().to_string()));
    let follow = &config.data.follow_symlinks;
    if !follow.is_empty() {
        const NAME: &str = "symlinks to follow (`data.follow_symlinks`)";
        let list = follow.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>();
        match data::check_follow(&dir, follow) {
            Ok(()) => checks.push(pass(NAME, format!("{}: archived as what they point to", list.join(", ")))),
            Err(e) => checks.push(fail(NAME, &e)),
        }
    }
    Some(dir)
}

/// Mirroring reads SeaTable's own buckets: each must answer with SeaTable's credentials.
async fn mirror_checks(scope: &Scope) -> Vec<Check> {
    let config = &scope.config;
    let mut checks = Vec::new();
    if !(config.seatable.mirror_object_storage && config.data.enabled) {
        return checks;
    }
    for b in scope.install.storage.as_ref().map(crate::mirror::buckets_of).unwrap_or_default() {
        let name = format!("SeaTable's bucket `{}` readable", b.location.bucket);
        match crate::mirror::open_bucket(&b, config.storage.s3.request_checksums).await {
            Ok(store) => match store.preflight().await {
                Ok(()) => checks
                    .push(pass(&name, format!("{} answers", b.location.endpoint().unwrap_or_else(|| "AWS S3".into())))),
                Err(e) => checks.push(fail(&name, &anyhow::Error::from(e))),
            },
            Err(e) => checks.push(fail(&name, &e)),
        }
    }
    checks
}

/// Whether new sets get Object Lock (S3 destinations where the configuration allows it).
async fn object_lock_check(config: &Config, store: &dyn Store) -> Option<Check> {
    const NAME: &str = "Object Lock";
    if !(matches!(config.storage.destination, Destination::S3 { .. }) && config.retention.object_lock) {
        return None;
    }
    Some(match crate::store::features(store).await {
        Ok(f) if f.object_lock => pass(
            NAME,
            format!(
                "the bucket has it: each new set is locked ({}, {})",
                config.retention.object_lock_mode.as_str().to_lowercase(),
                config
                    .retention
                    .object_lock_days
                    .map(|d| format!("{d} days"))
                    .unwrap_or_else(|| "its class's keep days".into())
            ),
        ),
        Ok(_) => pass(NAME, "not enabled on the bucket: sets are not locked"),
        Err(e) => fail(NAME, &anyhow::Error::from(e).context("reading the bucket's Object Lock setting")),
    })
}

/// What a backup will and will not hold, one line each, and the storage backends with whether
/// the set holds their objects.
struct Contents {
    included: Vec<String>,
    not_included: Vec<String>,
    storage: Vec<StorageInfo>,
}

impl Contents {
    fn of(scope: &Scope, databases: &[String], data_dir: Option<&Path>) -> Contents {
        let mut c = Contents { included: Vec::new(), not_included: Vec::new(), storage: Vec::new() };
        c.databases(&scope.config, databases);
        c.data(scope, data_dir);
        c.buckets(scope, data_dir.is_some());
        c.config_component(scope);
        c
    }

    fn databases(&mut self, config: &Config, databases: &[String]) {
        if !config.database.enabled {
            self.not_included.push("the databases (`database.enabled = false`)".to_string());
            return;
        }
        self.included.push(format!("databases {} (one dump each, first)", databases.join(", ")));
        let excl = &config.database.exclude_tables;
        if !excl.is_empty() {
            self.not_included.push(format!(
                "tables {}{}",
                excl.join(", "),
                if config.database.exclude_log_tables { " (slim dumps: `database.exclude_log_tables`)" } else { "" }
            ));
        }
    }

    fn data(&mut self, scope: &Scope, data_dir: Option<&Path>) {
        match (data_dir, scope.config.data.enabled) {
            (Some(d), _) => {
                self.included.push(format!("data directory `{}`", d.display()));
                self.not_included.push(format!(
                    "{} of the data directory (SeaTable recreates them, or they are backed up elsewhere)",
                    ALWAYS_EXCLUDED.join(", ")
                ));
                for e in &scope.storage_exclusions() {
                    self.not_included.push(format!("`{}`: {}", e.path, e.why));
                }
                self.not_included.extend(external_symlinks(d, scope));
            }
            (None, true) => self.not_included.push("the data directory (not found)".to_string()),
            (None, false) => self.not_included.push("the data directory (`data.enabled = false`)".to_string()),
        }
    }

    fn buckets(&mut self, scope: &Scope, data_in_backup: bool) {
        let config = &scope.config;
        let excluded: Vec<String> = scope.storage_exclusions().into_iter().map(|e| e.path).collect();
        self.storage =
            scope.install.storage.as_ref().map(|s| storage_info(s, data_in_backup, &excluded)).unwrap_or_default();
        let mirrored = config.seatable.mirror_object_storage && config.data.enabled;
        for s in self.storage.iter_mut().filter(|s| s.backend == "s3") {
            let at = s.endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
            let bucket = s.bucket.as_deref().unwrap_or("?");
            if mirrored {
                s.in_backup = true;
                self.included.push(format!(
                    "S3 bucket `{bucket}`{at} ({}): mirrored into the set (only what changed since the last set that outlives it is copied)",
                    s.user
                ));
                continue;
            }
            self.not_included.push(format!(
                "S3 bucket `{bucket}`{at} ({}): NOT in this backup; back it up separately (bucket versioning, or an S3-to-S3 copy), or set `seatable.mirror_object_storage`{}",
                s.user,
                if s.sse_c { "; its objects are SSE-C encrypted: keep the key, without it they are lost" } else { "" }
            ));
        }
    }

    fn config_component(&mut self, scope: &Scope) {
        let wanted = scope.config.seatable.config_component;
        let source = if wanted { scope.install.config_source().ok().flatten() } else { None };
        match source {
            Some((dir, excl)) if excl.is_empty() => self
                .included
                .push(format!("compose directory `{}` as the `config` component (holds secrets)", dir.display())),
            Some((dir, excl)) => self.included.push(format!(
                "the top-level files of `{}` as the `config` component (holds secrets; its directories {} are not configuration)",
                dir.display(),
                excl.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )),
            None if !wanted => self
                .not_included
                .push("SeaTable's compose directory (`seatable.config_component = false`)".to_string()),
            None => self
                .not_included
                .push("SeaTable's compose directory (none found; set `seatable.compose_dir`)".to_string()),
        }
    }
}

/// What `plan` says of the Big Data backup (`seatable.sh backup-all` before the archive).
fn big_data_plan(config: &Config, app: Option<&AppContainer>) -> String {
    if !config.data.enabled {
        return "not applicable (the data directory is not backed up)".to_string();
    }
    if !config.seatable.big_data_backup {
        return "off (`seatable.big_data_backup = false`)".to_string();
    }
    match app {
        Some(a) if a.running => {
            format!("`{} backup-all` runs in `{}` before the archive", seatable::SEATABLE_SH, a.name)
        }
        Some(a) => format!("skipped: app container `{}` is not running", a.name),
        None => "skipped: no SeaTable app container found".to_string(),
    }
}

/// The install as detected, for the plan.
fn seatable_plan(
    scope: &Scope,
    app: Option<&AppContainer>,
    db_version: Option<String>,
    storage: Vec<StorageInfo>,
) -> PlanSeatable {
    let (install, config) = (&scope.install, &scope.config);
    let version = db_version.as_ref().map(|v| format!(", MariaDB/MySQL {v}")).unwrap_or_default();
    PlanSeatable {
        layout_source: install.layout_source.clone(),
        compose_dir: install.compose_dir.as_ref().map(|d| d.display().to_string()),
        env_file: install.env_file.as_ref().map(|d| d.display().to_string()),
        database: match &config.database.access {
            DbAccess::Container { container, .. } => {
                format!("container `{}`{version}", container.as_deref().unwrap_or("mariadb` or `seatable-mysql"))
            }
            DbAccess::Host { host, port } => format!(
                "external server `{host}:{port}`{}{version}",
                if install.external_db.is_some() && !config.configured.db_access {
                    " (MARIADB_HOST in `.env`)"
                } else {
                    ""
                },
            ),
        },
        database_names_from: if config.configured.databases {
            "configured (`database.databases`)".to_string()
        } else if install.env_databases.is_some() {
            "`.env` (SEATABLE_MYSQL_DB_*_DB_NAME)".to_string()
        } else {
            "SeaTable's defaults".to_string()
        },
        app_container: app.map(|a| format!("`{}` ({})", a.name, if a.running { "running" } else { "not running" })),
        version: app
            .and_then(|a| a.version.clone())
            .or_else(|| install.env_image.as_deref().and_then(seatable::image_version)),
        storage,
        big_data_backup: big_data_plan(config, app),
        notes: install.notes.clone(),
    }
}

/// One line per symlink of the data directory pointing outside it (what a backup archives as a
/// link only), from a walk that stops after [`MAX_EXTERNAL_LISTED`].
fn external_symlinks(dir: &Path, scope: &Scope) -> Vec<String> {
    let (found, more) = find_external_symlinks(dir, &scope.data_tar_options(), MAX_EXTERNAL_LISTED);
    let mut lines: Vec<String> = found.iter().map(data::external_symlink_line).collect();
    if more {
        lines.push(format!(
            "more symlinks of the data directory point outside it (plan lists the first {MAX_EXTERNAL_LISTED}; a backup counts them all in its manifest)"
        ));
    }
    lines
}

/// Whether a run could take the lock now. Opens an existing file read-only (a shared look, no
/// write); for a missing file, checks that its directory can be written.
fn lock_check(path: &std::path::Path) -> Check {
    const NAME: &str = "run lock";
    match crate::lock::holder(path) {
        Ok(None) => pass(NAME, format!("`{}` is free", path.display())),
        Ok(Some(holder)) => {
            pass(NAME, format!("`{}` is held right now by {}: a backup would exit 75", path.display(), holder))
        }
        Err(_) => {
            if crate::config::dir_writable(path.parent().unwrap_or(std::path::Path::new("/"))) {
                pass(NAME, format!("`{}` (created by the first run)", path.display()))
            } else {
                fail(
                    NAME,
                    &crate::error::usage(format!(
                        "cannot create lock file `{}`: its directory is not writable",
                        path.display()
                    )),
                )
            }
        }
    }
}

/// What the run will report to (hosts only: URLs may hold tokens). Nothing is called: a ping
/// would count as a run at the monitor.
fn monitoring_checks(m: &crate::config::MonitoringConfig) -> Vec<Check> {
    let mut out = Vec::new();
    let hosts: Vec<String> =
        [("start", &m.ping_start), ("success", &m.ping_success), ("failure", &m.ping_failure), ("webhook", &m.webhook)]
            .iter()
            .filter_map(|(what, url)| {
                url.as_ref().map(|u| format!("{what} -> {}", crate::monitor::host_of(u.expose())))
            })
            .collect();
    if !hosts.is_empty() {
        out.push(pass("monitoring", format!("{} (not called by plan)", hosts.join(", "))));
    }
    if let Some(t) = &m.textfile {
        if crate::config::dir_writable(t.parent().unwrap_or(std::path::Path::new("/"))) {
            out.push(pass("metrics textfile", format!("`{}` (directory writable)", t.display())));
        } else {
            out.push(fail(
                "metrics textfile",
                &crate::error::usage(format!("directory of `{}` is missing or not writable", t.display())),
            ));
        }
    }
    out
}

fn render(p: &Plan) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "config file:  {}\n",
        p.config_file.as_deref().unwrap_or("(none: defaults, environment and flags)")
    ));
    s.push_str(&format!("host name:    {}\n", p.host));
    s.push_str(&format!("destination:  {}  (a set goes under `{}`)\n", p.destination, p.set_prefix_example));
    if p.databases.is_empty() {
        s.push_str("databases:    (disabled)\n");
    } else {
        s.push_str(&format!("databases:    {}  (dumped first)\n", p.databases.join(", ")));
    }
    match &p.data_dir {
        Some(d) => s.push_str(&format!("data dir:     {d}\n")),
        None => s.push_str("data dir:     (disabled or not found)\n"),
    }
    s.push_str(&format!("compression:  {}\n", p.compression));
    let st = &p.seatable;
    s.push_str("SeaTable install:\n");
    s.push_str(&format!("  layout:       {} ({})\n", p.layout, st.layout_source));
    if let Some(d) = &st.compose_dir {
        s.push_str(&format!("  compose dir:  {d}{}\n", st.env_file.as_ref().map(|_| " (with .env)").unwrap_or("")));
    }
    s.push_str(&format!("  database:     {}; names from {}\n", st.database, st.database_names_from));
    s.push_str(&format!(
        "  app:          {}{}\n",
        st.app_container.as_deref().unwrap_or("no app container found"),
        st.version.as_ref().map(|v| format!(", SeaTable {v}")).unwrap_or_default()
    ));
    for b in &st.storage {
        let place = match (&b.bucket, &b.endpoint) {
            (Some(bucket), ep) => format!(
                "S3 bucket `{bucket}`{}{}",
                ep.as_ref().map(|e| format!(" at {e}")).unwrap_or_default(),
                if b.sse_c { " (SSE-C)" } else { "" }
            ),
            (None, Some(path)) => format!("filesystem ({path})"),
            (None, None) => "filesystem".to_string(),
        };
        s.push_str(&format!("  storage:      {:<22} {place}  [from {}]\n", b.user, b.source));
    }
    s.push_str(&format!("  Big Data:     {}\n", st.big_data_backup));
    for n in &st.notes {
        s.push_str(&format!("  note:         {n}\n"));
    }
    s.push_str("a backup WILL hold:\n");
    for l in &p.included {
        s.push_str(&format!("  + {l}\n"));
    }
    s.push_str("it will NOT hold:\n");
    for l in &p.not_included {
        s.push_str(&format!("  - {l}\n"));
    }
    s.push_str("checks:\n");
    for c in &p.checks {
        s.push_str(&format!("  [{}] {}: {}\n", if c.ok { " ok " } else { "FAIL" }, c.check, c.detail));
    }
    s
}
