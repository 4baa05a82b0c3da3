//! Partial settings, one [`Layer`] per source: the file, the flags (with their environment
//! variables, which clap already puts under the flags), and the secrets that only the
//! environment may give. A key is `None` where its source is silent; [`Layer::or`] lays one
//! layer over another, and `build.rs` turns the merged layer into the runtime settings.
//!
//! The file is deserialized straight into these types, so they are also its schema: unknown
//! keys are refused, enum values are spelled as in `config.example.toml`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Algorithm, DbMode, LayoutChoice, LockMode, ObjectLock, RequestChecksums, Secret};

/// Declares a layer: each value optional, each section a layer of its own (absent: empty), and
/// `or`, which keeps this layer's values and takes the rest from a lower one.
macro_rules! layer {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty,)*
        }
        $(sections { $($section:ident: $sty:ty,)* })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: Option<$ty>,)*
            $($(#[serde(default)] pub $section: $sty,)*)?
        }

        impl $name {
            /// This layer's values where it has them, else `lower`'s.
            pub fn or(self, lower: Self) -> Self {
                $name {
                    $($field: self.$field.or(lower.$field),)*
                    $($($section: self.$section.or(lower.$section),)*)?
                }
            }
        }
    };
}

layer! {
    /// The whole configuration, as one source gives it.
    Layer {
        host: String,
        lock_file: PathBuf,
    }
    sections {
        monitoring: MonitoringLayer,
        storage: StorageLayer,
        database: DatabaseLayer,
        data: DataLayer,
        compression: CompressionLayer,
        seatable: SeatableLayer,
        retention: RetentionLayer,
    }
}

layer! {
    /// `[seatable]`.
    SeatableLayer {
        root: PathBuf,
        layout: LayoutChoice,
        compose_dir: PathBuf,
        app_container: String,
        big_data_backup: bool,
        config_component: bool,
        mirror_object_storage: bool,
    }
}

layer! {
    /// `[monitoring]`. The URLs may hold tokens: they come from the file or the environment.
    MonitoringLayer {
        ping_url: Secret,
        ping_start_url: Secret,
        ping_success_url: Secret,
        ping_failure_url: Secret,
        webhook_url: Secret,
        textfile: PathBuf,
        timeout_secs: u64,
    }
}

layer! {
    /// `[retention]`.
    RetentionLayer {
        daily: u32,
        weekly: u32,
        monthly: u32,
        keep_last: u32,
        object_lock: ObjectLock,
        object_lock_mode: LockMode,
        object_lock_days: u32,
    }
}

layer! {
    /// `[storage]`. The key pair comes from the file only.
    StorageLayer {
        destination: String,
        prefix: String,
        endpoint: String,
        region: String,
        path_style: bool,
        request_checksums: RequestChecksums,
        access_key_id: String,
        secret_access_key: Secret,
        part_size: SizeValue,
        fixed_part_size: bool,
        parts_in_flight: usize,
        part_retries: u32,
        max_parts: u32,
    }
}

layer! {
    /// `[database]`. The password comes from the file or the environment.
    DatabaseLayer {
        enabled: bool,
        mode: DbMode,
        container: String,
        databases: Vec<String>,
        user: String,
        password: Secret,
        host: String,
        port: u16,
        dump_binary: String,
        exclude_tables: Vec<String>,
        exclude_log_tables: bool,
        log_tables_separately: bool,
        docker_host: String,
    }
}

layer! {
    /// `[data]`.
    DataLayer {
        enabled: bool,
        dir: PathBuf,
        exclude: Vec<PathBuf>,
        follow_symlinks: Vec<PathBuf>,
    }
}

layer! {
    /// `[compression]`.
    CompressionLayer {
        algorithm: Algorithm,
        level: i32,
        threads: u32,
    }
}

/// `storage.part_size`: a byte count, or a size with a unit (`8MiB`), checked when built.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl Layer {
    /// The settings that may hold a secret, so they have no flag: from the environment only.
    pub fn from_env_secrets() -> Layer {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty()).map(Secret::new);
        let mut layer = Layer::default();
        layer.database.password = var("SEATABLE_BACKUP_DB_PASSWORD");
        let m = &mut layer.monitoring;
        m.ping_url = var("SEATABLE_BACKUP_PING_URL");
        m.ping_start_url = var("SEATABLE_BACKUP_PING_START_URL");
        m.ping_success_url = var("SEATABLE_BACKUP_PING_SUCCESS_URL");
        m.ping_failure_url = var("SEATABLE_BACKUP_PING_FAILURE_URL");
        m.webhook_url = var("SEATABLE_BACKUP_WEBHOOK_URL");
        layer
    }

    /// What this layer (a file's) holds that demands a private file, for the error message.
    pub(super) fn secrets(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if self.storage.access_key_id.is_some() && self.storage.secret_access_key.is_some() {
            found.push("an S3 key pair");
        }
        if self.database.password.is_some() {
            found.push("a database password");
        }
        found
    }
}
