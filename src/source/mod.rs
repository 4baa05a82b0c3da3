//! Byte producers: database dumps (inside the DB container through the Docker Engine API, or
//! with a dump binary on this host) and the tar of the data directory.
//!
//! Commands (a dump, a client, a script in the app container) all run as one
//! [`process::Process`], in a container or on this host.
//!
//! A producer is a stream plus a `finish` future. The stream may end early when the producer
//! fails; only `finish` says whether it succeeded, and it must be awaited AFTER the stream was
//! read to its end (a child is done only when its output is drained and its status is known).

pub mod data;
pub mod docker;
pub mod dump;
pub mod process;
pub mod tar;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use tokio::io::AsyncBufRead;

/// A producer's output as owned chunks (handed on without copying).
pub type Chunks = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Resolves when the producer has finished; only then is its success known.
pub type Finish<T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send>>;

pub struct Produced<T> {
    pub reader: Pin<Box<dyn AsyncBufRead + Send>>,
    pub finish: Finish<T>,
}

/// A stream over a bounded channel's receiver.
pub fn receiver_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
