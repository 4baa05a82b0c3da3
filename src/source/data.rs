//! The data directory as a tar stream: the sync tar writer runs on a blocking thread and feeds
//! a bounded in-memory pipe that the async pipeline reads.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;

use super::tar::{write_tar, TarOptions, TarStats};
use super::Produced;
use crate::codec::tapped;
use crate::config::{DataConfig, ALWAYS_EXCLUDED, DEFAULT_DATA_DIRS};
use crate::error::{Class, Failure};

/// Chunks (of about 1 MiB) buffered between the tar thread and the compressor.
const PIPE_CHUNKS: usize = 4;

/// What a finished tar produced.
#[derive(Debug, Clone)]
pub struct DataReport {
    pub raw_size: u64,
    pub stats: TarStats,
}

/// The data directory to archive: the configured one, or the first existing default.
pub fn resolve_dir(cfg: &DataConfig) -> anyhow::Result<PathBuf> {
    let dir = match &cfg.dir {
        Some(d) => d.clone(),
        None => DEFAULT_DATA_DIRS.iter().map(PathBuf::from).find(|p| p.is_dir()).ok_or_else(|| {
            Failure::new(
                Class::Source,
                format!(
                    "no SeaTable data directory found (looked for {})",
                    DEFAULT_DATA_DIRS.map(|d| format!("`{d}`")).join(", ")
                ),
            )
            .with_hint("set `data.dir`")
        })?,
    };
    check_dir(&dir)?;
    Ok(dir)
}

/// The directory must exist, be a directory, and be listable.
pub fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| Failure::new(Class::Source, format!("data directory `{}`: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(
            Failure::new(Class::Source, format!("data directory `{}` is not a directory", dir.display())).into()
        );
    }
    std::fs::read_dir(dir)
        .map_err(|e| Failure::new(Class::Source, format!("data directory `{}` is not readable: {e}", dir.display())))?;
    Ok(())
}

/// Every excluded path: SeaTable's always-skipped directories and the configured ones.
pub fn excludes(cfg: &DataConfig) -> Vec<PathBuf> {
    ALWAYS_EXCLUDED.iter().map(PathBuf::from).chain(cfg.exclude.iter().cloned()).collect()
}

/// Hands each write of the tar thread to the async pipeline as an owned chunk, over a bounded
/// channel (the backpressure: the tar thread blocks while the pipeline is behind).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped reading"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts archiving `dir`; `finish` fails if the tar failed (read errors name the path).
pub fn tar_stream(dir: PathBuf, excludes: Vec<PathBuf>) -> Produced<DataReport> {
    // `write_tar` writes 1 MiB at a time: at most PIPE_CHUNKS MiB wait in the channel.
    let (tx, rx) = tokio::sync::mpsc::channel(PIPE_CHUNKS);
    let opts = TarOptions { excludes };
    let shown = dir.display().to_string();
    let task = tokio::task::spawn_blocking(move || write_tar(&dir, &opts, ChunkWriter { tx }));
    let chunks = super::receiver_stream(rx);
    let (reader, state) = tapped(chunks);
    let finish = async move {
        let stats = task
            .await
            .context("the tar thread panicked")?
            .with_context(|| format!("archiving data directory `{shown}`"))?;
        Ok(DataReport { raw_size: state.count(), stats })
    };
    Produced { reader, finish: Box::pin(finish) }
}
