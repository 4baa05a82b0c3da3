//! seatable-backup: offsite backups of a self-hosted SeaTable server, streamed straight into
//! S3-compatible object storage.
//!
//! # Layout
//!
//! - [`config`]: file + environment + flags into one validated [`config::Config`].
//! - [`source`]: byte producers: dumps in the DB container (bollard), the data directory's tar.
//! - [`codec`]: compression and stream-watching adaptors.
//! - [`store`]: object storage (S3, local directory) and the streaming multipart uploader.
//! - [`catalog`]: set keys, the manifest, listing sets.
//! - [`seatable`]: the SeaTable install (layout, `.env`, storage backends, app container).
//! - [`mirror`]: SeaTable's own S3 buckets copied into a set, and put back.
//! - [`backup`], [`list`], [`plan`], [`restore`], [`verify`], [`retention`], [`prune`]: one
//!   module per subcommand.
//! - [`lock`], [`monitor`], [`output`], [`clock`]: running unattended (one run at a time, pings,
//!   webhook, metrics textfile, the run's summary) and what a terminal shows (progress).

pub mod backup;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod list;
pub mod lock;
pub mod mirror;
pub mod monitor;
pub mod output;
pub mod plan;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod seatable;
pub mod source;
pub mod store;
pub mod verify;
