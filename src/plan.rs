//! `plan`: what would be backed up from where, with every check's result. Writes nothing.

use serde::Serialize;

use crate::catalog::{self, Class, SetId};
use crate::config::{Config, DbAccess};
use crate::error::{class_of, one_line, Class as ErrClass, Failure};
use crate::source::data;
use crate::source::dump::{DbSource, DUMP_OPTIONS};
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
    pub checks: Vec<Check>,
}

fn pass(check: &str, detail: impl Into<String>) -> Check {
    Check { check: check.into(), ok: true, detail: detail.into(), class: None }
}

fn fail(check: &str, err: &anyhow::Error) -> Check {
    Check { check: check.into(), ok: false, detail: one_line(err), class: Some(class_of(err)) }
}

pub async fn run(config: &Config, store: &dyn Store, json: bool) -> anyhow::Result<()> {
    let mut checks = Vec::new();

    match store.preflight().await {
        Ok(()) => {
            checks.push(pass("destination reachable", format!("{} answers with these credentials", store.describe())))
        }
        Err(e) => checks.push(fail("destination reachable", &anyhow::Error::from(e))),
    }

    if config.database.enabled {
        match DbSource::connect(&config.database).await {
            Ok(src) => {
                if let DbAccess::Container { .. } = config.database.access {
                    checks.push(pass("Docker Engine API reachable", "ping answered"));
                    checks.push(pass("database container found", src.describe()));
                }
                checks.push(pass(
                    "dump tool found",
                    format!("`{}` (client `{}`) in {}", src.dump_binary, src.client_binary, src.describe()),
                ));
                checks.push(pass(
                    "database login",
                    format!("user `{}` accepted; server {}", config.database.user, src.server_version),
                ));
                for db in &config.database.databases {
                    match src.check_databases(std::slice::from_ref(db)) {
                        Ok(()) => checks.push(pass(&format!("database `{db}` exists"), "yes")),
                        Err(e) => checks.push(fail(&format!("database `{db}` exists"), &e)),
                    }
                }
            }
            Err(e) => checks.push(fail("database server", &e)),
        }
    }

    let mut data_dir = None;
    if config.data.enabled {
        match data::resolve_dir(&config.data) {
            Ok(d) => {
                checks.push(pass("data directory readable", d.display().to_string()));
                data_dir = Some(d);
            }
            Err(e) => checks.push(fail("data directory readable", &e)),
        }
    }

    let id = SetId { class: Class::Daily, host: config.host.clone(), stamp: catalog::stamp(chrono::Utc::now()) };
    let plan = Plan {
        config_file: config.file.as_ref().map(|p| p.display().to_string()),
        host: config.host.clone(),
        destination: store.describe(),
        set_prefix_example: id.dir(&config.storage.prefix),
        databases: if config.database.enabled { config.database.databases.clone() } else { vec![] },
        dump_options: DUMP_OPTIONS.iter().map(|s| s.to_string()).collect(),
        data_dir: data_dir.as_ref().map(|d| d.display().to_string()),
        layout: crate::seatable::layout_of(data_dir.as_deref()).into(),
        excluded_paths: data::excludes(&config.data).iter().map(|p| p.display().to_string()).collect(),
        compression: format!("{} level {}", config.compression.algorithm.name(), config.compression.level),
        checks,
    };

    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render(&plan));
    }
    let failed: Vec<&Check> = plan.checks.iter().filter(|c| !c.ok).collect();
    if let Some(first) = failed.first() {
        return Err(Failure::new(
            first.class.unwrap_or(ErrClass::Internal),
            format!(
                "{} of {} checks failed; first: {}: {}",
                failed.len(),
                plan.checks.len(),
                first.check,
                first.detail
            ),
        )
        .into());
    }
    Ok(())
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
        Some(d) => s.push_str(&format!("data dir:     {d}  (layout: {})\n", p.layout)),
        None => s.push_str("data dir:     (disabled or not found)\n"),
    }
    s.push_str(&format!("left out:     {}\n", p.excluded_paths.join(", ")));
    s.push_str(&format!("compression:  {}\n", p.compression));
    s.push_str("checks:\n");
    for c in &p.checks {
        s.push_str(&format!("  [{}] {}: {}\n", if c.ok { " ok " } else { "FAIL" }, c.check, c.detail));
    }
    s
}
