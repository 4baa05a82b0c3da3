//! SeaTable's own names and paths that this tool assumes when nothing is configured or found
//! (SEATABLE.md): the layouts' data directories and DB containers, the three databases, the log
//! tables, the parts of the data directory that are never archived. A leaf: it imports nothing.

/// Data directories of the two SeaTable layouts, newest first.
pub const DEFAULT_DATA_DIRS: [&str; 2] = ["/opt/seatable-server/seatable", "/opt/seatable/seatable-data/seatable"];
/// Container names of the two layouts, newest first.
pub const DEFAULT_DB_CONTAINERS: [&str; 2] = ["mariadb", "seatable-mysql"];
pub const DEFAULT_DATABASES: [&str; 3] = ["ccnet_db", "seafile_db", "dtable_db"];
/// SeaTable's log tables in dtable_db, which grow large (SEATABLE.md).
pub const LOG_TABLES: [&str; 4] = ["operation_log", "delete_operation_log", "session_log", "activities"];
/// Parts of the data directory that are never archived (SEATABLE.md).
pub const ALWAYS_EXCLUDED: [&str; 5] = ["ccnet", "logs", "db-data", "pids", "scripts"];
/// What restore creates at the top of a data directory that is a mount point (its staging
/// directory, the previous content): a backup leaves such entries out.
pub const TOOL_ENTRY_PREFIX: &str = ".seatable-backup-";

/// The data directory when none is configured: the first of the layouts' defaults that exists.
pub fn default_data_dir() -> Option<std::path::PathBuf> {
    DEFAULT_DATA_DIRS.iter().map(std::path::PathBuf::from).find(|p| p.is_dir())
}
