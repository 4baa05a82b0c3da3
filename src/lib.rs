//! seatable-backup: offsite backups of a self-hosted SeaTable server, streamed straight into
//! S3-compatible object storage.
//!
//! # Layout
//!
//! Lower layers never import higher ones (no module cycle); each module's first comment says
//! what it owns.
//!
//! Foundations:
//! - [`error`]: exit classes and the classified [`error::Failure`]; [`exit`] maps any error
//!   (typed ones included) to its class.
//! - [`config`]: the file, environment and flags, layered into one validated [`config::Config`];
//!   [`cli`] is clap only and hands `config` its flags as a layer.
//! - [`clock`], [`output`] (progress line, log writer, `human_bytes`), [`lock`] (one run at a
//!   time), [`failpoint`] (tests), [`run`] (one run's context: its cancellation token, what it
//!   wrote, its open uploads, its progress line).
//!
//! Data paths:
//! - [`seatable`]: the install (layouts and their defaults, `.env` and `.conf` parsers, storage
//!   backends, the app container).
//! - [`source`]: bytes out of the server: processes (Docker exec or a local child), database
//!   dumps, the data directory's tar.
//! - [`codec`]: compression, decompression, stream taps.
//! - [`store`]: object storage (S3, local directory) behind one object trait and a
//!   bucket-administration trait; streaming multipart upload and chunk-verified download.
//! - [`catalog`]: set keys, the manifest and its checks, listing and choosing sets.
//! - [`mirror`]: SeaTable's own buckets copied into a set, and put back.
//!
//! Commands, one module each: [`backup`], [`plan`], [`list`], [`restore`], [`verify`],
//! [`retention`], [`prune`]; [`monitor`] reports unattended runs (pings, webhook, textfile).
//!
//! A backup: `config` + `seatable` decide the scope (`backup::scope`, shared with `plan`);
//! `source` produces each dump and the tar, `codec` compresses it, `store::upload` streams it
//! into a staged multipart object that is committed once its producer succeeded; `catalog`
//! names the keys and the manifest, written last. A restore: `catalog` chooses and checks a
//! set; `restore::plan` decides the targets, `restore::stage` downloads (`store::download`,
//! every chunk verified), decompresses and loads or unpacks into staging places, and
//! `restore::swap` swaps them in under an undo journal.

pub mod backup;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod exit;
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
pub mod run;
pub mod seatable;
pub mod source;
pub mod store;
pub mod verify;

/// Test-only helpers shared with the integration tests (`tests/common/tree.rs`), compiled
/// into unit tests only.
#[cfg(test)]
#[path = "../tests/common/tree.rs"]
pub(crate) mod testkit;
