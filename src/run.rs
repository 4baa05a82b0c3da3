//! The context of one run: its cancellation and what it wrote.
//!
//! `main` makes one [`RunContext`] per command and cancels it on SIGINT or SIGTERM; a command
//! reads the token where it can stop cleanly and registers every key it makes visible in
//! [`Written`], so that a failed or cancelled run can remove them. Nothing here is global: a
//! test drives a command in-process with its own context and cancels it when it likes.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::output::Progress;
use crate::store::upload::OpenUploads;
use crate::store::Store;

/// What one run shares with the code it calls.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// Cancelled when the run must stop (a signal); each command stops at its next safe point
    /// and cleans up what it started.
    pub cancel: CancellationToken,
    /// The keys this run made visible.
    pub written: Written,
    /// The progress line, when a human watches on a terminal.
    pub progress: Option<Progress>,
    /// Why the run was cancelled (`SIGTERM`), for its error message.
    reason: Arc<Mutex<Option<String>>>,
}

impl RunContext {
    pub fn new() -> RunContext {
        RunContext::default()
    }

    /// The same, showing a progress line while it transfers.
    pub fn with_progress(mut self, progress: Option<Progress>) -> RunContext {
        self.progress = progress;
        self
    }

    /// Cancels the run, saying why (`SIGTERM`, `a test`).
    pub fn cancel(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert_with(|| reason.to_string());
        }
        self.cancel.cancel();
    }

    /// Why the run was cancelled (`a cancellation` when no reason was given).
    pub fn reason(&self) -> String {
        self.reason.lock().ok().and_then(|r| r.clone()).unwrap_or_else(|| "a cancellation".into())
    }

    /// Cancels this context on the first SIGINT or SIGTERM, logging `what` happens then. The
    /// returned watcher stops watching when dropped.
    pub fn cancel_on_signal(&self, what: &'static str) -> SignalWatch {
        let ctx = self.clone();
        let task = tokio::spawn(async move {
            let signal = shutdown_signal().await;
            tracing::error!("{signal} received: {what}");
            ctx.cancel(signal);
        });
        SignalWatch { task }
    }
}

/// The task that turns a signal into a cancellation.
pub struct SignalWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resolves on the first SIGINT or SIGTERM, with the signal's name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        std::future::pending::<()>().await;
        return "";
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Keys this run has made visible, so that a failed or interrupted run can remove them, and the
/// multipart uploads it has open.
#[derive(Debug, Default, Clone)]
pub struct Written {
    keys: Arc<Mutex<Vec<String>>>,
    dir: Arc<Mutex<Option<String>>>,
    uploads: OpenUploads,
}

impl Written {
    pub fn push(&self, key: &str) {
        if let Ok(mut v) = self.keys.lock() {
            v.push(key.to_string());
        }
    }

    /// The run's open multipart uploads, for [`crate::store::upload::stage`].
    pub fn uploads(&self) -> &OpenUploads {
        &self.uploads
    }

    /// Forgets every key: the run is complete and nothing may remove them any more.
    pub fn take(&self) -> Vec<String> {
        self.keys.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
    /// The directory of the set this run writes (every open upload under it is this run's).
    pub fn set_dir(&self, dir: &str) {
        if let Ok(mut d) = self.dir.lock() {
            *d = Some(dir.to_string());
        }
    }

    /// Aborts the multipart uploads still open: those this run registered, then any other open
    /// under its set. An upload whose creation was answered just as the run was stopped is in
    /// no registry yet; the set's directory is new and this run's own, so everything open under
    /// it is this run's.
    pub async fn abort_open_uploads(&self, store: &dyn Store) {
        self.uploads.abort_all().await;
        let Some(dir) = self.dir.lock().ok().and_then(|d| d.clone()) else { return };
        match store.list_open_uploads(&dir).await {
            Ok(open) => {
                for u in open {
                    match store.abort_upload(&u).await {
                        Ok(()) => tracing::info!(key = %u.key, "aborted an open upload of the stopped run"),
                        Err(e) => tracing::warn!(key = %u.key, error = %e, "could not abort an open upload"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list the open uploads of the stopped run"),
        }
    }

    /// Deletes what this run wrote (a failed run must not leave parts of a set behind).
    pub async fn remove_all(&self, store: &dyn Store) {
        // Newest first: the manifest (registered last) goes before the objects it lists, so a
        // cleanup cut short leaves a set without manifest, never a complete-looking one.
        for key in self.take().into_iter().rev() {
            match store.delete(&key).await {
                Ok(()) => tracing::info!(key = %key, "removed the object of the failed run"),
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "could not remove the object of the failed run; its set has no manifest and counts as incomplete")
                }
            }
        }
    }
}
