//! What a backup of this install takes, decided before anything is written: the install's
//! files laid under the configuration, the parts asked for, and the rules that `backup` and
//! `plan` both apply (SeaTable's `scheduler` database, what the data archive leaves out, the app
//! container).

use std::path::PathBuf;

use crate::cli::Only;
use crate::config::Config;
use crate::error::{usage, Class, Failure};
use crate::seatable::{self, AppContainer, Exclusion, Install};
use crate::source::data;
use crate::source::docker::Docker;
use crate::source::tar::TarOptions;

pub struct Scope {
    pub install: Install,
    /// The configuration with the install's `.env` laid under it.
    pub config: Config,
    pub want_db: bool,
    pub want_data: bool,
    /// The `config` component is asked for (it is taken when a compose directory is found).
    pub want_config: bool,
}

impl Scope {
    /// Detects the install and decides the parts; `only` narrows them to one.
    pub fn new(config: &Config, only: Option<Only>) -> anyhow::Result<Scope> {
        let install = Install::detect(config)?;
        let config = install.apply(config);
        let want_db = config.database.enabled && matches!(only, None | Some(Only::Db));
        let want_data = config.data.enabled && matches!(only, None | Some(Only::Data));
        let want_config = config.seatable.config_component && matches!(only, None | Some(Only::Config));
        Ok(Scope { install, config, want_db, want_data, want_config })
    }

    /// The compose directory and what to leave out of it, when the `config` component is taken;
    /// an error when nothing at all would be backed up.
    pub fn config_source(&self, only: Option<Only>) -> anyhow::Result<Option<(PathBuf, Vec<PathBuf>)>> {
        let source = if self.want_config { self.install.config_source()? } else { None };
        if only == Some(Only::Config) && source.is_none() {
            return Err(Failure::new(Class::Usage, "--only config: no SeaTable compose directory was found")
                .with_hint("set `seatable.compose_dir` (4.3+: /opt/seatable-compose; older: /opt/seatable)")
                .into());
        }
        if !self.want_db && !self.want_data && source.is_none() {
            return Err(usage(
                "nothing to back up: the databases and the data directory are both disabled (or left out by --only)",
            ));
        }
        Ok(source)
    }

    /// The databases to dump: the configured ones, and SeaTable's `scheduler` database when the
    /// server has it and the names were not configured (the `.env` does not name it).
    pub fn databases(&self, on_server: &[String]) -> Vec<String> {
        let mut databases = self.config.database.databases.clone();
        let scheduler = seatable::SCHEDULER_DB;
        if !self.config.configured.databases
            && on_server.iter().any(|d| d == scheduler)
            && !databases.iter().any(|d| d == scheduler)
        {
            databases.push(scheduler.to_string());
        }
        databases
    }

    /// Parts of the data directory that live in object storage (their local directory holds
    /// nothing worth archiving).
    pub fn storage_exclusions(&self) -> Vec<Exclusion> {
        self.install.storage_exclusions()
    }

    /// How the data directory is archived: what is always left out, what is configured, the
    /// parts that live in object storage, and the symlinks to follow.
    pub fn data_tar_options(&self) -> TarOptions {
        let mut excludes = data::excludes(&self.config.data);
        excludes.extend(self.storage_exclusions().into_iter().map(|e| PathBuf::from(e.path)));
        TarOptions { excludes, follow_symlinks: self.config.data.follow_symlinks.clone() }
    }

    /// SeaTable's app container, when Docker answers and it exists.
    pub async fn app(&self) -> Option<AppContainer> {
        let docker = Docker::connect(self.config.database.docker_host.as_deref()).ok()?;
        match seatable::app_container(&docker, &self.install.app_containers(&self.config)).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot look for SeaTable's app container");
                None
            }
        }
    }
}
